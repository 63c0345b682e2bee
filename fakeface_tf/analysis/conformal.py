"""Fit the "uncertain" band by split conformal prediction (MAPIE), and measure what it buys.

`fit_band` conformalizes the model's P(fake) on held-apart calibration faces with MAPIE's
`SplitConformalClassifier` (LAC score) and turns MAPIE's threshold into a `Band`;
`verdicts` and `band_metrics` apply it; `risk_coverage` is the curve of accuracy on the
decided faces when abstaining on the least sure ones.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from mapie.classification import SplitConformalClassifier
from sklearn.base import BaseEstimator, ClassifierMixin

from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.models.uncertainty import UNCERTAIN, Band

log = logging.getLogger(__name__)


class ScoreClassifier(ClassifierMixin, BaseEstimator):
    """A prefit scikit-learn classifier standing for the Keras model: its input X is the
    P(fake) column the model already gave, its predict_proba [1 - p, p] (classes 0 real, 1 fake)."""

    def fit(self, X=None, y=None) -> ScoreClassifier:
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X) -> np.ndarray:
        p = np.clip(np.asarray(X, dtype=float).reshape(len(X), -1)[:, 0], 0.0, 1.0)
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def _column(scores) -> np.ndarray:
    return np.asarray(scores, dtype=float).reshape(-1, 1)


ALPHA = 0.05  # the default error rate of the uncertain band (at most 5 % of sets miss)


def check_alpha(alpha: float) -> None:
    """Refuse an error rate outside (0, 1) before any face is scored."""
    if not 0.0 < alpha < 1.0:
        raise FakefaceError(f"alpha must be between 0 and 1 (exclusive), got {alpha}")


def min_calibration(alpha: float = ALPHA) -> int:
    """The fewest calibration faces a band at `alpha` can be fitted on (1 / min(alpha, 1 - alpha))."""
    return int(np.ceil(max(1 / alpha, 1 / (1 - alpha))))


def conformalize(labels, scores, alpha: float = ALPHA) -> SplitConformalClassifier:
    """MAPIE's split-conformal classifier (LAC score, confidence 1 - alpha) fitted on the
    calibration faces' labels (1 = fake) and P(fake)."""
    check_alpha(alpha)
    labels = np.asarray(labels, dtype=int)
    needed = min_calibration(alpha)
    if len(labels) < needed:
        raise FakefaceError(f"a band at alpha {alpha} needs at least {needed} calibration faces, "
                            f"got {len(labels)}")
    mapie = SplitConformalClassifier(ScoreClassifier().fit(), confidence_level=1.0 - alpha,
                                     conformity_score="lac", prefit=True)
    return mapie.conformalize(_column(scores), labels)


def mapie_threshold(mapie: SplitConformalClassifier) -> float:
    """q, MAPIE's conformal quantile of the LAC scores 1 - P(true label): a label y is in a
    face's set when 1 - P(y) <= q. MAPIE computes it in predict_set and keeps it in
    `_mapie_classifier.quantiles_` (MAPIE 1.6; one entry per confidence level)."""
    mapie.predict_set(_column([0.5]))
    return float(mapie._mapie_classifier.quantiles_[0])


def band_from_threshold(q: float, alpha: float, n_calibration: int, source: str = "") -> Band:
    """The band of MAPIE's threshold q: "real" is in the set when p <= q, "fake" when
    p >= 1 - q, so both (uncertain) for 1 - q <= p <= q.

    With q < 0.5 the faces with q < p < 1 - q get an empty set (the model is surer than
    alpha asks); a Band cannot say "empty", so the band shrinks to low = high = 0.5 and those
    faces get the threshold verdict."""
    low, high = max(0.0, 1.0 - q), min(1.0, q)
    if low > high:
        low = high = 0.5
    return Band(low=low, high=high, alpha=alpha, n_calibration=n_calibration, source=source)


def fit_band(labels, scores, alpha: float = ALPHA, source: str = "") -> Band:
    """The split-conformal band fitted on calibration faces (labels 1 = fake, P(fake) scores):
    on faces like them, its set holds the true label at least 1 - alpha of the time."""
    q = mapie_threshold(conformalize(labels, scores, alpha))
    band = band_from_threshold(q, alpha, len(np.asarray(labels)), source)
    log.info("conformal band at alpha %s on %d faces: q %.4f, uncertain for P(fake) in "
             "[%.4f, %.4f]", alpha, band.n_calibration, q, band.low, band.high)
    return band


def verdicts(scores, threshold: float, band: Band | None = None) -> np.ndarray:
    """"real" / "fake" by the threshold, or "uncertain" where the band leaves both labels."""
    scores = np.asarray(scores, dtype=float)
    out = np.where(scores >= threshold, "fake", "real").astype(object)
    if band is not None:
        out[band.uncertain(scores)] = UNCERTAIN
    return out


def band_metrics(labels, scores, threshold: float, band: Band) -> dict:
    """Share decided (`coverage`), accuracy on the decided faces, the uncertain count and
    the band itself, for metrics.json."""
    labels = np.asarray(labels, dtype=int)
    said = verdicts(scores, threshold, band)
    decided = said != UNCERTAIN
    right = (said == "fake") == (labels == 1)
    return {"coverage": float(decided.mean()) if len(said) else None,
            "decided_accuracy": float(right[decided].mean()) if decided.any() else None,
            "uncertain": int((~decided).sum()),
            "band": {"low": band.low, "high": band.high, "alpha": band.alpha,
                     "n_calibration": band.n_calibration, "method": band.method,
                     "source": band.source}}


def risk_coverage(labels, scores, threshold: float) -> pd.DataFrame:
    """Coverage against accuracy on the decided faces when abstaining on the least sure (by
    |P(fake) - threshold|): row k decides the k surest faces. `margin` is the k-th distance."""
    labels, scores = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    margin = np.abs(scores - threshold)
    order = np.argsort(-margin, kind="stable")
    right = ((scores >= threshold) == (labels == 1))[order]
    decided = np.arange(1, len(scores) + 1)
    return pd.DataFrame({"coverage": decided / max(1, len(scores)), "decided": decided,
                         "accuracy": np.cumsum(right) / decided, "margin": margin[order]})
