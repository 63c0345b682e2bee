"""Load whatever model a user points at: a run folder, a saved_models entry, `.keras`, SavedModel.

Evaluation, fairness, the CLI and the web app all go through `load_model`, so they agree on
which file is the model, which threshold applies and how faces must be cut for it.
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from fakeface_tf.core.config import MODEL_ENV, REPO_ROOT, Config, DataConfig, load_config
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.files import write_text_atomic
from fakeface_tf.core.run_folder import RunFolder
from fakeface_tf.data.face_cut import FaceOptions, face_options, read_cut
from fakeface_tf.models.calibration import Calibration, read_calibration
from fakeface_tf.models.model_version import SAVED_MODEL_PB
from fakeface_tf.models.uncertainty import Band, read_band

REFERENCE = REPO_ROOT / "saved_models" / "reference"
MEMBER_PREFIX = "m{}_"  # layer-name prefix of ensemble member i (`fakeface ensemble`)
# Images per model call in LoadedModel.predict: FaceRes' activations at 224 px take ~50 MB an
# image, so one call on a whole test split (283 faces) peaked at 15 GB; 32 at a time, ~1.6 GB.
PREDICT_BATCH = 32


@dataclass
class LoadedModel:
    predict: Callable[[np.ndarray], np.ndarray]  # NxHxWxC in [0, 255] -> P(fake), shape (N,)
    keras_model: object | None  # the Keras model when there is one (saliency needs it)
    image_size: int
    channels: int
    threshold: float
    config: Config | None
    root: Path
    run_dir: Path | None
    path: Path  # the model file or SavedModel folder actually loaded
    # calibration.json's map, already applied by `predict` (threshold and band are on its
    # scale); `raw_predict` is the model's own P(fake), which calibration is fitted on.
    calibration: Calibration | None = None
    raw_predict: Callable[[np.ndarray], np.ndarray] | None = None

    @functools.cached_property
    def band(self) -> Band | None:
        """The "uncertain" band saved beside the model (conformal.json), else None."""
        return read_band(self.root)

    @functools.cached_property
    def face_options(self) -> FaceOptions:
        """How faces must be cut for this model: the face_cut.json saved with it, else (a model
        from before cuts were saved) its config's size, colour, margin and levelling. Read
        from disk on first use only: serving asks for it on every batch."""
        color = "gray" if self.channels == 1 else "rgb"
        cut_file = RunFolder(self.root).face_cut
        cut = read_cut(self.root) if cut_file.is_file() else None
        if cut is None:
            data = self.config.data if self.config else DataConfig()
            return face_options(replace(data, image_size=self.image_size, color=color))
        if (cut.size, cut.color) != (self.image_size, color):
            raise FakefaceError(f"{cut_file} cuts {cut.size} px {cut.color} faces but "
                                f"the model takes {self.image_size} px {color}")
        return cut


def default_model_path() -> Path:
    """The model to use when no --model is given: $FAKEFACE_MODEL, else the checkout's
    saved_models/reference/; an installed package ships no model, so say how to name one."""
    if os.environ.get(MODEL_ENV):
        return Path(os.environ[MODEL_ENV]).expanduser()
    if REFERENCE.exists():
        return REFERENCE
    raise FakefaceError(
        f"no model given and no saved_models/reference/ here; pass --model or set {MODEL_ENV} "
        "(a run folder, a saved_models/ entry, a .keras file or a SavedModel folder)"
    )


def find_model(path: str | Path) -> Path:
    """The model file or SavedModel folder at `path` (a run folder, saved_models/ entry, .keras
    file or SavedModel), without loading it: commands check their inputs before TensorFlow."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FakefaceError(f"model not found: {path}")
    if path.is_file():
        if path.suffix != ".keras":
            raise FakefaceError(f"{path} is not a model: expected a .keras file or a model folder")
        return path
    for candidate in (RunFolder(path).model, RunFolder(path).saved_model):
        if candidate.exists():
            return candidate
    if (path / SAVED_MODEL_PB).exists():
        return path
    raise FakefaceError(
        f"{path} holds no model (looked for model.keras, saved_model/ and saved_model.pb)"
    )


def model_root(path: str | Path) -> Path:
    """The folder of the model at `path`, where its companions sit (config.yaml,
    threshold.json, face_cut.json): the folder itself, or a .keras file's parent."""
    path = Path(path).expanduser()
    return path if path.is_dir() else path.parent


