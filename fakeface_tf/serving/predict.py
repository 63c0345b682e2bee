"""Verdicts for image files: the record of each, its heatmap overlays, and predictions.csv.

The parts of `fakeface predict` (whose command line is cli/serve.py): a folder becomes its
image files, each file one record (an unreadable one a record with its error, never an
exception), and with an explanation the heatmap overlays are saved as PNGs:
`<stem>_<method>.png` over the whole image and `<stem>_<method>_crop.png` over the face crop.
"""

from __future__ import annotations

import csv
from pathlib import Path

from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data.images import is_image_file
from fakeface_tf.models.uncertainty import UNCERTAIN
from fakeface_tf.serving.inference import Detector, Prediction

EXPLAIN_NAMES = {"gradcam++": "Grad-CAM++", "smoothgrad": "SmoothGrad", "scorecam": "Score-CAM"}
CSV_COLUMNS = ["path", "verdict", "probability", "threshold", "face_status", "face_reason",
               "box_x", "box_y", "box_w", "box_h", "angle", "overlay", "error"]
PREDICTIONS_FILE = "predictions.csv"
LEVELLED_SHOWN = 1.0  # degrees: a face turned less than this to level its eyes goes unmentioned


def expand(paths: list) -> tuple[list[Path], bool]:
    """Image files named directly or found (recursively, sorted) in folders; and whether any
    folder was given."""
    files, any_folder = [], False
    for path in map(Path, paths):
        if path.is_dir():
            any_folder = True
            files += sorted(p for p in path.rglob("*") if is_image_file(p))
        else:
            files.append(path)  # a missing or bad file is reported by predict, per file
    return files, any_folder


def save_overlays(result: Prediction, path: Path, out: Path, colormap: str, opacity: float) -> Path:
    """Write the heatmap over the whole image and over the crop, each titled with the verdict,
    with a colour bar and the score bar (P(fake), threshold, band); returns the first file."""
    # Here, not at the top: plots loads pandas (a quarter second), which neither `fakeface
    # serve` nor a prediction without --explain needs.
    from fakeface_tf.core import plots

    title = (f"{path.name}: {result.verdict}, P(fake) {result.probability:.3f} "
             f"(threshold {result.threshold:.3f})\n{EXPLAIN_NAMES[result.explain]}: bright = pushed "
             f"the model towards \"{result.leaning}\"")
    score = {"probability": result.probability, "threshold": result.threshold,
             "band": (result.band.low, result.band.high) if result.band else None}
    whole = plots.explanation(result.overlay(colormap, opacity), result.heatmap_image,
                              out / f"{path.stem}_{result.explain}.png", title, colormap, opacity,
                              **score)
    plots.explanation(result.overlay(colormap, opacity, on_crop=True), result.heatmap,
                      out / f"{path.stem}_{result.explain}_crop.png", title, colormap, opacity, **score)
    return whole


def predict_file(detector: Detector, path: Path, explain: str | None, out: Path,
                 colormap: str = "jet", opacity: float = 0.6) -> dict:
    """The record for one image: its verdict (with the overlay's path when explained), or
    verdict "error" and the reason when the file cannot be read."""
    try:
        result = detector.predict(path, explain=explain)
    except FakefaceError as exc:  # one bad file never stops the batch
        return {"path": str(path), "verdict": "error", "error": str(exc)}
    record = {"path": str(path), **result.to_dict()}
    if result.heatmap is not None:
        record["overlay"] = str(save_overlays(result, path, out, colormap, opacity))
    return record


def _levelled(record: dict) -> str:
    """", eyes levelled by +12.3 deg" when the face was turned more than `LEVELLED_SHOWN` degrees
    to level its eyes before scoring; "" otherwise (an unlevelled cut turns nothing: 0)."""
    angle = record.get("angle") or 0.0
    return f", eyes levelled by {angle:+.1f} deg" if abs(angle) > LEVELLED_SHOWN else ""


def describe(path: Path, record: dict) -> str:
    """The human line for one image; an uncertain one says the band its P(fake) lies in."""
    if record["verdict"] == UNCERTAIN:
        band = record["band"]
        line = (f"{path}: uncertain, the detector cannot tell (P(fake)={record['probability']:.3f} "
                f"lies in its uncertain band {band['low']:.3f}-{band['high']:.3f}{_levelled(record)})")
    elif record["verdict"] != "not a face":
        line = (f"{path}: {record['verdict']} (P(fake)={record['probability']:.3f}, "
                f"threshold {record['threshold']:.3f}{_levelled(record)})")
    else:
        line = f"{path}: not a face ({record['face_reason']})"
    return line + (f" -> {record['overlay']}" if record.get("overlay") else "")


def csv_row(record: dict) -> dict:
    box = record.get("box") or [None] * 4
    return {**{k: record.get(k) for k in CSV_COLUMNS},
            **dict(zip(("box_x", "box_y", "box_w", "box_h"), box))}


def write_predictions(records: list[dict], out: Path) -> Path:
    """predictions.csv in `out` (created if need be), one row per record; returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / PREDICTIONS_FILE
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(csv_row(r) for r in records)
    return path
