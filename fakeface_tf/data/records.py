"""The TFRecord format of a face crop, and how to write and read it.

Images are stored as raw uint8 bytes plus their shape, not as PNG/JPEG: the crops are
small (128x128x1 is 16 KB), the round trip is bit-identical, and reading needs no
decoder, which keeps the CPU free for training (see benchmarks/input_pipeline.py).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.files import replacing

# TensorFlow is imported inside each function that uses it, not here: this module's names
# (LABELS, SPLITS, SUMMARY_FILE, shard names) are read by faces, preprocess' planning and the
# CLI's input checks, which must start without TensorFlow's seconds of import.
if TYPE_CHECKING:
    import tensorflow as tf

LABELS = {"real": 0, "fake": 1}  # the positive class is fake
SPLITS = ("train", "valid", "test")
SUMMARY_FILE = "preprocess.json"  # beside the shards: the face cut, counts and versions of the run


@functools.cache
def features() -> dict:
    """The parsing spec of one example. A function, so that importing this module (for LABELS,
    shard names) does not import TensorFlow."""
    import tensorflow as tf

    return {
        "image": tf.io.FixedLenFeature([], tf.string),
        "height": tf.io.FixedLenFeature([], tf.int64),
        "width": tf.io.FixedLenFeature([], tf.int64),
        "channels": tf.io.FixedLenFeature([], tf.int64),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "path": tf.io.FixedLenFeature([], tf.string),
        "split": tf.io.FixedLenFeature([], tf.string),
        "box": tf.io.FixedLenFeature([4], tf.float32),  # x, y, w, h in the original image
        "angle": tf.io.FixedLenFeature([], tf.float32),  # eye-line angle in degrees
        "group": tf.io.FixedLenFeature([], tf.string, default_value=b""),  # optional
    }


def bytes_feature(value: bytes) -> tf.train.Feature:
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def ints_feature(*values: int) -> tf.train.Feature:
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def floats_feature(*values: float) -> tf.train.Feature:
    import tensorflow as tf

    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def serialize(
    image: np.ndarray,
    label: int,
    path: str = "",
    split: str = "",
    box=(0.0, 0.0, 0.0, 0.0),
    angle: float = 0.0,
    group: str = "",
) -> bytes:
    """One face crop (HxW or HxWxC uint8) as a serialized tf.train.Example."""
    import tensorflow as tf

    image = np.asarray(image, dtype=np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    height, width, channels = image.shape
    feature = {
        "image": bytes_feature(image.tobytes()),
        "height": ints_feature(height),
        "width": ints_feature(width),
        "channels": ints_feature(channels),
        "label": ints_feature(label),
        "path": bytes_feature(str(path).encode()),
        "split": bytes_feature(split.encode()),
        "box": floats_feature(*box),
        "angle": floats_feature(angle),
        "group": bytes_feature(group.encode()),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString()


def parse(serialized: tf.Tensor) -> dict:
    """Parse one serialized example; `image` comes back as a uint8 HxWxC tensor."""
    import tensorflow as tf

    ex = tf.io.parse_single_example(serialized, features())
    shape = tf.stack([ex["height"], ex["width"], ex["channels"]])
    ex["image"] = tf.reshape(tf.io.decode_raw(ex["image"], tf.uint8), shape)
    return ex


def parse_batch(serialized: tf.Tensor, image_shape: tuple[int, int, int]) -> dict:
    """Parse a batch of examples whose images all have `image_shape` (fast path)."""
    import tensorflow as tf

    ex = tf.io.parse_example(serialized, features())
    images = tf.io.decode_raw(ex["image"], tf.uint8)
    ex["image"] = tf.reshape(images, (-1, *image_shape))
    return ex


def write(path: str | os.PathLike, serialized_examples) -> int:
    """Write examples to `path` atomically: a temp name first, renamed when complete."""
    import tensorflow as tf

    count = 0
    with replacing(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
        for example in serialized_examples:
            writer.write(example)
            count += 1
    return count


def shard_name(split: str, index: int, total: int) -> str:
    return f"{split}-{index:05d}-of-{total:05d}.tfrecord"


def shard_files(folder: str | os.PathLike, split: str | None = None) -> list[str]:
    """Completed shards of `split` (or all splits) in `folder`, in a stable order."""
    pattern = f"{split}-*.tfrecord" if split else "*.tfrecord"
    return sorted(str(p) for p in Path(folder).glob(pattern))


def read_all(folder_or_files, split: str | None = None) -> list[dict]:
    """Every example as numpy values, in file order; for tests and small sets."""
    import tensorflow as tf

    files = (
        shard_files(folder_or_files, split)
        if isinstance(folder_or_files, (str, os.PathLike)) and Path(folder_or_files).is_dir()
        else list(folder_or_files)
    )
    out = []
    for raw in tf.data.TFRecordDataset(files):
        ex = parse(raw)
        out.append({k: v.numpy() for k, v in ex.items()})
    return out


MANIFEST_FILE = "manifest.csv"  # beside the shards: one row per source image, its split and shard


def records_hash(folder: str | os.PathLike) -> str | None:
    """Short content hash of a records folder: preprocess.json's settings, counts and versions,
    manifest.csv (which image went to which split and shard) and each shard's name and size. Two
    folders of different records differ in it; it reads no shard, so it costs milliseconds.
    None when `folder` holds no records."""
    folder = Path(folder)
    shards = sorted(Path(p) for p in shard_files(folder)) if folder.is_dir() else []
    if not shards:
        return None
    digest = hashlib.sha256()
    if (folder / SUMMARY_FILE).is_file():  # what was cut, not how long it took or on what runner
        summary = json.loads((folder / SUMMARY_FILE).read_text())
        kept = {k: summary.get(k) for k in ("settings", "records", "versions")}
        digest.update(json.dumps(kept, sort_keys=True).encode() + b"\0")
    if (folder / MANIFEST_FILE).is_file():
        digest.update((folder / MANIFEST_FILE).read_bytes() + b"\0")
    for shard in shards:
        digest.update(f"{shard.name}\0{shard.stat().st_size}\0".encode())
    return digest.hexdigest()[:16]


def source_folder(folder: str | os.PathLike) -> Path:
    """The image folder the records were cut from (preprocess.json's `settings.src`): where
    the manifest's relative paths point."""
    summary = Path(folder) / SUMMARY_FILE
    try:
        return Path(json.loads(summary.read_text())["settings"]["src"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FakefaceError(f"{summary}: cannot read the source folder (settings.src): {exc}") from exc
