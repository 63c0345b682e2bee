"""Judge a model on a data set: metrics, plots, galleries of its worst mistakes, a threshold.

`evaluate` scores a split (`scoring`), measures it (`metrics`) and writes `metrics.json`,
`scores.csv` and the PNGs; `resolve_threshold` says which threshold applies and how it was
chosen, `resolve_band` which "uncertain" band (`conformal`) applies, if any. The names other
stages and the notebooks use from here stay importable from here.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from fakeface_tf.analysis import conformal
from fakeface_tf.analysis.learning_curve import learning_curve
from fakeface_tf.analysis.metrics import ONE_CLASS, choose_threshold, compute_metrics
from fakeface_tf.analysis.scoring import (
    Extremes,
    data_source,
    default_out,
    has_split,
    load_checked,
    score_dataset,
)
from fakeface_tf.core import plots
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.files import write_text_atomic
from fakeface_tf.core.run_folder import METRICS_FILE, RunFolder
from fakeface_tf.core.text import format_value
from fakeface_tf.models import artifacts
from fakeface_tf.models.uncertainty import Band, write_band
from fakeface_tf.training import tracking

__all__ = ["ONE_CLASS", "Extremes", "choose_threshold", "compute_metrics", "data_source",
           "default_out", "evaluate", "learning_curve", "resolve_band", "resolve_threshold",
           "score_dataset", "summary", "write_threshold", "EVAL_PREFIX", "SCORES_FILE"]

EVAL_PREFIX = "eval"  # evaluations land in <model root>/eval-<data>-<split>/
SCORES_FILE = "scores.csv"


def _rejected_summary(rejected: list[dict]) -> dict:
    by_status = dict(Counter(item["status"] for item in rejected))
    return {"count": len(rejected), "by_status": by_status, "files": rejected}


def _valid_scores(loaded, data, batch_size: int, progress: bool, what: str):
    """(labels, scores) of the validation split of `data`, which `what` needs."""
    if not has_split(data, "valid"):
        raise FakefaceError(f"{what} needs a validation split in {data}: "
                            "valid-* TFRecord shards or valid/real/ + valid/fake/ images")
    y, s, _ = score_dataset(loaded, data, "valid", batch_size, keep_worst=0, progress=progress)
    return y, s


def _auto_threshold(loaded, data, target_fpr: float | None, batch_size: int,
                    progress: bool, scored=None) -> tuple[float, str, dict]:
    """The threshold picked on the validation split of `data` (scored unless `scored` gives
    its labels and scores), and its record."""
    method = "fpr" if target_fpr is not None else "accuracy"
    y, s = scored or _valid_scores(loaded, data, batch_size, progress, "choosing a threshold")
    chosen = choose_threshold(y, s, method, target_fpr)
    valid = compute_metrics(y, s, chosen)
    record = {"method": method, "target_fpr": target_fpr, "data": str(data), "split": "valid",
              "valid_accuracy": valid["accuracy"], "valid_accuracy_real": valid["accuracy_real"],
              "valid_counts": valid["counts"]}
    how = f"target FPR {target_fpr}" if method == "fpr" else "max accuracy"
    return chosen, f"auto ({how} on valid)", record


def resolve_threshold(loaded, data, threshold: float | str | None = None,
                      target_fpr: float | None = None, batch_size: int = 64,
                      progress: bool = True, valid=None) -> tuple[float, str, dict | None]:
    """(threshold, where it came from, how it was chosen) for an evaluation; writes no file.

    "auto" (or a `target_fpr`) picks it on the validation split of `data`; the third item is
    then what threshold.json records ({"method": ..., ...}), {"method": "given"} for a number,
    and None when the model's own (or the default) applies. `valid`: the validation split's
    (labels, scores) when already scored."""
    if target_fpr is not None and threshold not in (None, "auto"):
        raise FakefaceError("give either a fixed --threshold or --target-fpr, not both")
    if threshold == "auto" or target_fpr is not None:
        return _auto_threshold(loaded, data, target_fpr, batch_size, progress, valid)
    if threshold is None:
        saved = RunFolder(loaded.root).threshold.is_file()
        return loaded.threshold, "threshold.json beside the model" if saved else "default", None
    value = float(threshold)
    if not 0.0 <= value <= 1.0:
        raise FakefaceError(f"--threshold must be between 0 and 1 or 'auto', got {threshold}")
    return value, "given", {"method": "given"}


def resolve_band(loaded, data, alpha: float | None = None, valid=None) -> tuple[Band | None, bool]:
    """(the "uncertain" band, whether it was fitted here): fitted on the validation split's
    (labels, scores) `valid` at error rate `alpha`, else the model's own conformal.json (None
    without one)."""
    if alpha is None:
        return loaded.band, False
    y, s = valid
    return conformal.fit_band(y, s, alpha, source=f"{data} [valid]"), True


def write_threshold(root: Path, value: float, record: dict) -> Path:
    """threshold.json in `root`: `value` and how it was chosen (`record`, from resolve_threshold)."""
    extra = {k: v for k, v in record.items() if k != "method"}
    return artifacts.save_threshold(root, value, record["method"], extra)


def _galleries(meta: dict, threshold: float, out: Path) -> dict[str, Path]:
    false_pos = [t for t in meta["highest_real"] if t[0] >= threshold]
    false_neg = [t for t in meta["lowest_fake"] if t[0] < threshold]
    files = {}
    for name, items, title in (
        ("worst_false_positives", false_pos, "Worst false positives: real faces scored fake"),
        ("worst_false_negatives", false_neg, "Worst false negatives: fake faces scored real"),
    ):
        captions = [f"P(fake)={s:.3f}\n{Path(p).name[:28]}" for s, p, _ in items]
        files[name] = plots.image_gallery([img for _, _, img in items], captions,
                                          out / f"{name}.png", title)
    return files


def _write_scores(path: Path, y_true, scores, paths, threshold: float, band: Band | None) -> Path:
    """scores.csv; with a band, a `verdict` column (real / fake / uncertain) too."""
    table = pd.DataFrame({"path": paths, "label": y_true, "score": scores,
                          "predicted": (np.asarray(scores) >= threshold).astype(int)})
    if band is not None:
        table["verdict"] = conformal.verdicts(scores, threshold, band)
    write_text_atomic(path, table.to_csv(index=False))
    return path


def _risk_coverage(y_true, scores, result: dict, out: Path) -> Path:
    """The risk-coverage figure, the band's (coverage, decided accuracy) marked when there is one."""
    table = conformal.risk_coverage(y_true, scores, result["threshold"])
    point = (result["coverage"], result["decided_accuracy"]) if "band" in result else None
    return plots.risk_coverage(table["coverage"], table["accuracy"], out / "risk_coverage.png", point)


