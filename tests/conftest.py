"""Shared fixtures: the sample data location and tiny synthetic TFRecords."""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest

from fakeface_tf.core.config import data_root


@pytest.fixture(scope="module", autouse=True)
def _fresh_keras_state_per_module():
    """After each test module, Keras' global state (graphs, models, name counters) is cleared,
    so the suite's memory does not grow with the number of modules run in one process."""
    yield
    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    gc.collect()


@pytest.fixture(scope="session")
def sample_root() -> Path:
    """The sample data folder ($FAKEFACE_DATA or ../shared/data)."""
    return data_root()


def synthetic_faces(n: int, size: int = 32, channels: int = 1, seed: int = 0):
    """Smooth random images; the 'fake' half carries a faint checkerboard (GAN-like upsampling
    artefact) so a tiny model can learn the task in one epoch."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    coarse = rng.uniform(40, 215, size=(n, size // 4, size // 4, channels))
    images = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)
    checker = ((np.indices((size, size)).sum(axis=0) % 2) * 2 - 1)[None, :, :, None] * 30.0
    images = images + labels[:, None, None, None] * checker + rng.normal(0, 3, images.shape)
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_synthetic_records(folder: Path, size: int = 32, channels: int = 1, per_split=None,
                            shuffle_labels: bool = False) -> Path:
    """Write train/valid/test shards of synthetic faces into `folder` (with `shuffle_labels`,
    the labels permuted so they no longer follow the images: nothing left to learn)."""
    from fakeface_tf.data import records

    per_split = per_split or {"train": 64, "valid": 32, "test": 32}
    folder.mkdir(parents=True, exist_ok=True)
    for i, (split, n) in enumerate(per_split.items()):
        images, labels = synthetic_faces(n, size, channels, seed=i)
        if shuffle_labels:
            labels = np.random.default_rng(100 + i).permutation(labels)
        examples = (
            records.serialize(img, int(lab), path=f"{split}/{j}.jpg", split=split,
                              box=(1, 2, size - 2, size - 3), angle=0.0)
            for j, (img, lab) in enumerate(zip(images, labels))
        )
        records.write(folder / records.shard_name(split, 0, 1), examples)
    return folder


@pytest.fixture(scope="session")
def tiny_records(tmp_path_factory) -> Path:
    """A TFRecords folder of 32x32 gray synthetic faces: 64 train, 32 valid, 32 test."""
    return write_synthetic_records(tmp_path_factory.mktemp("records"))


def tiny_config(records_dir: Path, *overrides: str, model: str = "baseline"):
    """A Config that trains `model` in seconds on `tiny_records` (32x32 gray, no augmentation)."""
    from fakeface_tf.core.config import Config, apply_overrides

    return apply_overrides(Config(name=f"tiny-{model}"), [
        f"data.path={records_dir}", "data.image_size=32", f"model.name={model}",
        "model.filters=8", "model.dense_units=16", "training.epochs=2", "training.batch_size=16",
        "optimizer.lr=0.003", "augment.flip=false", "augment.rotation=0", "augment.zoom=0",
        "augment.brightness=0", "training.tracking=off", *overrides])  # MLflow: test_tracking.py


def crash_after_first_epoch():
    """A Keras callback that raises at the end of the first epoch: an interrupted run."""
    import keras

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("simulated crash after the first epoch")

    return Crash()


@pytest.fixture(scope="session")
def tiny_run(tiny_records, tmp_path_factory) -> Path:
    """A finished run folder: the baseline model trained 2 epochs on `tiny_records`
    (validation AUC ~1, probabilities near 0.5, so pick thresholds, don't assume 0.5)."""
    from fakeface_tf.training.train import train

    root = tmp_path_factory.mktemp("tiny_run")
    return train(tiny_config(tiny_records), root / "runs", progress=False)


@pytest.fixture(scope="session")
def tiny_keras_model(tmp_path_factory) -> Path:
    """An untrained 64x64 gray functional model with the project's logit/prob head, as .keras
    (for inference plumbing: its probabilities sit near 0.5, so set thresholds explicitly)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((64, 64, 1), name="image")
    x = layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    logit = layers.Dense(1, name="logit")(x)
    prob = layers.Activation("sigmoid", name="prob")(logit)
    path = tmp_path_factory.mktemp("tiny_keras") / "tiny.keras"
    keras.Model(inputs, prob, name="tiny").save(path)
    return path


@pytest.fixture
def tiny_run_copy(tiny_run, tmp_path) -> Path:
    """A private copy of `tiny_run`, for tests that write beside the model (threshold.json,
    eval-*/, MODEL_CARD.md) without touching the shared session run."""
    import shutil

    return Path(shutil.copytree(tiny_run, tmp_path / tiny_run.name))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(app):
    """The app on a free loopback port, uvicorn in a background thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def detector(tiny_keras_model):
    """A Detector on `tiny_keras_model`, shared by a module's web-app tests."""
    from fakeface_tf.serving.inference import Detector

    return Detector.load(tiny_keras_model)


@pytest.fixture(scope="module")
def face_bytes(sample_root) -> bytes:
    """The bytes of one sample fake face (a JPEG upload)."""
    return sorted((sample_root / "faces" / "fake").glob("*.jpg"))[0].read_bytes()
