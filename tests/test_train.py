"""Run folders: layout, export, determinism, resume, strategies, fairness mixing, CLI errors."""

from __future__ import annotations

import json
import sys
import types
import zipfile

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import yaml

import fakeface_tf
from fakeface_tf.cli import main
from fakeface_tf.config import load_config
from fakeface_tf.errors import FakefaceError
from fakeface_tf.train import HardLabels, train

from conftest import crash_after_first_epoch, synthetic_faces, tiny_config, write_synthetic_records


def test_run_folder_holds_everything_the_contract_lists(tiny_run):
    for name in ("config.yaml", "env.json", "history.csv", "metrics.json", "model.keras",
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
        ["config.yaml", "env.json", "history.csv", "metrics.json", "model.keras", "saved_model"])


def test_exported_models_agree_on_uint8_images(tiny_run):
    images, _ = synthetic_faces(4, 32, 1, seed=7)
    expected = keras.models.load_model(tiny_run / "model.keras").predict(
        images.astype("float32"), verbose=0)
    serve = tf.saved_model.load(str(tiny_run / "saved_model")).signatures["serving_default"]
    assert serve.structured_input_signature[1]["images"].dtype == tf.uint8
    np.testing.assert_allclose(serve(tf.constant(images))["prob"].numpy(), expected, atol=1e-5)


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


def test_mixup_run_exports_a_model_plain_keras_can_compile(tiny_records, tmp_path):
    cfg = tiny_config(tiny_records, "training.epochs=1", "augment.mixup=0.4")
    run = train(cfg, tmp_path / "runs", progress=False)
    assert {"auc", "val_auc"} <= set(pd.read_csv(run / "history.csv").columns)
    with zipfile.ZipFile(run / "model.keras") as archive:
        compile_config = json.loads(archive.read("config.json"))["compile_config"]
    assert "HardLabels" not in json.dumps(compile_config)


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


def test_cli_trains_with_a_mirrored_strategy_on_one_cpu_replica_for_fixed_steps(tiny_records, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    tiny_config(tiny_records).save(config)
    code = main(["train", str(config), "--set", "distribute=mirrored", "training.epochs=1",
                 "training.steps_per_epoch=3", "--runs-dir", str(tmp_path / "runs"), "--quiet"])
    assert code == 0
    assert "validation: accuracy" in capsys.readouterr().out
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["distribute"] == "mirrored"
    last = keras.models.load_model(run_dir / "checkpoints" / "last.keras")
    assert int(last.optimizer.iterations) == 3  # steps_per_epoch, from a repeated dataset
    assert tf.distribute.MirroredStrategy().num_replicas_in_sync == 1


def test_mixed_precision_run_exports_float32_probabilities(tiny_records, tmp_path):
    run_dir = train(tiny_config(tiny_records, "mixed_precision=true", "training.epochs=1"),
                    tmp_path / "runs", progress=False)
    assert keras.config.dtype_policy().name == "float32"  # restored after training
    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    assert model.get_layer("conv1").compute_dtype == "float16"
    assert model.output.dtype == "float32"


class _CountBatches(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


def test_fairness_faces_are_mixed_into_training(tiny_records, tmp_path, monkeypatch):
    images, labels = synthetic_faces(16, 32, 1, seed=5)
    fake_module = types.SimpleNamespace(training_dataset=lambda cfg: tf.data.Dataset.from_tensor_slices(
        (images.astype("float32"), np.zeros(16, "float32"))))
    monkeypatch.setitem(sys.modules, "fakeface_tf.fairness", fake_module)
    monkeypatch.setattr(fakeface_tf, "fairness", fake_module, raising=False)
    counter = _CountBatches()
    train(tiny_config(tiny_records, "training.epochs=1", "data.fairness_labels=labels.csv"),
          tmp_path / "runs", progress=False, callbacks=[counter])
    assert counter.batches == (64 + 16) // 16


@pytest.mark.parametrize("overrides, message", [
    (["model.name=lenet"], "unknown model 'lenet'"),
    (["training.epochs=-1"], "training.epochs must be >= 1"),
    (["training.epochs=abc"], "'training.epochs' expects int"),
    (["model.droput=0.1"], "unknown config key 'model.droput'"),
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


def test_missing_config_file_exits_2(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_frozen_layers_run_once_the_probe_starts_the_head_and_the_whole_model_is_saved(tmp_path):
    from fakeface_tf import faceres

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
