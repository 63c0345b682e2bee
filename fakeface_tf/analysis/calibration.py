"""Fit calibration maps on the validation faces and measure what they buy on the test faces.

Temperature scaling (scipy) and Platt scaling (scikit-learn's unpenalised logistic regression
on the logit) are fitted on the raw P(fake) of the validation split; isotonic regression is
measured for comparison only (its plateaus tie faces the model ranks apart, so it is not
shipped). `calibrate` ships the map with the lowest cross-validated log loss, raw P(fake)
included, as calibration.json beside the model, maps threshold.json and conformal.json through
it so no verdict changes, and writes calibration.csv (ECE, Brier, log loss before and after)
and a reliability diagram.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.optimize import minimize_scalar
from scipy.special import logit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss
from sklearn.model_selection import StratifiedKFold

from fakeface_tf.analysis import conformal
from fakeface_tf.analysis.scoring import check_inputs, has_split, score_dataset
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.files import write_text_atomic
from fakeface_tf.core.run_folder import RunFolder
from fakeface_tf.models import artifacts
from fakeface_tf.models.calibration import METHODS, Calibration, write_calibration
from fakeface_tf.models.uncertainty import Band, read_band

log = logging.getLogger(__name__)

REPORT_DIR = "calibration"  # <model>/calibration/: the before/after table and plot
TABLE_FILE = "calibration.csv"
FIGURE_FILE = "reliability.png"
N_BINS = 15  # equal-width bins of P(fake) for ECE and the reliability diagram
CV_FOLDS = 5
# Raw P(fake) is clipped this far from 0 and 1 before the logit when fitting: a float32
# sigmoid reaches exactly 0 or 1, whose infinite logit no fit can use.
EPS = 1e-7


def _logits(scores) -> np.ndarray:
    return logit(np.clip(np.asarray(scores, dtype=float), EPS, 1 - EPS))


def _binned(labels, scores, n_bins: int = N_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty equal-width bin of P(fake): faces, mean P(fake), share actually fake."""
    scores = np.asarray(scores, dtype=float)
    index = np.clip((scores * n_bins).astype(int), 0, n_bins - 1)
    n = np.bincount(index, minlength=n_bins)
    kept = n > 0
    sums = (np.bincount(index, w, minlength=n_bins)[kept] for w in (scores, np.asarray(labels, float)))
    return n[kept], *(total / n[kept] for total in sums)


def expected_calibration_error(labels, scores, n_bins: int = N_BINS) -> float:
    """ECE: the face-weighted mean gap between mean P(fake) and the share of fakes per bin."""
    n, mean_score, fraction_fake = _binned(labels, scores, n_bins)
    if not n.sum():
        raise FakefaceError("expected calibration error of no faces")
    return float((n * np.abs(mean_score - fraction_fake)).sum() / n.sum())


def ece_if_calibrated(scores, draws: int = 1000, seed: int = 0) -> float:
    """The mean ECE of labels drawn from the scores themselves: what a perfectly calibrated
    model with these scores would show on this many faces, ECE's floor from sampling alone."""
    scores = np.asarray(scores, dtype=float)
    rng = np.random.default_rng(seed)
    return float(np.mean([expected_calibration_error(rng.random(len(scores)) < scores, scores)
                          for _ in range(draws)]))


def scores_report(labels, scores) -> dict:
    """ECE, Brier score and log loss of P(fake) against labels (1 = fake)."""
    labels, scores = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    return {"ece": expected_calibration_error(labels, scores),
            "brier": float(brier_score_loss(labels, scores)),
            "log_loss": float(log_loss(labels, scores, labels=[0, 1]))}