def _in_batches(score: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """`score` applied PREDICT_BATCH images at a time, so memory does not grow with the input."""
    def predict(images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        parts = [score(images[i:i + PREDICT_BATCH]) for i in range(0, len(images), PREDICT_BATCH)]
        return np.concatenate(parts) if parts else np.zeros(0)

    return predict


def _keras_predictor(model) -> Callable[[np.ndarray], np.ndarray]:
    def score(images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        return np.asarray(model(images, training=False), dtype=np.float64).reshape(-1)

    return _in_batches(score)


def _savedmodel_predictor(folder: Path):
    # TensorFlow and Keras are imported only once a model loads: the commands find the model
    # and check their inputs first, and serving.predict imports this module without them.
    import tensorflow as tf

    loaded = tf.saved_model.load(str(folder))
    serve = loaded.signatures["serving_default"]
    spec = list(serve.structured_input_signature[1].values())[0]
    dtype = spec.dtype

    def score(images: np.ndarray) -> np.ndarray:
        if dtype == tf.uint8:
            images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
        outputs = serve(tf.constant(images, dtype=dtype))
        return np.asarray(list(outputs.values())[0], dtype=np.float64).reshape(-1)

    return _in_batches(score), tuple(spec.shape[1:])


def load_model(path: str | Path) -> LoadedModel:
    """Load a model and what sits beside it (config.yaml, threshold.json, calibration.json:
    `predict` reports calibrated P(fake) when the model has a calibration map)."""
    path = Path(path).expanduser()
    model_path = find_model(path)
    root = model_root(path)
    config_file = next((RunFolder(p).config for p in (root, root.parent)
                        if RunFolder(p).config.is_file()), None)
    config = load_config(config_file) if config_file else None
    # A run here is a folder with training history (RunFolder.is_run() also wants config.yaml).
    run_dir = root if RunFolder(root).history.is_file() else None
    calibration = read_calibration(root)  # before the model loads: a bad file fails at once

    keras_model = None
    if model_path.suffix == ".keras":
        import keras  # here, not at the top: see _savedmodel_predictor

        try:
            keras_model = keras.models.load_model(model_path, compile=False)
        except Exception as exc:  # a corrupt or foreign file: say which and why
            raise FakefaceError(f"{model_path} could not be loaded as a Keras model: {exc}") from exc
        predict = _keras_predictor(keras_model)
        shape = tuple(keras_model.input_shape[1:])
    else:
        try:
            predict, shape = _savedmodel_predictor(model_path)
        except Exception as exc:
            raise FakefaceError(f"{model_path} could not be loaded as a SavedModel: {exc}") from exc
    if len(shape) != 3 or shape[0] is None:
        raise FakefaceError(f"{model_path}: expected a fixed HxWxC image input, got {shape}")
    return LoadedModel(
        predict=_calibrated(predict, calibration),
        keras_model=keras_model,
        image_size=int(shape[0]),
        channels=int(shape[2]),
        threshold=read_threshold(root),
        config=config,
        root=root,
        run_dir=run_dir,
        path=model_path,
        calibration=calibration,
        raw_predict=predict,
    )


def _calibrated(predict: Callable[[np.ndarray], np.ndarray],
                calibration: Calibration | None) -> Callable[[np.ndarray], np.ndarray]:
    """`predict` followed by the calibration map, when the model has one."""
    if calibration is None:
        return predict
    return lambda images: calibration.apply(predict(images))


def read_threshold(root: Path, default: float = 0.5) -> float:
    """The decision threshold saved beside the model (threshold.json), else `default`."""
    file = RunFolder(root).threshold
    if not file.is_file():
        return default
    try:
        return float(json.loads(file.read_text())["threshold"])
    except (ValueError, KeyError, TypeError) as exc:
        raise FakefaceError(f"{file}: unreadable threshold ({exc})") from exc


def save_threshold(root: Path, threshold: float, method: str, extra: dict | None = None) -> Path:
    """Record the decision threshold beside the model; inference picks it up from there."""
    file = RunFolder(root).threshold
    payload = {"threshold": float(threshold), "method": method,
               "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **(extra or {})}
    write_text_atomic(file, json.dumps(payload, indent=2))
    return file


def member_prefixes(model) -> list[str]:
    """["m0_", "m1_", ...] for an ensemble of `fakeface ensemble`, [""] for a single model."""
    names = {layer.name for layer in model.layers}
    prefixes = []
    while MEMBER_PREFIX.format(len(prefixes)) + "logit" in names:
        prefixes.append(MEMBER_PREFIX.format(len(prefixes)))
    return prefixes or [""]
