"""Judge a model on a data set: metrics, plots, galleries of its worst mistakes, a threshold.

`compute_metrics` and `choose_threshold` are pure functions over labels and scores (1 =
fake, the positive class). `score_dataset` runs a model over face-crop TFRecords or over an
image folder with `real/` and `fake/` (cut on the fly with the model's own face options;
images without a usable face are counted and listed, never silently dropped). `evaluate`
ties them together and writes `metrics.json`, `scores.csv` and the PNGs.
"""

from __future__ import annotations

import argparse
import heapq
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fakeface_tf import plots
from fakeface_tf.errors import FakefaceError
from fakeface_tf.files import write_text_atomic
from fakeface_tf.text import format_value

ONE_CLASS = "unavailable: only one class present"
ROWS = ("predicted fake", "predicted real")
COLUMNS = ("actual fake", "actual real")


# ------------------------------------------------------------------------------ metrics


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
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(y_true, y_pred, labels=[1, 0]).T.tolist()
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
    from sklearn import metrics as sk

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
    reasons = {
        "precision": "unavailable: no image was predicted fake",
        "recall": "unavailable: no fake images",
        "f1": "unavailable: no fake images and none predicted fake",
        "accuracy_real": "unavailable: no real images",
        "accuracy_fake": "unavailable: no fake images",
    }
    notes.update({k: why for k, why in reasons.items() if result[k] is None})
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


# ------------------------------------------------------------------------------ scoring


@dataclass
class Batch:
    """Face crops ready for the model, and the files of this chunk that yielded no face."""

    images: np.ndarray  # uint8 NxHxWxC
    labels: np.ndarray  # int (N,), 1 = fake
    paths: list[str]
    rejected: list[dict] = field(default_factory=list)  # {"path", "label", "status", "reason"}


def _image_folder(data: Path, split: str) -> Path | None:
    """`data/<split>` or `data` itself, whichever holds real/ or fake/; None if neither."""
    for base in (data / split, data):
        if (base / "real").is_dir() or (base / "fake").is_dir():
            return base
    return None


def has_split(data: str | Path, split: str) -> bool:
    """Whether `data` holds `split` itself (shards or a <split>/ image folder), as opposed to
    a flat real/ + fake/ folder that stands for every split."""
    from fakeface_tf import records

    data = Path(data).expanduser()
    return (bool(records.shard_files(data, split))
            or any((data / split / label).is_dir() for label in ("real", "fake")))


def _list_images(base: Path) -> tuple[list[tuple[Path, int]], list[dict]]:
    """Image files under base/real and base/fake with their labels, and the other files
    (listed as skipped), found by the rule `fakeface preprocess` uses (`images.list_images`)."""
    from fakeface_tf.images import list_images
    from fakeface_tf.records import LABELS

    files, skipped = [], []
    for name, label in sorted(LABELS.items(), key=lambda kv: kv[1]):
        if (base / name).is_dir():
            images, others = list_images(base / name)
            files += [(path, label) for path in images]
            skipped += [{"path": str(path), "label": label, "status": "skipped",
                         "reason": f"not an image file extension ({path.suffix or 'none'})"}
                        for path in others]
    return files, skipped


def _record_batches(loaded, data: Path, split: str, batch_size: int, progress: bool):
    from fakeface_tf import data as data_lib

    shape = data_lib.image_shape(data, split)
    wanted = (loaded.image_size, loaded.image_size, loaded.channels)
    if shape != wanted:
        raise FakefaceError(f"{data}: the records hold {shape} crops but the model takes {wanted}; "
                            "evaluate on records preprocessed for this model, or on an image folder")
    total = sum(data_lib.count_examples(data, split).values())
    bar = tqdm(total=total, desc=f"scoring {split}", unit="img", disable=not progress)
    for images, labels, meta in data_lib.make_dataset(data, split=split, batch_size=batch_size,
                                                      with_meta=True):
        paths = [p.decode() for p in meta["path"].numpy()]
        bar.update(len(paths))
        yield Batch(images.numpy().astype(np.uint8), labels.numpy().astype(int), paths)
    bar.close()


def _folder_batches(loaded, base: Path, batch_size: int, progress: bool):
    from fakeface_tf import faces

    options = loaded.face_options
    files, skipped = _list_images(base)
    if not files:
        raise FakefaceError(f"{base}: no images in real/ or fake/")
    yield Batch(np.zeros((0, options.size, options.size, options.channels), np.uint8),
                np.zeros(0, int), [], skipped)
    bar = tqdm(total=len(files), desc=f"faces+scoring {base.name}", unit="img", disable=not progress)
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        crops = faces.crop_files([p for p, _ in chunk], options, progress=False)
        ok = [(c, p, y) for c, (p, y) in zip(crops, chunk) if c.ok]
        rejected = [{"path": str(p), "label": y, "status": c.status, "reason": c.reason}
                    for c, (p, y) in zip(crops, chunk) if not c.ok]
        bar.update(len(chunk))
        shape = (0, options.size, options.size, options.channels)
        yield Batch(np.stack([c.image for c, _, _ in ok]) if ok else np.zeros(shape, np.uint8),
                    np.array([y for _, _, y in ok], dtype=int), [str(p) for _, p, _ in ok], rejected)
    bar.close()


