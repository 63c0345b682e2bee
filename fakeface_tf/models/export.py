"""Export and provenance: what every model folder (a run's, an ensemble's) is written with.

`exportable` recompiles trained weights for plain Keras, `export_saved_model` writes the
serving SavedModel (uint8 NxHxWxC -> {"prob": (N, 1)}; with a decision rule, the verdict too),
`validation_metrics` scores a model on a finite dataset (metrics.json) and `environment` /
`save_environment` record what produced it (env.json: versions, git state, devices, seed).
Training (`train.py`) and ensembling (`ensemble.py`) both use these; neither imports the other.
`fakeface export` (export_formats.py) writes the same function as TFLite or ONNX.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import keras
import tensorflow as tf

from fakeface_tf.core.config import REPO_ROOT, Config, records_dir
from fakeface_tf.core.files import write_text_atomic
from fakeface_tf.core.run_folder import RunFolder
from fakeface_tf.core.versions import package_versions
from fakeface_tf.data.records import records_hash
from fakeface_tf.models.decision_rule import DecisionRule
from fakeface_tf.models.registry import compile_model

PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "numpy", "keras-tuner", "scikit-learn",
            "opencv-python-headless", "mtcnn", "fakeface_tf")
METRICS = ("loss", "accuracy", "auc", "precision", "recall")


def environment(cfg: Config) -> dict:
    """What produced a run: versions, git state, the records' hash, devices, seed."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(PACKAGES),
        "git": _git_state(),
        # the records trained on, by content (data/records.records_hash): runs on different
        # records differ here whatever their folders are called
        "data": {"path": cfg.data.path, "hash": records_hash(records_dir(cfg.data.path))},
        "devices": [d.name for d in tf.config.list_logical_devices()],
        "seed": cfg.training.seed,
        "deterministic": cfg.training.deterministic,
        "distribute": cfg.distribute,
        "mixed_precision": cfg.training.mixed_precision,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _git_state() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True,
                              text=True, check=True, timeout=20).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def save_environment(folder: Path, cfg: Config) -> Path:
    """`folder`/env.json: `environment(cfg)`, written atomically."""
    path = RunFolder(folder).env
    write_text_atomic(path, json.dumps(environment(cfg), indent=2))
    return path


def exportable(model: keras.Model, cfg: Config) -> keras.Model:
    """The trained weights recompiled with Keras' own metrics only, so the exported `.keras`
    file loads in plain Keras without this package (see registry.HardLabels). Exported models are for
    inference and frozen, so they carry no optimizer state (a fine-tuned FaceRes' Adam moments
    would triple its size); set `model.trainable = True` to train one further."""
    plain = dataclasses.replace(cfg, augment=dataclasses.replace(cfg.augment, mixup=0.0),
                                training=dataclasses.replace(cfg.training, jit_compile=False))
    model.trainable = False
    model = compile_model(model, plain, 1)
    model.optimizer.build(model.trainable_variables)  # saved whole, so loading warns of nothing
    return model


def serving_function(model: keras.Model):
    """uint8 NxHxWxC -> {"prob": (N, 1) float32}: what every export computes (SavedModel
    `serving_default`, TFLite, ONNX), with its input signature."""
    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.uint8, name="images")

    def serve(images):
        return {"prob": tf.cast(model(tf.cast(images, tf.float32), training=False), tf.float32)}

    return serve, spec


def export_saved_model(model: keras.Model, path: Path, rule: DecisionRule | None = None) -> Path:
    """TF SavedModel whose `serving_default` takes uint8 NxHxWxC and returns {"prob": (N, 1)}.

    With a `rule`, a `verdict` signature also returns the calibrated P(fake) and the service's
    verdict ("fake face" / "real face" / "uncertain"), and `decision_rule` its numbers: the
    threshold and band travel inside the SavedModel. The model is not `track`ed: the endpoints
    capture its variables already, and tracking it too stored every weight twice."""
    serve, spec = serving_function(model)
    archive = keras.export.ExportArchive()
    archive.add_endpoint("serve", serve, input_signature=[spec])  # first: serving_default
    if rule is not None:
        archive.add_endpoint("verdict", lambda images: rule.tf_decide(serve(images)["prob"]),
                             input_signature=[spec])
        numbers = {k: tf.constant(v, tf.float64) for k, v in rule.describe().items()}
        archive.add_endpoint("decision_rule", lambda: numbers, input_signature=[])
    archive.write_out(str(path), verbose=False)
    return path


def validation_metrics(model: keras.Model, valid_ds) -> dict:
    """Loss, accuracy, AUC, precision, recall and F1 of `model` on a finite dataset."""
    with warnings.catch_warnings():  # Keras warns when a dataset of unknown length ends
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        values = model.evaluate(valid_ds, verbose=0, return_dict=True)
    result = {name: float(values[name]) for name in METRICS}
    p, r = result["precision"], result["recall"]
    result["f1"] = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return result