def _files(loaded, y_true, scores, meta: dict, result: dict, out: Path,
           band: Band | None = None) -> dict[str, Path]:
    """scores.csv, the figures and the galleries of an evaluation, by name."""
    chosen = result["threshold"]
    files = {
        "scores": _write_scores(out / SCORES_FILE, y_true, scores, meta["paths"], chosen, band),
        "confusion_matrix": plots.confusion_matrix(result["confusion_matrix"]["matrix"],
                                                   out / "confusion_matrix.png"),
        "roc_curve": plots.roc_curve(y_true, scores, out / "roc_curve.png"),
        "pr_curve": plots.pr_curve(y_true, scores, out / "pr_curve.png"),
        "reliability": plots.reliability_diagram(y_true, scores, out / "reliability.png"),
        "score_histograms": plots.score_histograms(y_true, scores, out / "score_histograms.png", chosen),
        "risk_coverage": _risk_coverage(y_true, scores, result, out),
        **_galleries(meta, chosen, out),
    }
    if loaded.run_dir is not None:
        files["learning_curves"] = plots.learning_curves(RunFolder(loaded.run_dir).history,
                                                         out / "learning_curves.png")
    return files


def evaluate(model_path: str | Path, data: str | Path, out: str | Path | None = None,
             split: str = "test", threshold: float | str | None = None,
             target_fpr: float | None = None, keep_worst: int = 8, batch_size: int = 64,
             progress: bool = True, save_threshold: bool = False,
             alpha: float | None = None) -> dict:
    """Score `model_path` on `split` of `data`; write metrics.json, scores.csv and the plots
    into `out` (default: beside the model) and return the metrics.

    A threshold chosen here ("auto", `target_fpr`) or given is written to out/threshold.json;
    only `save_threshold` also makes it (and a band fitted here) the model's own
    (threshold.json, conformal.json beside the model, which inference reads): evaluating
    never changes a model unasked. `alpha` fits an
    "uncertain" band on the valid split (written to out/conformal.json); without it the
    model's own band, if any, applies."""
    if alpha is not None:
        conformal.check_alpha(alpha)
    loaded = load_checked(model_path, data, split)
    valid = (_valid_scores(loaded, data, batch_size, progress, "fitting a band (--alpha)")
             if alpha is not None else None)
    chosen, source, record = resolve_threshold(loaded, data, threshold, target_fpr, batch_size,
                                               progress, valid)
    band, fitted = resolve_band(loaded, data, alpha, valid)
    if save_threshold and record is None:
        raise FakefaceError("--save-threshold needs a threshold to save: --threshold auto, "
                            "--threshold T or --target-fpr F")
    y_true, scores, meta = score_dataset(loaded, data, split, batch_size, keep_worst, progress)
    if not len(y_true):
        raise FakefaceError(f"no usable face in {data} ({split}): "
                            f"{_rejected_summary(meta['rejected'])['by_status']}")
    out = Path(out) if out else default_out(loaded, data, split, prefix=EVAL_PREFIX)
    out.mkdir(parents=True, exist_ok=True)

    result = compute_metrics(y_true, scores, chosen)
    if band is not None:
        result.update(conformal.band_metrics(y_true, scores, chosen, band))
    files = _files(loaded, y_true, scores, meta, result, out, band)
    if fitted:
        files["conformal"] = write_band(out, band)
    if record is not None:
        files["threshold"] = write_threshold(out, chosen, record)
        source += f"; written to {files['threshold']}"
    if save_threshold:
        source += f"; saved as the model's threshold: {write_threshold(loaded.root, chosen, record)}"
        if fitted:
            source += f"; its band saved beside it: {write_band(loaded.root, band)}"
    result.update({
        "threshold_source": source,
        "model": str(loaded.path),
        "data": str(data),
        "split": split if has_split(data, split) else "all",
        "rejected": _rejected_summary(meta["rejected"]),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "files": {k: p.name for k, p in files.items()},
        "out": str(out),
    })
    write_text_atomic(out / METRICS_FILE, json.dumps(result, indent=2))
    tracking.log_report(loaded.root, out.name, result, out)
    return result


