"""The process-wide settings of one training: its distribution strategy, seeds, op determinism,
dtype policy, and how much Keras reports while it fits."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys

import keras
import tensorflow as tf
from tensorflow.python.framework import config as tf_config  # tf.config lacks the off switch

from fakeface_tf.core.config import TrainingConfig
from fakeface_tf.core.errors import FakefaceError


def strategy(distribute: str) -> tf.distribute.Strategy:
    """The strategy `distribute` (the config's top-level key) names: none, mirrored (the GPUs
    of this machine) or multiworker (workers and their roles from $TF_CONFIG)."""
    if distribute == "mirrored":
        return tf.distribute.MirroredStrategy()
    if distribute == "multiworker":
        return multiworker_strategy()
    return tf.distribute.get_strategy()


@functools.cache
def multiworker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    """The process's one MultiWorkerMirroredStrategy. Made before TensorFlow runs anything else
    (its collective ops are configured at start-up); without $TF_CONFIG it is a cluster of one."""
    raw = os.environ.get("TF_CONFIG", "")
    try:
        spec = json.loads(raw) if raw.strip() else {}
    except ValueError:
        spec = None
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster", {}), dict):
        raise FakefaceError(f"TF_CONFIG is not a JSON object with 'cluster' and 'task': "
                            f"{raw[:200]!r}")
    return tf.distribute.MultiWorkerMirroredStrategy()


@contextlib.contextmanager
def precision(training: TrainingConfig):
    """Global seeds, op determinism and the dtype policy for the span of one training (the
    determinism switch is put back after, so a later XLA training in the process can start)."""
    keras.utils.set_random_seed(training.seed)
    deterministic = tf_config.is_op_determinism_enabled()
    switch = {True: tf_config.enable_op_determinism, False: tf_config.disable_op_determinism}
    switch[training.deterministic]()
    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy("mixed_float16" if training.mixed_precision else "float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
        switch[deterministic]()


def verbosity(progress: bool) -> int:
    """Keras' progress bar on a terminal; elsewhere (a notebook, a log file) nothing from
    Keras: callbacks.LogProgress logs how far training is instead."""
    return 1 if progress and sys.stdout.isatty() else 0