def iter_batches(loaded, data: str | Path, split: str = "test", batch_size: int = 64,
                 progress: bool = True) -> Iterator[Batch]:
    """Uint8 face crops of `split` sized for `loaded`, in a fixed order, a batch at a time.

    `data` is a TFRecords folder (crops made by `fakeface preprocess`) or an image folder
    with real/ and fake/ (optionally under <split>/), cut here with `faces.crop_files`."""
    kind, folder = data_source(data, split)
    if kind == "records":
        yield from _record_batches(loaded, folder, split, batch_size, progress)
    else:
        yield from _folder_batches(loaded, folder, batch_size, progress)


def data_source(data: str | Path, split: str = "test") -> tuple[str, Path]:
    """("records", folder) or ("images", the folder holding real/ and fake/) for `data`;
    checked before any model loads, so a wrong path fails at once."""
    from fakeface_tf import records

    data = Path(data).expanduser()
    if not data.exists():
        raise FakefaceError(f"data not found: {data}")
    if data.is_dir() and records.shard_files(data):
        return "records", data
    base = _image_folder(data, split) if data.is_dir() else None
    if base is None:
        raise FakefaceError(f"{data} is neither a TFRecords folder nor an image folder with "
                            "real/ and fake/ subfolders")
    return "images", base


class Extremes:
    """The `k` highest (or lowest) scored crops seen so far, as (score, path, image): a heap of
    `k` copies, so a gallery holds `k` crops however many are scored. Ties keep the earlier."""

    def __init__(self, k: int, highest: bool):
        self.k, self.sign, self.heap, self.seen = k, 1.0 if highest else -1.0, [], 0

    def add(self, scores, paths, images) -> None:
        """Offer crops with their scores and paths; an image is copied only when it is kept."""
        if not self.k:
            return
        for score, path, image in zip(scores, paths, images):
            key = (self.sign * float(score), -self.seen)  # unique: images are never compared
            self.seen += 1
            if len(self.heap) < self.k:
                heapq.heappush(self.heap, (key, path, np.array(image)))
            elif key > self.heap[0][0]:
                heapq.heapreplace(self.heap, (key, path, np.array(image)))

    def items(self) -> list[tuple[float, str, np.ndarray]]:
        """(score, path, image), most extreme first."""
        return [(self.sign * key[0], path, image) for key, path, image in sorted(self.heap, reverse=True)]


