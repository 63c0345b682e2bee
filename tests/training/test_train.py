"""Run folders: layout, export, determinism, resume, strategies, fairness mixing, CLI errors."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from fakeface_tf.cli import main
from fakeface_tf.core.config import OPTIMIZERS, SCHEDULES, load_config
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data import datasets, records
from fakeface_tf.models.export import validation_metrics
from fakeface_tf.models.registry import HardLabels, compile_model
from fakeface_tf.training.train import train

from conftest import crash_after_first_epoch, synthetic_faces, tiny_config, write_synthetic_records


def test_run_folder_holds_everything_the_contract_lists(tiny_run):
    for name in ("config.yaml", "face_cut.json", "env.json", "history.csv", "metrics.json", "model.keras",
                 "state.json", "checkpoints/best.keras", "checkpoints/last.keras",
                 "saved_model/saved_model.pb", "tensorboard"):
        assert (tiny_run / name).exists(), name
    cfg = load_config(tiny_run / "config.yaml")
    assert tiny_run.name.startswith(f"{cfg.name}-{cfg.digest()}-")

    env = json.loads((tiny_run / "env.json").read_text())
    assert {"python", "packages", "git", "devices", "seed"} <= set(env)
    assert env["packages"]["keras"] == keras.__version__ and env["seed"] == cfg.training.seed

    history = pd.read_csv(tiny_run / "history.csv")
    assert history["epoch"].tolist() == [0, 1]
    assert {"loss", "accuracy", "auc", "val_loss", "val_accuracy", "val_auc", "lr"} <= set(history)

    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert {"accuracy", "auc", "precision", "recall", "f1", "loss"} <= set(metrics)
    assert metrics["auc"] == pytest.approx(history["val_auc"].max(), abs=1e-6)

    published = tiny_run.parent.parent / "saved_models" / tiny_run.name
    assert sorted(p.name for p in published.iterdir()) == sorted(
        ["config.yaml", "env.json", "face_cut.json", "history.csv", "metrics.json", "model.keras",
         "saved_model"])


LEARNABLE = {"train": 128, "valid": 128, "test": 8}  # enough validation faces to tell AUC from chance


@pytest.fixture(scope="module")
def separable_records(tmp_path_factory):
    """Synthetic faces whose label shows in the image (the fake half's checkerboard)."""
    return write_synthetic_records(tmp_path_factory.mktemp("separable"), per_split=LEARNABLE)


def valid_auc(run_dir, records_dir) -> float:
    """ROC-AUC of the run's exported model on the validation split, by scikit-learn."""
    stored = records.read_all(records_dir, "valid")
    images = np.stack([ex["image"] for ex in stored]).astype("float32")
    scores = keras.models.load_model(run_dir / "model.keras").predict(images, verbose=0).ravel()
    return roc_auc_score([ex["label"] for ex in stored], scores)


@pytest.mark.slow
def test_training_learns_a_separable_task(separable_records, tmp_path):
    run = train(tiny_config(separable_records, "training.epochs=3"), tmp_path / "runs", progress=False)
    assert valid_auc(run, separable_records) >= 0.95


@pytest.mark.slow
def test_training_on_shuffled_labels_stays_near_chance(tmp_path):
    shuffled = write_synthetic_records(tmp_path / "shuffled", per_split=LEARNABLE, shuffle_labels=True)
    run = train(tiny_config(shuffled, "training.epochs=3"), tmp_path / "runs", progress=False)
    assert valid_auc(run, shuffled) < 0.75


def test_exported_models_agree_on_uint8_images(tiny_run):
    images, _ = synthetic_faces(4, 32, 1, seed=7)
    expected = keras.models.load_model(tiny_run / "model.keras").predict(
        images.astype("float32"), verbose=0)
    serve = tf.saved_model.load(str(tiny_run / "saved_model")).signatures["serving_default"]
    assert serve.structured_input_signature[1]["images"].dtype == tf.uint8
    np.testing.assert_allclose(serve(tf.constant(images))["prob"].numpy(), expected, atol=1e-5)


@pytest.mark.slow
def test_same_config_and_seed_give_identical_metrics(tiny_records, tmp_path):
    cfg = tiny_config(tiny_records, "training.epochs=1", "augment.flip=true",
                      "augment.rotation=0.05")
    first = train(cfg, tmp_path / "runs", progress=False)
    second = train(cfg, tmp_path / "runs", progress=False)
    assert first != second
    assert (json.loads((first / "metrics.json").read_text())["loss"]
            == json.loads((second / "metrics.json").read_text())["loss"])
    pd.testing.assert_frame_equal(pd.read_csv(first / "history.csv"),
                                  pd.read_csv(second / "history.csv"))


def test_hard_labels_scores_a_blend_as_its_dominant_label():
    soft, pred = np.array([0.9, 0.2, 0.7, 0.1]), np.array([0.8, 0.05, 0.4, 0.3])
    wrapped = HardLabels(keras.metrics.AUC(name="auc"))
    wrapped.update_state(soft, pred)
    hard = keras.metrics.AUC()
    hard.update_state(np.round(soft), pred)
    as_is = keras.metrics.AUC()  # counts every label above 0 as positive
    as_is.update_state(soft, pred)
    assert wrapped.name == "auc"
    assert float(wrapped.result()) == float(hard.result()) != float(as_is.result())


@pytest.mark.slow
def test_mixup_run_exports_a_model_plain_keras_can_compile(tiny_records, tmp_path):
    cfg = tiny_config(tiny_records, "training.epochs=1", "augment.mixup=0.4")
    run = train(cfg, tmp_path / "runs", progress=False)
    assert {"auc", "val_auc"} <= set(pd.read_csv(run / "history.csv").columns)
    with zipfile.ZipFile(run / "model.keras") as archive:
        compile_config = json.loads(archive.read("config.json"))["compile_config"]
    assert "HardLabels" not in json.dumps(compile_config)


@pytest.mark.slow
def test_interrupted_run_resumes_at_the_next_epoch(tiny_records, tmp_path):
    cfg = tiny_config(tiny_records, "optimizer.schedule=cosine")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, tmp_path / "runs", progress=False, callbacks=[crash_after_first_epoch()])
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "state.json").read_text())["epochs_done"] == 1
    assert not (run_dir / "metrics.json").exists()

    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    assert pd.read_csv(run_dir / "history.csv")["epoch"].tolist() == [0, 1]
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 2
    last = keras.models.load_model(run_dir / "checkpoints" / "last.keras")
    assert int(last.optimizer.iterations) == 2 * 4  # 64 images / batch 16, both epochs
    assert (tmp_path / "saved_models" / run_dir.name / "model.keras").is_file()


