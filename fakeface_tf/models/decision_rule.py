"""The rule that turns a model's raw P(fake) into `fakeface serve`'s verdict, as one value.

Calibration map (calibration.json), threshold (threshold.json) and "uncertain" band
(conformal.json) are read from beside the model; `verdicts` applies them in NumPy and
`tf_decide` in a TensorFlow graph, so an exported SavedModel answers what the service does:
P(fake) in [low, high] -> "uncertain", else P(fake) >= threshold -> "fake face" else "real face"
(serving/inference.verdict_for, on the calibrated scale).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from fakeface_tf.models.artifacts import read_threshold
from fakeface_tf.models.calibration import Calibration, read_calibration
from fakeface_tf.models.uncertainty import UNCERTAIN, Band, read_band

FAKE, REAL = "fake face", "real face"


@dataclass(frozen=True)
class DecisionRule:
    """Calibration (or none), threshold and band (or none) of one model."""

    threshold: float
    band: Band | None = None
    calibration: Calibration | None = None

    def calibrate(self, raw) -> np.ndarray:
        """The P(fake) the model reports: calibrated when it has a map, else raw (float64)."""
        raw = np.asarray(raw, dtype=np.float64).reshape(-1)
        return raw if self.calibration is None else self.calibration.apply(raw)

    def verdicts(self, probability) -> np.ndarray:
        """Verdict strings of calibrated P(fake) values (faces only: no "not a face")."""
        p = np.asarray(probability, dtype=np.float64).reshape(-1)
        out = np.where(p >= self.threshold, FAKE, REAL).astype(object)
        if self.band is not None:
            out[self.band.uncertain(p)] = UNCERTAIN
        return out

    def tf_decide(self, raw: tf.Tensor) -> dict[str, tf.Tensor]:
        """{"prob": calibrated P(fake) (N, 1) float32, "verdict": (N,) string} of raw (N, 1)
        P(fake), computed in float64 as `verdicts` is; the rule's numbers are graph constants."""
        p = tf.reshape(tf.cast(raw, tf.float64), [-1])
        if self.calibration is not None:
            logit = tf.math.log(p) - tf.math.log1p(-p)
            p = tf.sigmoid(self.calibration.slope * logit + self.calibration.intercept)
        verdict = tf.where(p >= self.threshold, FAKE, REAL)
        if self.band is not None:
            inside = (p >= self.band.low) & (p <= self.band.high)
            verdict = tf.where(inside, UNCERTAIN, verdict)
        return {"prob": tf.cast(tf.reshape(p, [-1, 1]), tf.float32), "verdict": verdict}

    def describe(self) -> dict:
        """The rule's numbers, for the signature that reports them and for logs."""
        return {"threshold": self.threshold,
                "uncertain_low": self.band.low if self.band else -1.0,
                "uncertain_high": self.band.high if self.band else -1.0,
                "calibration_slope": self.calibration.slope if self.calibration else 1.0,
                "calibration_intercept": self.calibration.intercept if self.calibration else 0.0}


def read_rule(root: str | Path) -> DecisionRule:
    """The rule saved beside the model in `root` (threshold 0.5 when it has no threshold.json)."""
    return DecisionRule(read_threshold(Path(root)), read_band(root), read_calibration(root))