def _check_fit_input(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels, scores = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    if len(labels) != len(scores) or len(np.unique(labels)) != 2:
        raise FakefaceError("calibration needs real and fake faces, one score per face")
    return labels, scores


def fit_temperature(labels, scores, source: str = "") -> Calibration:
    """The temperature T minimising the log loss of sigmoid(logit / T) (T in [0.01, 100])."""
    labels, scores = _check_fit_input(labels, scores)
    z, sign = _logits(scores), 2 * labels - 1

    def loss(log_slope: float) -> float:  # mean -log P(true label) of sigmoid(e^s * z)
        return float(np.mean(np.logaddexp(0.0, -sign * np.exp(log_slope) * z)))

    best = minimize_scalar(loss, bounds=(np.log(0.01), np.log(100.0)), method="bounded",
                           options={"xatol": 1e-8})
    return Calibration("temperature", float(np.exp(best.x)), 0.0, len(labels), source)


def fit_platt(labels, scores, source: str = "") -> Calibration:
    """a, b minimising the log loss of sigmoid(a * logit + b): unpenalised logistic regression."""
    labels, scores = _check_fit_input(labels, scores)
    model = LogisticRegression(C=np.inf, max_iter=1000).fit(_logits(scores).reshape(-1, 1), labels)
    slope, intercept = float(model.coef_[0, 0]), float(model.intercept_[0])
    if slope <= 0:
        raise FakefaceError(f"Platt scaling found slope {slope:.3g} <= 0: the scores do not "
                            "rank fakes above reals on these faces")
    return Calibration("platt", slope, intercept, len(labels), source)


FITTERS = {"temperature": fit_temperature, "platt": fit_platt}


def fit_isotonic(labels, scores) -> IsotonicRegression:
    """Isotonic regression of the label on P(fake): for comparison, never shipped."""
    labels, scores = _check_fit_input(labels, scores)
    return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, labels)


def _transform(method: str, labels, scores):
    """A function raw P(fake) -> calibrated, fitted by `method` on (labels, scores)."""
    if method == "raw":
        return lambda s: np.asarray(s, dtype=float)
    if method == "isotonic":
        return fit_isotonic(labels, scores).predict
    return FITTERS[method](labels, scores).apply


def cross_validated_log_loss(method: str, labels, scores, folds: int = CV_FOLDS, seed: int = 0) -> float:
    """Log loss of `method` fitted on 4/5 of the faces and applied to the fifth, pooled: the
    in-sample loss always favours the map with more parameters; this one need not."""
    labels, scores = _check_fit_input(labels, scores)
    out = np.zeros(len(scores))
    for fit, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(scores, labels):
        out[held] = _transform(method, labels[fit], scores[fit])(scores[held])
    return float(log_loss(labels, out, labels=[0, 1]))


def comparison(valid, test, shipped: str) -> tuple[pd.DataFrame, dict]:
    """One row per method (raw, temperature, platt, isotonic): parameters, validation log loss
    (in-sample and cross-validated) and ECE, Brier, log loss on the test split; and the
    calibrated test scores of each method."""
    rows, calibrated = [], {}
    for method in ("raw", *METHODS, "isotonic"):
        fitted = FITTERS[method](*valid) if method in FITTERS else None
        transform = fitted.apply if fitted else _transform(method, *valid)
        calibrated[method] = transform(test[1])
        rows.append({"method": method,
                     "parameters": fitted.describe() if fitted else
                     ("none" if method == "raw" else "step function (not shipped: ties)"),
                     "shipped": method == shipped,
                     "valid_log_loss": float(log_loss(valid[0], transform(valid[1]), labels=[0, 1])),
                     "valid_cv_log_loss": cross_validated_log_loss(method, *valid),
                     **{f"test_{k}": v for k, v in scores_report(test[0], calibrated[method]).items()},
                     "test_ece_if_calibrated": ece_if_calibrated(calibrated[method])})
    return pd.DataFrame(rows), calibrated


# ------------------------------------------------------------- the model's threshold and band


def _read_dict(path: Path) -> dict:
    """The JSON object in `path` ({} when there is no file)."""
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FakefaceError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(value, dict):
        raise FakefaceError(f"{path}: expected a JSON object")
    return value