TWO_CPU_RUNS = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from fakeface_tf.cli import main
config, runs = sys.argv[1], sys.argv[2]
for strategy in ("none", "mirrored"):
    assert main(["train", config, "--set", f"name={strategy}", f"distribute={strategy}",
                 "--runs-dir", runs, "--quiet"]) == 0
print(json.dumps({"replicas": tf.distribute.MirroredStrategy().num_replicas_in_sync}))
"""


@pytest.mark.slow
def test_mirrored_training_on_two_cpu_replicas_matches_one_device(separable_records, tmp_path):
    """The CPU split into two logical devices (before TF starts, so in a child process): the
    same config trained on one device and mirrored on two. Dropout masks are drawn per
    replica and Keras opens a mirrored dataset once more before training (so that run sees
    the next shuffle order): the runs match in outcome and step count, not bit for bit."""
    config = tmp_path / "tiny.yaml"
    tiny_config(separable_records, "training.epochs=3").save(config)
    done = subprocess.run([sys.executable, "-c", TWO_CPU_RUNS, str(config), str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["replicas"] == 2
    (mirrored,), (single,) = ([p for p in (tmp_path / "runs").iterdir() if p.name.startswith(name)]
                              for name in ("mirrored-", "none-"))
    assert sum("CPU" in d for d in json.loads((mirrored / "env.json").read_text())["devices"]) == 2
    for run in (mirrored, single):  # 128 images / global batch 16, 3 epochs: the batch is split
        last = keras.models.load_model(run / "checkpoints" / "last.keras")
        assert int(last.optimizer.iterations) == 8 * 3
    assert valid_auc(mirrored, separable_records) >= 0.95
    assert valid_auc(mirrored, separable_records) == pytest.approx(valid_auc(single, separable_records),
                                                                   abs=0.05)
    # Metrics gathered across the two replicas equal a one-device evaluation of the same model.
    reported = json.loads((mirrored / "metrics.json").read_text())
    model = keras.models.load_model(mirrored / "model.keras")
    here = validation_metrics(model, datasets.make_dataset(separable_records, "valid", batch_size=16))
    for name in ("loss", "accuracy", "auc"):
        assert reported[name] == pytest.approx(here[name], abs=1e-5), name


@pytest.mark.slow
def test_fixed_steps_per_epoch_repeat_the_training_data(tiny_records, tmp_path):
    cfg = tiny_config(tiny_records, "training.epochs=1", "training.steps_per_epoch=7")
    run_dir = train(cfg, tmp_path / "runs", progress=False)
    last = keras.models.load_model(run_dir / "checkpoints" / "last.keras")
    assert int(last.optimizer.iterations) == 7  # more than the 4 batches of one pass


@pytest.mark.slow
def test_mixed_precision_run_exports_float32_probabilities(tiny_records, tmp_path):
    run_dir = train(tiny_config(tiny_records, "mixed_precision=true", "training.epochs=1"),
                    tmp_path / "runs", progress=False)
    assert keras.config.dtype_policy().name == "float32"  # restored after training
    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    assert model.get_layer("conv1").compute_dtype == "float16"
    assert model.output.dtype == "float32"


@pytest.mark.parametrize("overrides, message", [
    (["model.name=lenet"], "unknown model 'lenet'"),
    (["training.epochs=-1"], "training.epochs must be >= 1"),
    (["training.epochs=abc"], "'training.epochs' expects int"),
    (["model.droput=0.1"], "unknown config key 'model.droput'; did you mean 'model.dropout'?"),
    (["training.epoch=1"], "unknown config key 'training.epoch'; did you mean 'training.epochs'?"),
    (["optimizer.name=adamm"], "optimizer.name must be one of"),
    (["optimizer.schedule=linear"], "optimizer.schedule must be one of"),
    (["augment.jpeg_quality=95"], "augment.jpeg_quality must be 0 (off) or in 1..94"),
    (["data.path=/nonexistent/records"], "no TFRecord files"),
])
def test_bad_config_is_a_one_line_error_with_exit_code_2(tiny_records, tmp_path, capsys,
                                                          overrides, message):
    config = tmp_path / "tiny.yaml"
    tiny_config(tiny_records).save(config)
    code = main(["train", str(config), "--set", *overrides, "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("section, field, value", [
    ("optimizer", "name", "adamm"),
    ("optimizer", "schedule", "linear"),
    ("augment", "jpeg_quality", 95),
])
def test_bad_field_set_after_loading_fails_before_a_run_folder_exists(tiny_records, tmp_path,
                                                                      section, field, value):
    cfg = tiny_config(tiny_records)
    setattr(getattr(cfg, section), field, value)
    with pytest.raises(FakefaceError, match=rf"^{section}\.{field} must be"):
        train(cfg, tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_optimizer_and_schedule_the_config_accepts_builds(name, schedule, tiny_records):
    cfg = tiny_config(tiny_records, f"optimizer.name={name}", f"optimizer.schedule={schedule}")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert type(compile_model(model, cfg, total_steps=10).optimizer).__name__.lower() == name


def test_missing_config_file_exits_2(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


@pytest.mark.slow
def test_frozen_layers_run_once_the_probe_starts_the_head_and_the_whole_model_is_saved(tmp_path):
    from fakeface_tf.models import faceres

    records = write_synthetic_records(tmp_path / "rgb", size=32, channels=3)
    cfg = tiny_config(records, "model.name=faceres", "data.color=rgb", "model.trainable_blocks=1",
                      "model.feature_blocks=12,13", "training.cache_frozen=true",
                      "training.probe_init=true", "augment.flip=true", "optimizer.lr=1e-4")
    run_dir = train(cfg, tmp_path / "runs", progress=False)
    probe = json.loads((run_dir / "probe.json").read_text())
    assert probe["val_auc"] >= 0.95  # the checkerboard is plain to frozen face features
    model = keras.models.load_model(run_dir / "model.keras")
    assert model.input_shape == (None, 32, 32, 3)
    history = pd.read_csv(run_dir / "history.csv")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # The shipped model is the whole model evaluated on images; the history is the rest on
    # cached maps; the probe is epoch 0, which fine-tuning must beat to replace it.
    assert metrics["auc"] == pytest.approx(max(history["val_auc"].max(), probe["val_auc"]), abs=2e-3)
    last = keras.models.load_model(run_dir / "checkpoints" / "last.keras")
    pretrained = faceres.reference_model()
    pretrained.load_weights(faceres.weights_file())
    for name, changed in (("conv_pw_12", False), ("conv_pw_13", True)):
        same = np.array_equal(last.get_layer(name).get_weights()[0],
                              pretrained.get_layer(name).get_weights()[0])
        assert same != changed, name


def test_exported_model_is_frozen_and_loads_without_optimizer_warnings(tiny_run):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras.models.load_model(tiny_run / "model.keras")
    assert model.trainable_variables == [] and model.count_params() > 0
    assert not [w for w in caught if "optimizer" in str(w.message)]


def test_cache_frozen_refuses_augmentations_it_cannot_precompute(tiny_records):
    with pytest.raises(FakefaceError, match="cache_frozen works with flips only"):
        tiny_config(tiny_records, "training.cache_frozen=true", "augment.shift=0.1")
