"""Multi-worker training: two worker processes on 127.0.0.1 driven by TF_CONFIG, their custom
loop checked against the same loop on one machine's two replicas, a killed worker resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pandas as pd
import pytest

from fakeface_tf.core.errors import FakefaceError

from conftest import free_port, tiny_config, write_synthetic_records

pytestmark = pytest.mark.slow
TIMEOUT = 300  # seconds for any one process: a hung collective fails the test instead of CI

CLI = "import sys; from fakeface_tf.cli import main; sys.exit(main(sys.argv[1:]))"

# A worker that dies (SIGKILL, no clean-up) once its first epoch's callbacks have run.
DYING_WORKER = """
import os, signal, sys
import keras
from fakeface_tf.core.config import load_config
from fakeface_tf.training.train import train

class Die(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        os.kill(os.getpid(), signal.SIGKILL)

train(load_config(sys.argv[1]), sys.argv[2], progress=False, callbacks=[Die()])
"""

# The same custom loop on one process: MirroredStrategy over two logical CPU devices.
TWO_REPLICAS = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from fakeface_tf.training import runtime, train
from fakeface_tf.core.config import load_config
runtime.strategy = lambda distribute: tf.distribute.MirroredStrategy()
train.train(load_config(sys.argv[1]), sys.argv[2], progress=False)
"""


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return write_synthetic_records(tmp_path_factory.mktemp("mw"),
                                   per_split={"train": 128, "valid": 64, "test": 8})


def cluster_env(tmp_path, ports, index: int) -> dict:
    """The environment of worker `index`: its TF_CONFIG, and TMPDIR in `tmp_path` so that a
    worker's scratch folder can be checked gone."""
    tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                 "task": {"type": "worker", "index": index}}
    env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), TMPDIR=str(tmp_path / "scratch"),
               TF_CPP_MIN_LOG_LEVEL="2")
    (tmp_path / "scratch").mkdir(exist_ok=True)
    return env


def start(tmp_path, ports, index: int, *argv: str, script: str = CLI) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *argv], text=True,
                            env=cluster_env(tmp_path, ports, index),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(*workers: subprocess.Popen) -> list[str]:
    """Wait for every worker (killing all of them past TIMEOUT); each one's stdout."""
    outputs = []
    try:
        for worker in workers:
            out, err = worker.communicate(timeout=TIMEOUT)
            assert worker.returncode == 0, err[-3000:]
            outputs.append(out)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
    return outputs


def weights(path) -> list[np.ndarray]:
    return keras.models.load_model(path).get_weights()


def test_two_workers_train_like_two_replicas_on_one_machine(records, tmp_path):
    config = tmp_path / "tiny.yaml"
    tiny_config(records, "training.epochs=1", "distribute=multiworker").save(config)
    ports = [free_port(), free_port()]
    chief, other = finish(*(start(tmp_path, ports, i, "train", str(config), "--runs-dir",
                                  str(tmp_path / "runs"), "--quiet") for i in (0, 1)))
    assert "worker done: the chief wrote the run folder" in other
    for out in (chief, other):  # each example once per epoch, whichever worker read it
        assert "epoch 1: 128 training examples over 2 replicas" in out
    (run,) = (tmp_path / "runs").iterdir()  # the chief's alone
    assert [p.name for p in (tmp_path / "saved_models").iterdir()] == [run.name]
    assert list((tmp_path / "scratch").iterdir()) == []  # the other worker's copies are gone
    assert json.loads((run / "state.json").read_text())["finished"] is True

    done = subprocess.run([sys.executable, "-c", TWO_REPLICAS, str(config), str(tmp_path / "one")],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    (single,) = (tmp_path / "one").iterdir()
    for name in ("checkpoints/last.keras", "model.keras"):
        for a, b in zip(weights(run / name), weights(single / name), strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    last = keras.models.load_model(run / "checkpoints" / "last.keras")
    assert int(last.optimizer.iterations) == 128 // 16
    pd.testing.assert_frame_equal(pd.read_csv(run / "history.csv"),
                                  pd.read_csv(single / "history.csv"), rtol=1e-5)
    # The epoch's validation figures (gathered across the workers) are what the chief's own
    # one-device evaluation of the same weights reports.
    history = pd.read_csv(run / "history.csv")
    metrics = json.loads((run / "metrics.json").read_text())
    for name in ("loss", "accuracy", "auc"):
        assert metrics[name] == pytest.approx(history[f"val_{name}"].iloc[-1], abs=1e-5), name


def test_a_killed_worker_resumes_from_the_chiefs_run_folder(records, tmp_path):
    config = tmp_path / "tiny.yaml"
    tiny_config(records, "training.epochs=2", "distribute=multiworker").save(config)
    ports, runs = [free_port(), free_port()], tmp_path / "runs"
    chief = start(tmp_path, ports, 0, "train", str(config), "--runs-dir", str(runs), "--quiet")
    dying = start(tmp_path, ports, 1, str(config), str(runs), script=DYING_WORKER)
    try:
        dying.communicate(timeout=TIMEOUT)
        assert dying.returncode == -signal.SIGKILL
        # The chief, waiting in epoch 2 for the dead worker, is stopped as a cluster restarts
        # a job, once its epoch 1 is on disk.
        deadline = time.monotonic() + TIMEOUT
        while not list(runs.glob("*/state.json")) and time.monotonic() < deadline:
            time.sleep(0.2)
        (run,) = runs.iterdir()
        assert json.loads((run / "state.json").read_text())["epochs_done"] == 1
    finally:
        chief.kill()
        chief.communicate()
    assert not (run / "metrics.json").exists()
    left = set((tmp_path / "scratch").iterdir())  # the killed worker's, never cleaned up

    finish(*(start(tmp_path, ports, i, "train", "--resume", str(run), "--quiet") for i in (0, 1)))
    assert [p.name for p in runs.iterdir()] == [run.name]
    assert pd.read_csv(run / "history.csv")["epoch"].tolist() == [0, 1]
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2
    last = keras.models.load_model(run / "checkpoints" / "last.keras")
    assert int(last.optimizer.iterations) == 2 * 128 // 16
    assert (tmp_path / "saved_models" / run.name / "model.keras").is_file()
    assert set((tmp_path / "scratch").iterdir()) == left


def test_multiworker_refuses_the_frozen_cache_and_the_probe(records):
    for switch in ("training.cache_frozen=true", "training.probe_init=true"):
        with pytest.raises(FakefaceError, match="distribute=multiworker trains whole models"):
            tiny_config(records, "distribute=multiworker", switch, "augment.flip=true")
