"""Age and gender estimates from the published FaceRes heads (models/faceres.py), in the same
age bins as the fairness labels.

HSE FaceRes was trained with a gender head (`gender_pred`: P(male)) and an age head
(`age_pred`: a softmax over 0..99 years); the detector fine-tunes only the backbone of its own
copy, so the published heads are untouched here. `fakeface fairness-indist` measures their
agreement with the Microsoft Face API on its held-out reals beside GEAR's (on the sample's,
gender agrees far more often than GEAR's); tests/models/test_gear.py guards one such figure.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import pandas as pd

from fakeface_tf.data.labelled import AGE_BINS
from fakeface_tf.models import faceres

ATTRIBUTES = ("age", "gender")
AGE_LOWER = (0, 3, 10, 20, 30, 40, 50, 60, 70)  # first year of each of AGE_BINS
GENDERS = ("Male", "Female")


def age_bin(years: float) -> str:
    """The fairness labels' age bin (`AGE_BINS`) of an age in years."""
    return AGE_BINS[int(np.searchsorted(AGE_LOWER, np.floor(years), side="right")) - 1]


def load() -> keras.Model:
    """The published FaceRes network with its heads (224x224 RGB [0, 255] in)."""
    model = faceres.reference_model()
    model.load_weights(faceres.weights_file())
    return model


def estimate(model: keras.Model, images: Sequence[np.ndarray], batch_size: int = 32) -> pd.DataFrame:
    """One row per face crop: `age` (bin of the expected age), `gender` (P(male) >= 0.5),
    `age_years` and `gender_p` (the chosen gender's probability)."""
    import tensorflow as tf  # resizing only; the model itself is Keras

    years, male = [], []
    for start in range(0, len(images), batch_size):
        x = tf.image.resize(np.asarray(images[start:start + batch_size], np.float32),
                            (faceres.INPUT_SIZE, faceres.INPUT_SIZE)).numpy()
        out = model.predict(x, verbose=0)
        years.append(np.asarray(out["age"]) @ np.arange(out["age"].shape[1], dtype=np.float32))
        male.append(np.asarray(out["gender"]).reshape(-1))
    years = np.concatenate(years) if years else np.zeros(0)
    male = np.concatenate(male) if male else np.zeros(0)
    return pd.DataFrame({"age": [age_bin(y) for y in years],
                         "gender": np.where(male >= 0.5, GENDERS[0], GENDERS[1]).astype(object),
                         "age_years": years, "gender_p": np.maximum(male, 1 - male)})