def _raw(saved: dict, key: str, old: Calibration | None, default: float | None = None) -> float:
    """The raw-scale value of `key`: recorded as raw_<key> when an earlier calibration mapped
    it (exact), else the value itself taken back through the old map, if there was one."""
    if f"raw_{key}" in saved:
        return float(saved[f"raw_{key}"])
    try:
        value = float(saved.get(key, default))
    except (TypeError, ValueError) as exc:
        raise FakefaceError(f"{key} is not a number: {saved.get(key)!r}") from exc
    return float(old.invert(value)) if old is not None else value


def mapped_threshold(root: Path, old: Calibration | None, new: Calibration) -> tuple[float, dict]:
    """The model's raw threshold (threshold.json, else the default 0.5 on its current scale)
    and the threshold.json that puts it on the new map's scale."""
    saved = _read_dict(RunFolder(root).threshold)
    raw = _raw(saved, "threshold", old, default=0.5)
    record = {**saved, "threshold": float(new.apply(raw)), "method": saved.get("method", "default"),
              "raw_threshold": raw, "calibration": f"mapped through {new.describe()}"}
    return raw, record


def mapped_band(root: Path, old: Calibration | None, new: Calibration) -> tuple[Band | None, dict | None]:
    """The model's "uncertain" band on the raw scale (None without conformal.json) and the
    conformal.json that puts it on the new map's scale: the same faces stay uncertain."""
    band = read_band(root)
    if band is None:
        return None, None
    saved = _read_dict(RunFolder(root).conformal)
    raw = replace(band, low=_raw(saved, "low", old), high=_raw(saved, "high", old))
    mapped = replace(raw, low=float(new.apply(raw.low)), high=float(new.apply(raw.high)))
    return raw, {**saved, **asdict(mapped), "raw_low": raw.low, "raw_high": raw.high,
                 "calibration": f"mapped through {new.describe()}"}


def changed_verdicts(scores, calibration: Calibration, threshold: float, band: Band | None,
                     record: dict, band_record: dict | None) -> int:
    """How many faces get another verdict (real / fake / uncertain) once their raw scores,
    the raw threshold and band are all mapped: 0 for a strictly increasing map."""
    before = conformal.verdicts(scores, threshold, band)
    new_band = replace(band, low=band_record["low"], high=band_record["high"]) if band else None
    after = conformal.verdicts(calibration.apply(scores), record["threshold"], new_band)
    return int((before != after).sum())


# ------------------------------------------------------------------------ report and command


