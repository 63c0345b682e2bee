"""Shards: the plan (sorted items -> split -> chunks), and cutting and writing one shard.

The work is planned up front and deterministically, so each shard is an independent
`ShardTask` for any runner (local.py's process pool, beam.py's workers) and a re-run can skip
what is done. A shard counts as done only when its `.tfrecord` and its manifest part both
exist under their final names; both are written to a temp name and renamed, so a killed run
never leaves a half-written shard behind that looks finished.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from fakeface_tf.core import files
from fakeface_tf.core.files import display_name, write_text_atomic
from fakeface_tf.data import records
from fakeface_tf.data.faces import FaceOptions, crop_files
from fakeface_tf.preprocess.items import Item

MAX_SHARD_SIZE = 256  # 4 MB of 128x128 gray crops; small enough to resume cheaply
CROP_BATCH = 16  # images per MTCNN call; the Beam runner cuts the same batches (beam.py)
TARGET_SHARDS = 64  # the automatic shard size aims at this many shards (work for every core)
MANIFEST_FIELDS = ["path", "split", "label", "status", "reason", "shard",
                   "x", "y", "w", "h", "angle", "confidence"]
PARTS_DIR = ".parts"  # per-shard manifest parts and the settings of the run
MANIFEST_FILE = records.MANIFEST_FILE  # one definition: data/records.py


@dataclass(frozen=True)
class ShardTask:
    """One shard to cut and write: its file name, its images, OUT and the face cut."""

    name: str
    items: tuple[Item, ...]
    out: str
    options: FaceOptions


def auto_shard_size(n_items: int) -> int:
    """Images per shard when not given: ~TARGET_SHARDS shards, 16..MAX_SHARD_SIZE images each.

    It depends only on the file count, so a re-run of the same SRC plans the same shards.
    """
    return min(MAX_SHARD_SIZE, max(16, -(-n_items // TARGET_SHARDS)))


def plan_shards(items: list[Item], shard_size: int) -> list[tuple[str, list[Item]]]:
    """(shard file name, items) for every shard: per split, sorted by path, in chunks."""
    plan = []
    for split in records.SPLITS:
        chosen = sorted((i for i in items if i.split == split), key=lambda i: i.rel)
        chunks = [chosen[k:k + shard_size] for k in range(0, len(chosen), shard_size)]
        plan.extend((records.shard_name(split, n, len(chunks)), chunk) for n, chunk in enumerate(chunks))
    return plan


def shard_tasks(plan: list[tuple[str, list[Item]]], out, options: FaceOptions,
                done=()) -> list[ShardTask]:
    """The tasks of the planned shards not in `done`."""
    return [ShardTask(name, tuple(chunk), str(out), options)
            for name, chunk in plan if name not in done]


def done_shards(out) -> set[str]:
    """The shards in OUT whose TFRecord and manifest part both exist: one listing of OUT and
    one of its parts (a file check per shard would be a request each on cloud storage)."""
    parts = {name.removesuffix(".csv") for name in files.names(files.join(out, PARTS_DIR))}
    return {name for name in files.names(out) if name in parts}


# ------------------------------------------------------------------------ manifest rows


def manifest_row(item: Item, crop, shard: str) -> dict:
    """One image's row; its reason may quote the file's path, so it is written as its name is
    (`display_name`): rows always encode as UTF-8, in the CSV and through Beam's coders."""
    x, y, w, h = crop.box
    return {"path": item.rel, "split": item.split, "label": item.label, "status": crop.status,
            "reason": display_name(crop.reason), "shard": shard if crop.ok else "",
            "x": round(x, 2), "y": round(y, 2), "w": round(w, 2), "h": round(h, 2),
            "angle": round(crop.angle, 3), "confidence": round(crop.confidence, 4)}


def manifest_writer(stream) -> csv.DictWriter:
    """The CSV writer of manifest rows (a part's or manifest.csv's) on a text stream."""
    return csv.DictWriter(stream, fieldnames=MANIFEST_FIELDS, restval="")


def csv_text(rows: list[dict]) -> str:
    """Manifest rows as CSV text, header first."""
    out = io.StringIO()
    writer = manifest_writer(out)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def part_path(out, name: str):
    """Where shard `name`'s manifest part lives."""
    return files.join(out, PARTS_DIR, f"{name}.csv")


def read_part(out, name: str) -> list[dict]:
    """The manifest rows of one finished shard, as strings."""
    text = files.read_bytes(part_path(out, name)).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text, newline="")))


# ------------------------------------------------------------------------ one shard


def shard_outputs(items, crops: list, name: str) -> tuple[list[bytes], list[dict]]:
    """The serialized examples (faces only) and manifest rows (every file) of shard `name`."""
    examples = [records.serialize(c.image, records.LABELS[i.label], path=i.rel, split=i.split,
                                  box=c.box, angle=c.angle)
                for i, c in zip(items, crops) if c.ok]
    return examples, [manifest_row(i, c, name) for i, c in zip(items, crops)]


def write_shard(out, name: str, examples: list[bytes], rows: list[dict]) -> str:
    """Write a shard's TFRecord, then its manifest part, each atomically (files.replacing: a
    temp name renamed over the final one; for a URL, written locally, uploaded to a temp
    object and renamed), so the shard counts as done only once both are whole; returns its
    name."""
    records.write(files.join(out, name), examples)
    write_text_atomic(part_path(out, name), csv_text(rows))
    return name


def run_shard(task: ShardTask, on_batch=None, before_write=None) -> str:
    """Crop one shard's images, write its TFRecord then its manifest part; returns its name.
    `on_batch(n)` hears of each MTCNN batch cut; `before_write()` runs just before writing
    (a pool worker ends there if its parent has gone, local.py)."""
    crops = crop_files([i.path for i in task.items], task.options, batch_size=CROP_BATCH,
                       progress=False, on_batch=on_batch)
    examples, rows = shard_outputs(task.items, crops, task.name)
    if before_write is not None:
        before_write()
    return write_shard(task.out, task.name, examples, rows)
