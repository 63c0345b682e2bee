"""The "uncertain" band: P(fake) between `low` and `high` gets no verdict.

A split-conformal band (fitted by analysis/conformal.py) at error rate alpha: on faces like the
calibration faces, the set of labels {real}, {fake} or {real, fake} it gives a face holds the
true label at least 1 - alpha of the time. {real, fake} is the verdict "uncertain". The band
travels with the model in conformal.json, like threshold.json; without the file there is no
uncertain verdict.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.files import read_dataclass, write_text_atomic
from fakeface_tf.core.run_folder import RunFolder

UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class Band:
    """P(fake) in [low, high] is "uncertain"; below `low` the set is {real}, above `high` {fake}."""

    low: float
    high: float
    alpha: float  # the error rate guaranteed on faces like the calibration faces
    n_calibration: int  # how many faces the band was fitted on
    method: str = "split conformal, LAC score"
    source: str = ""  # the calibration faces (data folder and split)

    def label_set(self, probability: float) -> tuple[str, ...]:
        """The conformal set of one face: ("real",), ("fake",) or ("real", "fake")."""
        if probability < self.low:
            return ("real",)
        if probability > self.high:
            return ("fake",)
        return ("real", "fake")

    def uncertain(self, scores) -> np.ndarray:
        """Where P(fake) lies in [low, high]: the set is {real, fake} (one definition, for a
        single face or a whole evaluation)."""
        scores = np.asarray(scores, dtype=float)
        return (scores >= self.low) & (scores <= self.high)

    def decides(self, probability: float) -> bool:
        return not bool(self.uncertain(probability))


def read_band(folder: str | Path) -> Band | None:
    """The band saved beside a model, or None when it has none."""
    path = RunFolder(folder).conformal
    band = read_dataclass(path, Band, "band")
    if band is None:
        return None
    if not 0 <= band.low <= band.high <= 1:
        raise FakefaceError(f"{path}: low and high must satisfy 0 <= low <= high <= 1")
    return band


def write_band(folder: str | Path, band: Band) -> Path:
    path = RunFolder(folder).conformal
    write_text_atomic(path, json.dumps(asdict(band), indent=2))
    return path