def reliability_figure(labels, curves: dict[str, np.ndarray], path: Path,
                       title: str = "Reliability on the test split") -> Path:
    """Share actually fake against mean P(fake) per equal-width bin, one line per method
    (ECE in the legend), over histograms of each method's scores."""
    fig = Figure(figsize=(5.2, 6.0))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfectly calibrated")
    for name, scores in curves.items():
        _, mean_score, fraction_fake = _binned(labels, scores)
        ece = expected_calibration_error(labels, scores)
        top.plot(mean_score, fraction_fake, "o-", ms=4, label=f"{name} (ECE {ece:.3f})")
        bottom.hist(scores, bins=N_BINS, range=(0, 1), histtype="step", label=name)
    top.set(ylabel="fraction actually fake", title=title, xlim=(0, 1), ylim=(0, 1))
    top.legend(loc="upper left", fontsize=8)
    bottom.set(xlabel=f"predicted P(fake) ({N_BINS} equal-width bins)", ylabel="faces")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _raw_scores(loaded, data, split: str, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Labels and the model's raw P(fake) on `split`, whatever calibration.json it has now."""
    raw = replace(loaded, predict=loaded.raw_predict or loaded.predict)
    y, s, _ = score_dataset(raw, data, split, keep_worst=0, progress=progress)
    return y, s


def choose(table: pd.DataFrame) -> str:
    """The method with the lowest cross-validated validation log loss, raw P(fake) included:
    a map ships only where it beats the raw scores on faces it was not fitted on."""
    rows = table[table["method"].isin(("raw", *METHODS))]
    return str(rows.loc[rows["valid_cv_log_loss"].idxmin(), "method"])


def _write_verdict_files(root: Path, record: dict, band_record: dict | None) -> None:
    write_text_atomic(RunFolder(root).threshold, json.dumps(record, indent=2))
    if band_record is not None:
        write_text_atomic(RunFolder(root).conformal, json.dumps(band_record, indent=2))


def _ship_map(loaded, new: Calibration, scores) -> dict:
    """Write calibration.json with threshold.json and conformal.json mapped through it,
    after checking that no verdict on `scores` (raw) changes; returns the threshold record."""
    raw_threshold, record = mapped_threshold(loaded.root, loaded.calibration, new)
    raw_band, band_record = mapped_band(loaded.root, loaded.calibration, new)
    changed = changed_verdicts(scores, new, raw_threshold, raw_band, record, band_record)
    if changed:
        raise FakefaceError(f"mapping through {new.describe()} changed {changed} verdicts; "
                            "nothing was written")
    write_calibration(loaded.root, new)
    _write_verdict_files(loaded.root, record, band_record)
    log.info("%s fitted on %d validation faces; threshold %.4f -> %.4f; verdicts unchanged",
             new.describe(), new.n_fit, raw_threshold, record["threshold"])
    return record


def _keep_raw(loaded) -> dict:
    """Leave P(fake) raw: drop an earlier calibration.json and put its threshold and band
    back on the raw scale; returns the threshold record."""
    root, old = loaded.root, loaded.calibration
    saved = _read_dict(RunFolder(root).threshold)
    record = {k: v for k, v in saved.items() if k not in ("raw_threshold", "calibration")}
    record["threshold"] = _raw(saved, "threshold", old, default=0.5)
    band_record = None
    if (band := read_band(root)) is not None:
        conf = _read_dict(RunFolder(root).conformal)
        band_record = {k: v for k, v in conf.items() if k not in ("raw_low", "raw_high", "calibration")}
        band_record.update(low=_raw(conf, "low", old), high=_raw(conf, "high", old))
    if old is not None:
        _write_verdict_files(root, record, band_record if band is not None else None)
        RunFolder(root).calibration.unlink()
    log.info("no map beat raw P(fake) on held-out validation folds: P(fake) stays raw")
    return record


def calibrate(model_path, data, method: str = "auto", out=None,
              progress: bool = True) -> pd.DataFrame:
    """Fit the maps on the raw P(fake) of the valid split of `data`, measure them on test, and
    ship `method` ("auto": the lowest cross-validated validation log loss, raw included) as
    calibration.json beside the model, its threshold.json and conformal.json mapped through
    it; the before/after table and reliability diagram go to `out` (<model>/calibration/)."""
    if method not in ("auto", *METHODS):
        raise FakefaceError(f"method must be auto or one of {', '.join(METHODS)}, got {method!r}")
    check_inputs([model_path], data, "valid")
    missing = [s for s in ("valid", "test") if not has_split(data, s)]
    if missing:
        raise FakefaceError(f"{data} has no {' or '.join(missing)} split: calibration is fitted "
                            "on valid and measured on test")
    loaded = artifacts.load_model(model_path)
    valid, test = (_raw_scores(loaded, data, s, progress) for s in ("valid", "test"))
    table, calibrated = comparison(valid, test, method)
    chosen = choose(table) if method == "auto" else method
    table["shipped"] = table["method"] == chosen
    new = FITTERS[chosen](*valid, source=f"{data} [valid]") if chosen != "raw" else None
    record = _ship_map(loaded, new, np.r_[valid[1], test[1]]) if new else _keep_raw(loaded)
    out = Path(out) if out else loaded.root / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / TABLE_FILE, table.to_csv(index=False))
    curves = {"raw": test[1], **({chosen: calibrated[chosen]} if new else {})}
    reliability_figure(test[0], curves, out / FIGURE_FILE)
    table.attrs.update(out=str(out), calibration=new, threshold=record["threshold"])
    return table
