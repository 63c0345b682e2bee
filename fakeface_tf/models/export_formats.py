"""`fakeface export`'s writers: one Keras model as a SavedModel, a TFLite file or an ONNX file.

Each writer puts the model into a folder and returns a scorer, uint8 NxHxWxC -> (calibrated
P(fake), verdicts), read back from the written file, so the export is checked as a user will
load it (export_check.py). TFLite and ONNX carry the SavedModel's `serving_default` function
(raw P(fake)); their verdicts apply the model's rule, whose files are copied beside them.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.models.decision_rule import DecisionRule
from fakeface_tf.models.export import export_saved_model, serving_function

log = logging.getLogger(__name__)

FORMATS = ("savedmodel", "tflite", "onnx")
QUANTIZE = ("none", "dynamic")
TFLITE_FILE, ONNX_FILE = "model.tflite", "model.onnx"
ONNX_OPSET = 17
BATCH = 32  # images per call when a scorer reads many crops
Scorer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _batched(raw: Callable[[np.ndarray], np.ndarray], rule: DecisionRule) -> Scorer:
    """A scorer from `raw` (uint8 batch -> raw P(fake)), BATCH images a call."""
    def score(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        parts = [np.asarray(raw(images[i:i + BATCH]), np.float64).reshape(-1)
                 for i in range(0, len(images), BATCH)]
        probability = rule.calibrate(np.concatenate(parts))
        return probability, rule.verdicts(probability)

    return score


def write_savedmodel(model: keras.Model, folder: Path, rule: DecisionRule, quantize: str) -> Scorer:
    """The SavedModel (its `verdict` signature carries the rule) in `folder` itself."""
    if quantize != "none":
        raise FakefaceError("--quantize applies to --format tflite only")
    export_saved_model(model, folder, rule)
    verdict = tf.saved_model.load(str(folder)).signatures["verdict"]

    def score(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, verdicts = [], []
        for i in range(0, len(images), BATCH):
            out = verdict(images=tf.constant(images[i:i + BATCH]))
            probs.append(out["prob"].numpy().reshape(-1).astype(np.float64))
            verdicts.extend(v.decode() for v in out["verdict"].numpy())
        return np.concatenate(probs), np.array(verdicts, dtype=object)

    return score


def write_tflite(model: keras.Model, folder: Path, rule: DecisionRule, quantize: str) -> Scorer:
    """folder/model.tflite: fp32, or dynamic-range int8 weights with `quantize="dynamic"`."""
    with tempfile.TemporaryDirectory() as tmp:  # from a concrete function it gave NaN scores
        export_saved_model(model, Path(tmp) / "saved_model")
        converter = tf.lite.TFLiteConverter.from_saved_model(str(Path(tmp) / "saved_model"))
        converter.optimizations = [tf.lite.Optimize.DEFAULT] if quantize == "dynamic" else []
        flat = converter.convert()
    path = folder / TFLITE_FILE
    path.write_bytes(flat)
    interpreter = tf.lite.Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner()
    return _batched(lambda images: list(runner(images=images).values())[0], rule)


def _tf2onnx():
    """tf2onnx, an optional dependency (the `export` extra): imported only for ONNX."""
    try:
        import tf2onnx
    except ImportError as exc:
        raise FakefaceError("ONNX export needs tf2onnx: pip install 'fakeface_tf[export]'") from exc
    return tf2onnx


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise FakefaceError("checking an ONNX export needs onnxruntime: "
                            "pip install 'fakeface_tf[export]'") from exc
    return onnxruntime


def write_onnx(model: keras.Model, folder: Path, rule: DecisionRule, quantize: str) -> Scorer:
    """folder/model.onnx (opset ONNX_OPSET), input "images" uint8 NxHxWxC, output "prob"."""
    if quantize != "none":
        raise FakefaceError("--quantize applies to --format tflite only")
    tf2onnx, ort = _tf2onnx(), _onnxruntime()
    serve, spec = serving_function(model)
    path = folder / ONNX_FILE
    tf2onnx.convert.from_function(tf.function(serve), input_signature=[spec], opset=ONNX_OPSET,
                                  output_path=str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return _batched(lambda images: session.run(None, {name: images})[0], rule)


WRITERS = {"savedmodel": write_savedmodel, "tflite": write_tflite, "onnx": write_onnx}
