"""`fakeface predict PATH...`: real face / fake face / not a face for images and folders.

One line per image (or one JSON object per line with --json). With --explain, the heatmap
overlays are saved as PNGs in --out: `<stem>_<method>.png` over the whole image and
`<stem>_<method>_crop.png` over the face crop. A folder argument processes every image in
it with a progress bar; predictions.csv goes to --out when given (or the current folder for a
folder argument). Missing files are refused before the model loads.
Unreadable files are skipped and listed at the end (exit 1 if some, 2 if all failed).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from tqdm.auto import tqdm

from fakeface_tf.errors import FakefaceError
from fakeface_tf.images import is_image_file
from fakeface_tf.inference import COLORMAPS, EXPLAIN_METHODS, Detector, Prediction

EXPLAIN_NAMES = {"gradcam++": "Grad-CAM++", "smoothgrad": "SmoothGrad", "scorecam": "Score-CAM"}
CSV_COLUMNS = ["path", "verdict", "probability", "threshold", "face_status", "face_reason",
               "box_x", "box_y", "box_w", "box_h", "angle", "overlay", "error"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of images")
    parser.add_argument("--model", help="run folder, saved_models/ entry, .keras file or SavedModel "
                        "(default: saved_models/reference)")
    parser.add_argument("--explain", choices=EXPLAIN_METHODS, help="save a heatmap overlay per face")
    parser.add_argument("--out", type=Path, help="folder for overlays and predictions.csv "
                        "(default: the current folder)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--colormap", choices=list(COLORMAPS), default="jet")
    parser.add_argument("--opacity", type=float, default=0.6, help="heatmap opacity in [0, 1]")


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
    """Write the heatmap over the whole image and over the crop, each titled with the verdict
    and with a colour bar; returns the first file."""
    from fakeface_tf import plots  # matplotlib only when there is something to draw

    title = (f"{path.name}: {result.verdict}, P(fake) {result.probability:.3f} "
             f"(threshold {result.threshold:.3f})\n{EXPLAIN_NAMES[result.explain]}: bright = pushed "
             f"the model towards \"{result.verdict}\"")
    whole = plots.explanation(result.overlay(colormap, opacity), result.heatmap_image,
                              out / f"{path.stem}_{result.explain}.png", title, colormap, opacity)
    plots.explanation(result.overlay(colormap, opacity, on_crop=True), result.heatmap,
                      out / f"{path.stem}_{result.explain}_crop.png", title, colormap, opacity)
    return whole


def describe(path: Path, record: dict) -> str:
    """The human line for one image."""
    if record["verdict"] != "not a face":
        line = (f"{path}: {record['verdict']} (P(fake)={record['probability']:.3f}, "
                f"threshold {record['threshold']:.3f}, angle {record['angle']:+.1f} deg)")
    else:
        line = f"{path}: not a face ({record['face_reason']})"
    return line + (f" -> {record['overlay']}" if record.get("overlay") else "")


def csv_row(record: dict) -> dict:
    box = record.get("box") or [None] * 4
    return {**{k: record.get(k) for k in CSV_COLUMNS},
            **dict(zip(("box_x", "box_y", "box_w", "box_h"), box))}


def run(args: argparse.Namespace) -> int:
    if not 0.0 <= args.opacity <= 1.0:
        raise FakefaceError(f"--opacity must be within [0, 1], got {args.opacity}")
    files, any_folder = expand(args.paths)
    if not files:
        raise FakefaceError(f"no images found in {', '.join(map(str, args.paths))}")
    missing = [str(path) for path in files if not path.is_file()]
    if missing:  # before the model loads: a typo should not cost seconds
        raise FakefaceError(f"file not found: {', '.join(missing)}")
    detector = Detector.load(args.model)
    out = args.out or Path.cwd()
    records, failed = [], []
    bar = tqdm(files, desc="predict", unit="img", disable=not any_folder, file=sys.stderr)
    for path in bar:
        try:
            result = detector.predict(path, explain=args.explain)
        except FakefaceError as exc:  # one bad file never stops the batch
            failed.append((path, str(exc)))
            records.append({"path": str(path), "verdict": "error", "error": str(exc)})
            continue
        record = {"path": str(path), **result.to_dict()}
        if result.heatmap is not None:
            record["overlay"] = str(save_overlays(result, path, out, args.colormap, args.opacity))
        records.append(record)
        bar.write(json.dumps(record) if args.json else describe(path, record), file=sys.stdout)
    if any_folder or args.out:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "predictions.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(csv_row(r) for r in records)
        print(f"wrote {out / 'predictions.csv'} ({len(records)} rows)", file=sys.stderr)
    for _, reason in failed:
        print(f"fakeface: error: {reason}", file=sys.stderr)
    if failed:
        return 2 if len(failed) == len(files) else 1
    return 0
