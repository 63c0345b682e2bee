"""The frozen part's outputs on disk: written once as they are computed, streamed back by tf.data.

A *store* is one source of faces (the records' training or validation split, or the labelled
faces mixed into training) run once through one frozen part: TFRecord shards holding, per
face, the float16 maps of the image (and, with flips, of its mirror image), its label, its
source path and its index. Its folder, `$FAKEFACE_CACHE/frozen/<key>/`, is named by a hash of
all the maps depend on: the faces (for records: preprocess.json and each shard's name, size
and modification time; for labelled faces: their pixels), the frozen part (cut tensors and
shapes, dtype policy, a hash of its weights) and the stored views. A second run, a tune trial
or a learning-curve point (which keeps its share of the stored faces with
`datasets.keep_fraction`) reuses it; changed records or weights make a new one.

A store is written into a temp folder beside its place, shard by shard (`records.write`:
each shard flushed and renamed when whole), `manifest.json` (faces and bytes per shard) last,
then the folder is renamed into place: a killed run leaves no store. A store whose shards do
not match its manifest (a file cut short, say) is deleted and rebuilt, never read; TFRecord's
own checksums catch damage inside a shard while it is read. Stores of records that changed
are left behind: delete $FAKEFACE_CACHE/frozen to reclaim their space.

Training reads a store back through stored_maps.py.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from fakeface_tf.core import logs
from fakeface_tf.core.config import CACHE_ENV, cache_root
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.files import sha256, write_text_atomic
from fakeface_tf.data import datasets, records

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the stored layout changes: old stores are then never matched
MANIFEST = "manifest.json"
RAM_CACHE_BYTES = 1 << 30  # what is smaller than this may be held in memory (auto modes)
SHARD_BYTES = 64 << 20  # about this much per shard: the unit of the file-level shuffle


def root() -> Path:
    """Where stores live: $FAKEFACE_CACHE/frozen (data/cache/frozen in the repository)."""
    return cache_root() / "frozen"


# ------------------------------------------------------------------------- what is cached


@dataclass
class Source:
    """Faces the frozen part runs over once: `batches()` gives (images, labels, paths)."""

    name: str  # for logs: "train records", ...
    key: dict  # what the faces' content depends on
    count: Callable[[], int]  # how many faces (counted only when a store is to be built)
    batches: Callable[[], tf.data.Dataset]


def records_source(path: Path, split: str, batch_size: int) -> Source:
    """Every record of `split` in `path`, in file order (a fraction is kept when reading)."""
    files = datasets.resolve_files(path, split)
    stats = [(Path(f).name, os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files]
    settings = Path(path) / records.SUMMARY_FILE
    key = {"records": split, "shards": stats,
           "preprocess": sha256(settings) if settings.is_file() else None}

    def batches():
        ds = datasets.make_dataset(path, split, batch_size=batch_size, with_meta=True)
        return ds.map(lambda images, labels, meta: (images, labels, meta["path"]))

    count = functools.cache(lambda: sum(datasets.count_examples(path, split).values()))
    return Source(f"{split} records", key, count, batches)


def dataset_source(name: str, faces: tf.data.Dataset, batch_size: int) -> Source:
    """Unbatched (image, label) pairs held in memory (the labelled faces), keyed by their
    pixels and labels."""
    digest, count = hashlib.sha256(), 0
    for images, labels in faces.batch(256):
        digest.update(np.asarray(images).tobytes())
        digest.update(np.asarray(labels, np.float32).tobytes())
        count += len(labels)

    def batches():
        return faces.batch(batch_size).map(
            lambda images, labels: (images, labels, tf.fill(tf.shape(labels), "")))

    return Source(name, {"faces": name, "content": digest.hexdigest()}, lambda: count, batches)


def model_key(frozen) -> dict:
    """What the frozen part's outputs depend on besides the faces: cut, shapes, dtypes, weights."""
    digest = hashlib.sha256()
    for weights in frozen.get_weights():
        digest.update(str(weights.shape).encode())
        digest.update(np.ascontiguousarray(weights).tobytes())
    return {"inputs": [list(x.shape[1:]) for x in frozen.inputs],
            "cut": [[name, *t.shape[1:]] for name, t in zip(frozen.output_names, tensors(frozen))],
            "dtypes": sorted({layer.dtype_policy.name for layer in frozen.layers}),
            "weights": digest.hexdigest()}


def tensors(frozen) -> list:
    """The frozen part's output tensors, always as a list."""
    return list(frozen.outputs)


def face_bytes(frozen) -> int:
    """Bytes of one view of one face's stored maps (float16)."""
    return sum(2 * math.prod(t.shape[1:]) for t in tensors(frozen))


def folder_for(source: Source, frozen_key: dict, views: int) -> Path:
    """The store's folder: a hash of the faces, the frozen part and the views."""
    key = {"format": FORMAT, "source": source.key, "frozen": frozen_key, "views": views}
    return root() / hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


# ------------------------------------------------------------------------- a stored set


@dataclass
class Store:
    """A whole store: its folder and manifest (faces, views, tensors, shards)."""

    folder: Path
    manifest: dict

    @property
    def faces(self) -> int:
        return self.manifest["faces"]

    @property
    def views(self) -> int:
        return self.manifest["views"]

    @property
    def files(self) -> list[str]:
        return [str(self.folder / shard["file"]) for shard in self.manifest["shards"]]

    @property
    def shapes(self) -> list[list[int]]:
        return [t["shape"] for t in self.manifest["tensors"]]

    def features(self) -> dict:
        """The TFRecord parsing spec of one stored face."""
        spec = {"label": tf.io.FixedLenFeature([], tf.float32),
                "path": tf.io.FixedLenFeature([], tf.string),
                "index": tf.io.FixedLenFeature([], tf.int64)}
        for t, v in itertools.product(range(len(self.shapes)), range(self.views)):
            spec[map_key(t, v)] = tf.io.FixedLenFeature([], tf.string)
        return spec


