"""The calibration map: raw P(fake) -> calibrated P(fake), strictly increasing on the logit.

Temperature scaling (logit / T) and Platt scaling (a * logit + b, a > 0) are both
`sigmoid(slope * logit(p) + intercept)`; fitted by analysis/calibration.py on held-apart
faces. The map travels with the model in calibration.json, like threshold.json:
`artifacts.load_model` applies it when the file is there, and a model without one reports
its raw P(fake). Being strictly increasing, it changes no ranking and, once the threshold
and the "uncertain" band are mapped through it too, no verdict.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import expit, logit

from fakeface_tf.core.files import read_dataclass, write_text_atomic
from fakeface_tf.core.run_folder import RunFolder

METHODS = ("temperature", "platt")


@dataclass(frozen=True)
class Calibration:
    """P(fake) -> sigmoid(slope * logit(P(fake)) + intercept); temperature = 1 / slope."""

    method: str  # "temperature" (intercept 0) or "platt"
    slope: float
    intercept: float = 0.0
    n_fit: int = 0  # how many faces it was fitted on
    source: str = ""  # the fitting faces (data folder and split)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not (math.isfinite(self.slope) and self.slope > 0 and math.isfinite(self.intercept)):
            raise ValueError(f"slope must be finite and > 0 and intercept finite, got "
                             f"{self.slope}, {self.intercept}")
        if self.method == "temperature" and self.intercept != 0:
            raise ValueError("temperature scaling has no intercept")

    @property
    def temperature(self) -> float:
        return 1.0 / self.slope

    def apply(self, p):
        """Calibrated P(fake) of raw P(fake) `p` (a number or an array); 0 and 1 stay put."""
        p = np.asarray(p, dtype=float)
        return expit(self.slope * logit(p) + self.intercept)

    def invert(self, q):
        """The raw P(fake) that `apply` maps to `q`."""
        q = np.asarray(q, dtype=float)
        return expit((logit(q) - self.intercept) / self.slope)

    def describe(self) -> str:
        if self.method == "temperature":
            return f"temperature scaling, T = {self.temperature:.4g}"
        return f"Platt scaling, a = {self.slope:.4g}, b = {self.intercept:.4g}"


def read_calibration(folder: str | Path) -> Calibration | None:
    """The map saved beside a model (calibration.json), or None when it has none."""
    return read_dataclass(RunFolder(folder).calibration, Calibration, "calibration")


def write_calibration(folder: str | Path, calibration: Calibration) -> Path:
    """calibration.json beside the model; `temperature` is written too, for the reader."""
    path = RunFolder(folder).calibration
    payload = {**asdict(calibration), "temperature": calibration.temperature}
    write_text_atomic(path, json.dumps(payload, indent=2))
    return path