def summary(metrics: dict) -> str:
    """A short plain-text table of the metrics, the confusion matrix and where the files are."""
    counts, rejected = metrics["counts"], metrics.get("rejected", {}).get("count", 0)
    lines = [f"{metrics.get('model', 'model')} on {metrics.get('data', 'data')} "
             f"[{metrics.get('split', '?')}]: {counts['total']} images "
             f"({counts['real']} real, {counts['fake']} fake); {rejected} files skipped "
             "(no usable face or not an image)",
             f"  {'threshold':18s} {metrics['threshold']:.3f}  ({metrics.get('threshold_source', '')})"]
    for key in ("accuracy", "accuracy_real", "accuracy_fake", "precision", "recall", "f1",
                "roc_auc", "average_precision", "brier_score"):
        note = metrics["notes"].get(key)
        lines.append(f"  {key:18s} {format_value(metrics[key])}" + (f"  ({note})" if note else ""))
    (tp, fp), (fn, tn) = metrics["confusion_matrix"]["matrix"]
    lines += [f"  {'':18s} {'actual fake':>12s} {'actual real':>12s}",
              f"  {'predicted fake':18s} {tp:12d} {fp:12d}",
              f"  {'predicted real':18s} {fn:12d} {tn:12d}"]
    if "band" in metrics:
        band = metrics["band"]
        lines.append(f"  {'coverage':18s} {format_value(metrics['coverage'])}  (accuracy on decided "
                     f"faces {format_value(metrics['decided_accuracy'])}; {metrics['uncertain']} "
                     f"uncertain: P(fake) {band['low']:.3f}-{band['high']:.3f}, alpha {band['alpha']})")
    if "out" in metrics:
        lines.append(f"  metrics and plots in {metrics['out']}")
    return "\n".join(lines)