def map_key(tensor: int, view: int) -> str:
    return f"maps_{tensor}_{view}"


def open_store(folder: Path) -> Store | None:
    """The store in `folder` if it is whole; a torn one (manifest missing, or a shard missing
    or of another size than the manifest says) is deleted, and None returned."""
    if not folder.is_dir():
        return None
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        whole = manifest["format"] == FORMAT and manifest["faces"] == sum(
            s["faces"] for s in manifest["shards"]) and all(
            (folder / s["file"]).stat().st_size == s["bytes"] for s in manifest["shards"])
    except (OSError, ValueError, KeyError, TypeError):
        whole = False
    if whole:
        return Store(folder, manifest)
    log.warning("frozen-map store %s is incomplete or damaged: rebuilding it", folder)
    shutil.rmtree(folder, ignore_errors=True)
    return None


def check_space(needed: int, where: Path) -> None:
    """A one-line FakefaceError, before anything is written, when `where` has less than
    `needed` bytes free."""
    existing = where
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise FakefaceError(
            f"training.cache_frozen: the frozen layers' outputs need about {needed / 1e9:.2f} GB "
            f"under {where}, but only {free / 1e9:.2f} GB is free there; free some space, point "
            f"${CACHE_ENV} at a larger disk or set training.cache_frozen=memory")


def estimate(faces: int, views: int, frozen) -> int:
    """Bytes a store of `faces` will take on disk (maps, plus a little per record)."""
    return faces * (views * face_bytes(frozen) + 512)


def build(frozen, source: Source, folder: Path, views: int) -> Store:
    """Run the frozen part over `source` and write the store into `folder` (see the module)."""
    _clear_abandoned(folder)
    temp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    try:
        manifest = _write_shards(frozen, source, temp, views)
        write_text_atomic(temp / MANIFEST, json.dumps(manifest, indent=1))
        try:
            os.rename(temp, folder)
        except OSError:  # another process stored the same faces first: use its store
            shutil.rmtree(temp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    store = open_store(folder)
    if store is None:
        raise FakefaceError(f"{folder}: the frozen-map store just written does not read back")
    return store


def _clear_abandoned(folder: Path) -> None:
    """Delete temp folders of this store left by processes that no longer run (killed)."""
    for temp in folder.parent.glob(f".{folder.name}.*.tmp"):
        pid = temp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(temp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_shards(frozen, source: Source, folder: Path, views: int) -> dict:
    """Write the shards of a store into `folder`; returns its manifest."""
    outputs = tensors(frozen)
    per_shard = max(1, SHARD_BYTES // (views * face_bytes(frozen)))
    examples, shards = _examples(frozen, source, views), []
    for number in itertools.count():
        first = next(examples, None)
        if first is None:
            break
        name = f"maps-{number:05d}.tfrecord"
        count = records.write(folder / name,
                              itertools.chain([first], itertools.islice(examples, per_shard - 1)))
        shards.append({"file": name, "faces": count, "bytes": (folder / name).stat().st_size})
    faces = sum(s["faces"] for s in shards)
    return {"format": FORMAT, "source": source.name, "faces": faces, "views": views,
            "tensors": [{"name": name, "shape": list(t.shape[1:])}
                        for name, t in zip(frozen.output_names, outputs)],
            "shards": shards}


def run_views(frozen, images, views: int) -> list[list[np.ndarray]]:
    """The frozen part's float16 outputs for a batch: per view (plain, mirrored), per tensor."""
    out = []
    for mirrored in range(views):
        values = frozen(tf.reverse(images, axis=[2]) if mirrored else images, training=False)
        values = values if isinstance(values, (list, tuple)) else [values]
        out.append([np.asarray(v, np.float16) for v in values])
    return out


def _examples(frozen, source: Source, views: int):
    """Serialized stored faces, computed batch by batch, with progress logged."""
    progress = logs.Progress(f"frozen layers over the {source.name}", source.count())
    index = 0
    for images, labels, paths in source.batches():
        maps = run_views(frozen, images, views)
        labels, paths = np.asarray(labels, np.float32), paths.numpy()
        for i in range(len(labels)):
            feature = {"label": records.floats_feature(labels[i]),
                       "path": records.bytes_feature(paths[i]), "index": records.ints_feature(index)}
            for v, per_view in enumerate(maps):
                for t, values in enumerate(per_view):
                    feature[map_key(t, v)] = records.bytes_feature(values[i].tobytes())
            yield tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
            index += 1
        progress.update(len(labels))
    progress.done()


def ensure(frozen, sources: list[tuple[Source, int]]) -> list[Store]:
    """The stores of (source, views) pairs, building the missing ones after one free-space
    check for all of them."""
    key = model_key(frozen)
    folders = [folder_for(source, key, views) for source, views in sources]
    stores = [open_store(folder) for folder in folders]
    missing = [(s, v, f) for (s, v), f, store in zip(sources, folders, stores) if store is None]
    if missing:
        check_space(sum(estimate(s.count(), v, frozen) for s, v, _ in missing), root())
    for source, views, folder in missing:
        stores[folders.index(folder)] = build(frozen, source, folder, views)
    for store in stores:
        log.info("frozen-map store %s: %d faces", store.folder, store.faces)
    return stores
