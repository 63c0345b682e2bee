"""GPU settings on the CPU: mixed precision and XLA in both training loops, the moved
mixed_precision key, and the TensorFlow install routes (one TensorFlow per platform, the conda
file in step with pyproject.toml)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from fakeface_tf.core.config import REPO_ROOT, apply_overrides, load_config
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data import datasets
from fakeface_tf.models.export import exportable
from fakeface_tf.models.registry import build_model, compile_model
from fakeface_tf.training.multiworker import custom_fit
from fakeface_tf.training.runtime import precision

from conftest import tiny_config


class EpochLogs(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        self.logs = dict(logs)


def one_step(cfg, records, loop: str) -> tuple[keras.Model, dict]:
    """Build and compile `cfg`'s model under its dtype policy and train it one batch with
    Keras `fit` or the multi-worker module's loop (on the default strategy)."""
    train_ds = datasets.make_dataset(records, "train", batch_size=16, training=True, repeat=True)
    valid_ds = datasets.make_dataset(records, "valid", batch_size=16).apply(
        tf.data.experimental.assert_cardinality(2))
    with precision(cfg.training):
        model = compile_model(build_model(cfg), cfg, 1)
        before = model.get_weights()
        if loop == "fit":
            logs = model.fit(train_ds, epochs=1, steps_per_epoch=1, verbose=0).history
            logs = {k: v[-1] for k, v in logs.items()}
        else:
            record = EpochLogs()
            custom_fit(model, cfg, tf.distribute.get_strategy(), train_ds, valid_ds, steps=1,
                       keep_iterator=True, callbacks=[record], initial_epoch=0, progress=False)
            logs = record.logs
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    return model, logs


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_mixed_precision_trains_a_step_on_the_cpu_with_a_float32_output(tiny_records, loop):
    cfg = tiny_config(tiny_records, "training.mixed_precision=true", "training.epochs=1")
    model, logs = one_step(cfg, tiny_records, loop)
    assert keras.config.dtype_policy().name == "float32"  # restored after training
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.get_layer("conv1").compute_dtype == "float16"
    assert model.output.dtype == "float32" and model.get_layer("prob").compute_dtype == "float32"
    assert int(model.optimizer.iterations) == 1 and np.isfinite(logs["loss"])
    probs = model.predict(np.zeros((2, 32, 32, 1), "float32"), verbose=0)
    assert probs.dtype == np.float32


@pytest.mark.slow  # XLA compiles the step (~20 s on 2 cores)
@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_jit_compile_trains_with_xla_and_the_export_drops_it(tiny_records, loop):
    cfg = tiny_config(tiny_records, "training.jit_compile=true", "training.deterministic=false",
                      "training.epochs=1")
    model, logs = one_step(cfg, tiny_records, loop)
    assert model.jit_compile is True and np.isfinite(logs["loss"])
    assert exportable(model, cfg).jit_compile is False  # a served model runs anywhere


def test_a_deterministic_training_puts_the_determinism_switch_back(tiny_records):
    from tensorflow.python.framework import config as tf_config

    before = tf_config.is_op_determinism_enabled()
    for deterministic in (True, False):
        with precision(tiny_config(tiny_records, f"training.deterministic={deterministic}").training):
            assert tf_config.is_op_determinism_enabled() is deterministic
        assert tf_config.is_op_determinism_enabled() is before


def test_jit_compile_with_op_determinism_is_refused(tiny_records):
    with pytest.raises(FakefaceError, match="jit_compile needs training.deterministic=false"):
        tiny_config(tiny_records, "training.jit_compile=true")


def test_the_top_level_mixed_precision_key_of_older_configs_still_loads(tmp_path):
    reference = load_config(REPO_ROOT / "saved_models" / "reference" / "config.yaml")
    assert reference.training.mixed_precision is False
    assert "mixed_precision" not in reference.to_dict()  # only under training
    old = tmp_path / "old.yaml"
    old.write_text("mixed_precision: true\ntraining:\n  epochs: 3\n")
    cfg = load_config(old)
    assert cfg.training.mixed_precision is True and cfg.training.epochs == 3
    assert apply_overrides(reference, ["mixed_precision=true"]).training.mixed_precision is True
    both = tmp_path / "both.yaml"
    both.write_text("mixed_precision: true\ntraining:\n  mixed_precision: false\n")
    with pytest.raises(FakefaceError, match="'mixed_precision' moved to 'training.mixed_prec"):
        load_config(both)


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


@pytest.mark.parametrize("platform, machine, wanted", [
    ("linux", "x86_64", "tensorflow-cpu"), ("win32", "AMD64", "tensorflow-cpu"),
    ("linux", "aarch64", "tensorflow"), ("darwin", "arm64", "tensorflow"),
])
def test_the_cpu_extra_picks_one_tensorflow_per_platform(platform, machine, wanted):
    from packaging.requirements import Requirement

    extras = pyproject()["project"]["optional-dependencies"]
    env = {"sys_platform": platform, "platform_machine": machine, "extra": "cpu"}
    picked = [r.name for r in map(Requirement, extras["cpu"]) if r.marker.evaluate(env)]
    assert picked == [wanted]
    assert [Requirement(r).name for r in extras["gpu"]] == ["tensorflow"]
    core = [Requirement(r).name for r in pyproject()["project"]["dependencies"]]
    assert not {"tensorflow", "tensorflow-cpu"} & set(core)  # or [gpu] would install both


def test_environment_yml_mirrors_the_pins_bootstrap_installs():
    assert '[dev,serve,tune,track,notebooks,beam,export,$TF_EXTRA]' in (REPO_ROOT / "scripts" / "bootstrap.sh").read_text()
    project = pyproject()["project"]
    extras = project["optional-dependencies"]
    installed = ("cpu", "dev", "serve", "tune", "track", "notebooks", "beam", "export")  # what bootstrap installs
    pins = project["dependencies"] + [pin for extra in installed for pin in extras[extra]]
    conda = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())["dependencies"]
    (pip,) = [d["pip"] for d in conda if isinstance(d, dict)]
    assert sorted(p for p in pip if not p.startswith("-e")) == sorted(pins)


def test_the_lock_holds_every_pin_at_its_version():
    """requirements.lock (scripts/lock.py) agrees with pyproject.toml: a pin changed without
    regenerating the lock fails here, not in someone's fresh install."""
    def canonical(pin: str) -> str:
        name, version = pin.split(";")[0].strip().split("==")
        return f"{name.split('[')[0].lower().replace('_', '-')}=={version}"

    project = pyproject()["project"]
    extras = project["optional-dependencies"]
    installed = ("cpu", "dev", "serve", "tune", "track", "notebooks", "beam", "export")
    pins = [p for p in project["dependencies"] + [p for e in installed for p in extras[e]]
            if not p.startswith("tensorflow==")]  # the [cpu] extra's other-platform build
    lock = {canonical(line) for line in (REPO_ROOT / "requirements.lock").read_text().splitlines()
            if line and not line.startswith("#")}
    assert {canonical(p) for p in pins} <= lock
