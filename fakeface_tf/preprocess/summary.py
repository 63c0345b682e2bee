"""The end of a run: manifest.csv from the shards' parts, and the counts of preprocess.json.

manifest.csv has one row for every entry under the class folders: each image file with its
face or the reason it has none (the shards' parts, in plan order), then every entry that is
not an image to cut. It is written part by part, so a run of 140k files never holds its rows.
"""

from __future__ import annotations

import platform

from fakeface_tf import __version__
from fakeface_tf.core import files
from fakeface_tf.core.files import display_name
from fakeface_tf.core.versions import package_versions
from fakeface_tf.data.faces import STATUSES
from fakeface_tf.preprocess.shards import MANIFEST_FILE, manifest_writer, read_part

IMBALANCE_RATIO = 0.8  # warn when the smaller class is under 80% of the larger
VERSIONED = ("tensorflow", "tensorflow-cpu", "keras", "mtcnn", "opencv-python-headless",
             "pillow", "numpy", "apache-beam")


def versions() -> dict:
    """The versions a run's records depend on, for preprocess.json."""
    return {"fakeface_tf": __version__, "python": platform.python_version(),
            **package_versions(VERSIONED)}


def _count(counts: dict, row: dict) -> None:
    """Add one manifest row to {split: {label: {status: n}}}."""
    by_status = counts.setdefault(row["split"] or "none", {}).setdefault(row["label"], {})
    by_status[row["status"]] = by_status.get(row["status"], 0) + 1


def write_manifest(out, shards: list[str], skipped: list[dict]) -> tuple[int, dict]:
    """Write OUT/manifest.csv atomically: the parts of `shards` in order, then `skipped`,
    one part in memory at a time. Returns (rows written, {split: {label: {status: n}}})."""
    counts: dict = {}
    total = 0
    with files.replacing(files.join(out, MANIFEST_FILE)) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as stream:
            writer = manifest_writer(stream)
            writer.writeheader()
            for rows in (*(read_part(out, name) for name in shards), skipped):
                writer.writerows(rows)
                for row in rows:
                    _count(counts, row)
                total += len(rows)
    return total, counts


def status_counts(counts: dict) -> dict:
    """{status: n} over every split and label, in STATUSES order, zeros left out."""
    statuses = {status: sum(by_status.get(status, 0) for by_label in counts.values()
                            for by_status in by_label.values())
                for status in (*STATUSES, "skipped")}
    return {status: n for status, n in statuses.items() if n}


def record_counts(counts: dict) -> dict:
    """{split: faces written} for train, valid and test."""
    return {split: sum(by.get("ok", 0) for by in counts.get(split, {}).values())
            for split in ("train", "valid", "test")}


def balance_warnings(counts: dict) -> list[str]:
    """A warning for each split whose smaller class has under IMBALANCE_RATIO of the larger's
    faces."""
    warnings = []
    for split, by_label in counts.items():
        ok = {label: by_label.get(label, {}).get("ok", 0) for label in ("real", "fake")}
        small, large = min(ok.values()), max(ok.values())
        if large and small < IMBALANCE_RATIO * large:
            warnings.append(f"{split} is imbalanced: {ok['real']} real vs {ok['fake']} fake faces")
    return warnings


def format_summary(summary: dict, out) -> str:
    """The lines printed at the end of `fakeface preprocess`."""
    records = summary["records"]
    lines = [
        f"preprocess: {summary['files']} files -> {sum(records.values())} faces in "
        f"{len(summary['shards'])} shards ({summary['shards_reused']} reused) in {summary['seconds']:.1f} s",
        "  records: " + ", ".join(f"{s} {n}" for s, n in records.items()),
        "  status: " + ", ".join(f"{s} {n}" for s, n in summary["status"].items()),
    ]
    lines += [f"  warning: {w}" for w in summary["warnings"]]
    manifest = display_name(str(files.join(out, MANIFEST_FILE)))  # stdout takes UTF-8 only
    lines.append(f"  manifest: {manifest} (one row per file, with the reason "
                 "for every file without a face)")
    return "\n".join(lines)