def score_dataset(loaded, data: str | Path, split: str = "test", batch_size: int = 64,
                  keep_worst: int = 8, progress: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """P(fake) for every usable image: (y_true, scores, meta).

    The crops stream through a batch at a time; what stays is a label, a score and a path per
    face (metrics and thresholds need them all) and the `keep_worst` crops of each gallery.
    meta: `paths` (aligned with the scores), `rejected` (files with no usable face), and
    `highest_real` / `lowest_fake`: the `keep_worst` most fake-looking real crops and most
    real-looking fake crops as (score, path, image), the candidates for the error galleries."""
    labels, scores, paths, rejected = [], [], [], []
    highest_real, lowest_fake = Extremes(keep_worst, highest=True), Extremes(keep_worst, highest=False)
    for batch in iter_batches(loaded, data, split, batch_size, progress):
        rejected.extend(batch.rejected)
        if not len(batch.labels):
            continue
        s = np.asarray(loaded.predict(batch.images), dtype=float).reshape(-1)
        labels.append(batch.labels)
        scores.append(s)
        paths.extend(batch.paths)
        for extremes, label in ((highest_real, 0), (lowest_fake, 1)):
            rows = np.flatnonzero(batch.labels == label)
            extremes.add(s[rows], [batch.paths[i] for i in rows], (batch.images[i] for i in rows))
    y_true = np.concatenate(labels) if labels else np.zeros(0, int)
    meta = {"paths": paths, "rejected": rejected, "highest_real": highest_real.items(),
            "lowest_fake": lowest_fake.items()}
    return y_true, (np.concatenate(scores) if scores else np.zeros(0)), meta


# ------------------------------------------------------------------------------ evaluate


def _rejected_summary(rejected: list[dict]) -> dict:
    by_status = dict(Counter(item["status"] for item in rejected))
    return {"count": len(rejected), "by_status": by_status, "files": rejected}


def resolve_threshold(loaded, data, threshold: float | str | None = None,
                      target_fpr: float | None = None, batch_size: int = 64,
                      progress: bool = True) -> tuple[float, str, dict | None]:
    """(threshold, where it came from, how it was chosen) for an evaluation; writes no file.

    "auto" (or a `target_fpr`) picks it on the validation split of `data`; the third item is
    then what threshold.json records ({"method": ..., ...}), {"method": "given"} for a number,
    and None when the model's own (or the default) applies."""
    from fakeface_tf import artifacts

    if target_fpr is not None and threshold not in (None, "auto"):
        raise FakefaceError("give either a fixed --threshold or --target-fpr, not both")
    if threshold == "auto" or target_fpr is not None:
        method = "fpr" if target_fpr is not None else "accuracy"
        if not has_split(data, "valid"):
            raise FakefaceError(f"choosing a threshold needs a validation split in {data}: "
                                "valid-* TFRecord shards or valid/real/ + valid/fake/ images")
        y, s, _ = score_dataset(loaded, data, "valid", batch_size, keep_worst=0, progress=progress)
        chosen = choose_threshold(y, s, method, target_fpr)
        valid = compute_metrics(y, s, chosen)
        record = {"method": method, "target_fpr": target_fpr, "data": str(data), "split": "valid",
                  "valid_accuracy": valid["accuracy"], "valid_accuracy_real": valid["accuracy_real"],
                  "valid_counts": valid["counts"]}
        how = f"target FPR {target_fpr}" if method == "fpr" else "max accuracy"
        return chosen, f"auto ({how} on valid)", record
    if threshold is None:
        saved = (loaded.root / artifacts.THRESHOLD_FILE).is_file()
        return loaded.threshold, "threshold.json beside the model" if saved else "default", None
    value = float(threshold)
    if not 0.0 <= value <= 1.0:
        raise FakefaceError(f"--threshold must be between 0 and 1 or 'auto', got {threshold}")
    return value, "given", {"method": "given"}


def write_threshold(root: Path, value: float, record: dict) -> Path:
    """threshold.json in `root`: `value` and how it was chosen (`record`, from resolve_threshold)."""
    from fakeface_tf import artifacts

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


def _write_scores(path: Path, y_true, scores, paths, threshold: float) -> Path:
    import pandas as pd

    table = pd.DataFrame({"path": paths, "label": y_true, "score": scores,
                          "predicted": (np.asarray(scores) >= threshold).astype(int)})
    write_text_atomic(path, table.to_csv(index=False))
    return path


def default_out(loaded, data: str | Path, split: str, prefix: str = "eval") -> Path:
    """`<model root>/<prefix>-<data folder name>-<split>/`."""
    return loaded.root / f"{prefix}-{Path(data).expanduser().resolve().name}-{split}"


def evaluate(model_path: str | Path, data: str | Path, out: str | Path | None = None,
             split: str = "test", threshold: float | str | None = None,
             target_fpr: float | None = None, keep_worst: int = 8, batch_size: int = 64,
             progress: bool = True, save_threshold: bool = False) -> dict:
    """Score `model_path` on `split` of `data`; write metrics.json, scores.csv and the plots
    into `out` (default: beside the model) and return the metrics.

    A threshold chosen here ("auto", `target_fpr`) or given is written to out/threshold.json;
    only `save_threshold` also makes it the model's own (threshold.json beside the model,
    which inference reads): evaluating never changes a model unasked."""
    from fakeface_tf import artifacts

    artifacts.find_model(model_path)
    data_source(data, split)
    loaded = artifacts.load_model(model_path)
    chosen, source, record = resolve_threshold(loaded, data, threshold, target_fpr, batch_size,
                                               progress)
    if save_threshold and record is None:
        raise FakefaceError("--save-threshold needs a threshold to save: --threshold auto, "
                            "--threshold T or --target-fpr F")
    y_true, scores, meta = score_dataset(loaded, data, split, batch_size, keep_worst, progress)
    if not len(y_true):
        raise FakefaceError(f"no usable face in {data} ({split}): "
                            f"{_rejected_summary(meta['rejected'])['by_status']}")
    out = Path(out) if out else default_out(loaded, data, split)
    out.mkdir(parents=True, exist_ok=True)

    result = compute_metrics(y_true, scores, chosen)
    files = {
        "scores": _write_scores(out / "scores.csv", y_true, scores, meta["paths"], chosen),
        "confusion_matrix": plots.confusion_matrix(result["confusion_matrix"]["matrix"],
                                                   out / "confusion_matrix.png"),
        "roc_curve": plots.roc_curve(y_true, scores, out / "roc_curve.png"),
        "pr_curve": plots.pr_curve(y_true, scores, out / "pr_curve.png"),
        "reliability": plots.reliability_diagram(y_true, scores, out / "reliability.png"),
        "score_histograms": plots.score_histograms(y_true, scores, out / "score_histograms.png", chosen),
        **_galleries(meta, chosen, out),
    }
    if loaded.run_dir is not None:
        files["learning_curves"] = plots.learning_curves(loaded.run_dir / "history.csv",
                                                         out / "learning_curves.png")
    if record is not None:
        files["threshold"] = write_threshold(out, chosen, record)
        source += f"; written to {files['threshold']}"
    if save_threshold:
        source += f"; saved as the model's threshold: {write_threshold(loaded.root, chosen, record)}"
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
    write_text_atomic(out / "metrics.json", json.dumps(result, indent=2))
    return result


def learning_curve(run_dirs: list, data: str | Path, out: str | Path, split: str = "test",
                   progress: bool = True) -> pd.DataFrame:
    """Test accuracy (at each run's own validation-picked threshold) and ROC-AUC of runs that
    differ only in `data.train_fraction`: what more training faces buy. Writes
    `learning_curve.csv` and `learning_curve.png` into `out` and returns the table."""
    from fakeface_tf import artifacts

    for run in run_dirs:  # every path checked before the first model loads
        artifacts.find_model(run)
    data_source(data, split)
    from fakeface_tf import data as data_lib

    rows = []
    for run in run_dirs:
        loaded = artifacts.load_model(run)
        if loaded.config is None:
            raise FakefaceError(f"{run}: a learning-curve point needs a run folder with config.yaml")
        fraction = loaded.config.data.train_fraction
        records = data_lib.records_path(loaded.config)
        faces = sum(data_lib.count_examples(records, "train", fraction).values())
        threshold = loaded.threshold
        if has_split(data, "valid"):  # picked here, not saved: the run's own threshold stays
            threshold = choose_threshold(*score_dataset(loaded, data, "valid", keep_worst=0,
                                                        progress=progress)[:2])
        y_true, scores, _ = score_dataset(loaded, data, split, keep_worst=0, progress=progress)
        metrics = compute_metrics(y_true, scores, threshold)
        rows.append({"run": Path(run).name, "train_fraction": fraction, "train_faces": faces,
                     "accuracy": metrics["accuracy"], "roc_auc": metrics["roc_auc"],
                     "threshold": threshold, "test_faces": len(y_true)})
    table = pd.DataFrame(rows).sort_values("train_faces").reset_index(drop=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "learning_curve.csv", table.to_csv(index=False))
    plots.data_curve(table, out / "learning_curve.png",
                     title=f"What more training faces buy ({split} split, {table['test_faces'].iloc[0]} faces)")
    return table


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
    if "out" in metrics:
        lines.append(f"  metrics and plots in {metrics['out']}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ CLI


def threshold_arg(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or 'auto', got {text!r}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run folder, saved_models/ entry, .keras file or SavedModel")
    parser.add_argument("data", help="TFRecords folder, or image folder with real/ and fake/")
    parser.add_argument("--out", default=None, help="output folder (default: <model>/eval-<data>-<split>)")
    parser.add_argument("--split", default="test",
                        help="split to evaluate (default: test); a flat real/ + fake/ folder is used whole")
    parser.add_argument("--threshold", type=threshold_arg, default=None,
                        help="decision threshold, or 'auto' to pick it on the valid split; written "
                             "to OUT/threshold.json (default: the model's threshold.json, else 0.5)")
    parser.add_argument("--target-fpr", type=float, default=None,
                        help="with auto: the lowest threshold whose false positive rate is at most this")
    parser.add_argument("--save-threshold", action="store_true",
                        help="also make the chosen or given threshold the model's own "
                             "(threshold.json beside the model, read by predict and serve); "
                             "without it the model folder is left as it was")
    parser.add_argument("--keep-worst", type=int, default=8, help="images per error gallery")


def add_learning_curve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="run folders trained on different data.train_fraction")
    parser.add_argument("--data", required=True, help="TFRecords folder with valid and test splits")
    parser.add_argument("--out", required=True, help="folder for learning_curve.csv and .png")
    parser.add_argument("--split", default="test", help="split to score (default: test)")


def run_learning_curve(args: argparse.Namespace) -> int:
    table = learning_curve(args.runs, args.data, args.out, split=args.split)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"learning curve: {Path(args.out) / 'learning_curve.png'}")
    return 0


def run(args: argparse.Namespace) -> int:
    metrics = evaluate(args.model, args.data, out=args.out, split=args.split,
                       threshold=args.threshold, target_fpr=args.target_fpr,
                       keep_worst=args.keep_worst, save_threshold=args.save_threshold)
    print(summary(metrics))
    return 0
