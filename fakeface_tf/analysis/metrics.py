"""Metrics and the decision threshold: pure functions over labels and P(fake) scores.

The positive class is fake (label 1), as in the seed project's Table 1. A metric that is
undefined on a set (AUC with one class...) is None with the reason under `notes`, never 0.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as sk

from fakeface_tf.core.errors import FakefaceError

ONE_CLASS = "unavailable: only one class present"
ROWS = ("predicted fake", "predicted real")
COLUMNS = ("actual fake", "actual real")
REASONS = {  # why a threshold metric is None
    "precision": "unavailable: no image was predicted fake",
    "recall": "unavailable: no fake images",
    "f1": "unavailable: no fake images and none predicted fake",
    "accuracy_real": "unavailable: no real images",
    "accuracy_fake": "unavailable: no fake images",
}


def _value(x: float) -> float | None:
    return None if x is None or np.isnan(x) else float(x)


def _check_inputs(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).astype(int).reshape(-1)
    scores = np.asarray(scores, dtype=float).reshape(-1)
    if y_true.shape != scores.shape:
        raise FakefaceError(f"{len(y_true)} labels but {len(scores)} scores")
    if not len(y_true):
        raise FakefaceError("no images to evaluate")
    if not set(np.unique(y_true)) <= {0, 1}:
        raise FakefaceError(f"labels must be 0 (real) or 1 (fake), got {sorted(set(y_true))}")
    return y_true, scores


def confusion(y_true, y_pred) -> dict:
    """Confusion matrix with positive = fake, rows predicted fake/real, columns actual fake/real
    (the seed's Table 1), as a 2x2 list and as labelled cells."""
    matrix = sk.confusion_matrix(y_true, y_pred, labels=[1, 0]).T.tolist()
    return {
        "rows": list(ROWS),
        "columns": list(COLUMNS),
        "matrix": matrix,
        "cells": {row: dict(zip(COLUMNS, values)) for row, values in zip(ROWS, matrix)},
    }


def compute_metrics(y_true, scores, threshold: float = 0.5) -> dict:
    """Threshold and ranking metrics of fake-probability `scores` against labels (1 = fake).

    A metric that is undefined on this set (AUC with one class, precision with no image
    called fake...) is None, with the reason under `notes`."""
    y_true, scores = _check_inputs(y_true, scores)
    y_pred = (scores >= threshold).astype(int)
    n_real, n_fake = int((y_true == 0).sum()), int((y_true == 1).sum())
    both = n_real > 0 and n_fake > 0
    notes: dict[str, str] = {}
    result = {
        "threshold": float(threshold),
        "accuracy": float(sk.accuracy_score(y_true, y_pred)),
        "precision": _value(sk.precision_score(y_true, y_pred, pos_label=1, zero_division=np.nan)),
        "recall": _value(sk.recall_score(y_true, y_pred, pos_label=1, zero_division=np.nan)),
        "f1": _value(sk.f1_score(y_true, y_pred, pos_label=1, zero_division=np.nan)),
        "roc_auc": float(sk.roc_auc_score(y_true, scores)) if both else None,
        "average_precision": float(sk.average_precision_score(y_true, scores)) if both else None,
        "accuracy_real": float(np.mean(y_pred[y_true == 0] == 0)) if n_real else None,
        "accuracy_fake": float(np.mean(y_pred[y_true == 1] == 1)) if n_fake else None,
        "brier_score": float(np.mean((scores - y_true) ** 2)),
        "counts": {"total": len(y_true), "real": n_real, "fake": n_fake,
                   "predicted_fake": int(y_pred.sum()), "predicted_real": int((1 - y_pred).sum())},
        "confusion_matrix": confusion(y_true, y_pred),
    }
    if not both:
        notes["roc_auc"] = notes["average_precision"] = ONE_CLASS
    notes.update({k: why for k, why in REASONS.items() if result[k] is None})
    result["notes"] = notes
    return result


def _candidate_thresholds(scores: np.ndarray) -> np.ndarray:
    """One threshold per distinct decision: midpoints between sorted distinct scores, plus one
    below all (everything fake) and one above all (nothing fake)."""
    s = np.unique(scores)
    above = s[-1] + (1.0 - s[-1]) / 2 if s[-1] < 1.0 else np.nextafter(s[-1], np.inf)
    return np.concatenate([[min(0.0, s[0])], (s[:-1] + s[1:]) / 2, [above]])


def _called_fake(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many of `scores` each threshold calls fake (score >= threshold), by binary search
    in the sorted scores: O(N log N), where a thresholds x images table was N^2 (20k
    validation faces made it gigabytes)."""
    return len(scores) - np.searchsorted(np.sort(scores), thresholds, side="left")


def choose_threshold(y_true, scores, method: str = "accuracy", target_fpr: float | None = None) -> float:
    """Decision threshold from labelled scores (usually the validation split).

    "accuracy": the threshold of maximum accuracy (ties: the one nearest 0.5).
    "fpr": the lowest threshold whose false positive rate (reals called fake) is at most
    `target_fpr`, i.e. the most fakes caught for that budget of false alarms."""
    y_true, scores = _check_inputs(y_true, scores)
    candidates = _candidate_thresholds(scores)
    fakes_called, reals_called = (_called_fake(scores[y_true == label], candidates) for label in (1, 0))
    n_real = int((y_true == 0).sum())
    if method == "accuracy":
        accuracy = (fakes_called + (n_real - reals_called)) / len(scores)
        best = np.flatnonzero(accuracy == accuracy.max())
        return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])
    if method == "fpr":
        if target_fpr is None or not 0.0 <= target_fpr <= 1.0:
            raise FakefaceError(f"--target-fpr must be between 0 and 1, got {target_fpr}")
        if not n_real:
            raise FakefaceError("a target false positive rate needs real images in the validation split")
        allowed = np.flatnonzero(reals_called / n_real <= target_fpr)
        return float(candidates[allowed.min()])
    raise FakefaceError(f"threshold method must be 'accuracy' or 'fpr', got {method!r}")
