"""The frozen part's stored outputs read back for Keras, shuffled and mirrored by (seed, epoch).

Training reads a store (frozen_cache.py) with a file-level shuffle, an example-level shuffle
buffer of bounded size and, with flips, each face's plain or mirrored maps by a seeded coin;
the order and the coins depend on (seed, epoch), the epoch being read from the optimizer's
step count when a pass starts, so `--resume` continues the sequence. Memory stays bounded
whatever the number of faces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import tensorflow as tf

from fakeface_tf.data import datasets
from fakeface_tf.training.frozen_cache import Store, map_key

SHUFFLE_BYTES = 256 << 20  # about this much in the example-level shuffle buffer
SHUFFLE_MAX = 16384  # and never more examples than this (small feature vectors)
READ_CYCLE = 16  # shards read at once, interleaved (a shard may hold one class only)


@dataclass
class Part:
    """A store's share of a training set: the kept `fraction` of its faces, `copies` times."""

    store: Store
    fraction: float = 1.0
    copies: int = 1


class StoredMaps:
    """Batches of stored maps for Keras: `data` is a tf.data.Dataset of (maps, labels).

    With `seed` (training), each pass shuffles the shards and, in a bounded buffer, the faces,
    and takes each face's plain or mirrored maps by a coin, all seeded by (seed, `epoch()`);
    without, the faces come in stored order, plain. `plain()` is the latter, whatever `seed`.
    """

    def __init__(self, parts: list[Part], batch_size: int, seed: int | None = None,
                 epoch: Callable[[], int] | None = None, faces: int | None = None):
        self.parts, self.batch_size, self.seed, self.epoch = parts, batch_size, seed, epoch
        self.faces = faces if faces is not None else sum(p.store.faces * p.copies for p in parts)
        first = parts[0].store
        self.shapes, self.views, self.spec = first.shapes, first.views, first.features()

    def __len__(self) -> int:
        return math.ceil(self.faces / self.batch_size)

    @property
    def data(self) -> tf.data.Dataset:
        """What Keras fits on: one pass a Keras epoch, of known length."""
        if self.seed is None:
            ds = self._pass(None)
        else:
            epochs = tf.data.Dataset.from_tensors(0).map(
                lambda _: tf.reshape(tf.py_function(lambda: self.epoch(), [], tf.int64), []))
            ds = epochs.flat_map(lambda epoch: self._pass(
                tf.stack([tf.constant(self.seed, tf.int64), epoch])))
        return ds.apply(tf.data.experimental.assert_cardinality(len(self)))

    def plain(self):
        """(maps, labels) numpy batches in stored order, plain views (what the probe reads)."""
        for x, y in StoredMaps(self.parts, self.batch_size, faces=self.faces).data:
            yield (x.numpy() if isinstance(x, tf.Tensor) else [v.numpy() for v in x]), y.numpy()

    def _entries(self) -> tuple[list[str], list[int], list[int]]:
        """(shard file, part, copy) of every shard to read, in stored order."""
        files, part_ids, copies = [], [], []
        for p, part in enumerate(self.parts):
            for copy in range(part.copies):
                files += part.store.files
                part_ids += [p] * len(part.store.files)
                copies += [copy] * len(part.store.files)
        return files, part_ids, copies

    def _pass(self, key) -> tf.data.Dataset:
        """One pass over the parts: shuffled and coin-flipped by `key`, or in order (None)."""
        table = self._entries()
        entries = tf.data.Dataset.from_tensor_slices(table)
        keeps = [datasets.keep_fraction(p.fraction) if p.fraction < 1 else None for p in self.parts]

        def read(file, part, copy):
            ds = tf.data.TFRecordDataset(file)
            for p, keep in enumerate(keeps):
                if keep is not None:
                    ds = ds.filter(lambda raw, p=p, keep=keep: tf.logical_or(part != p, keep(raw)))
            return ds.map(lambda raw: (raw, part, copy))

        if key is None:
            ds = entries.flat_map(read)
        else:
            entries = entries.shuffle(len(table[0]), seed=_draw(key, 0))
            ds = entries.interleave(read, cycle_length=READ_CYCLE, num_parallel_calls=4,
                                    deterministic=True)
        ds = ds.map(lambda raw, part, copy: self._view(raw, part, copy, key),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if key is not None:
            view_bytes = 2 * sum(math.prod(s) for s in self.shapes)
            buffer = max(1, min(SHUFFLE_MAX, SHUFFLE_BYTES // view_bytes))
            ds = ds.shuffle(buffer, seed=_draw(key, 1))
        ds = ds.batch(self.batch_size).map(self._decode, num_parallel_calls=tf.data.AUTOTUNE,
                                           deterministic=True)
        return ds.prefetch(2)

    def _view(self, raw, part, copy, key):
        """One face's maps as float16 bytes (the mirrored view when its coin says so), label."""
        ex = tf.io.parse_single_example(raw, self.spec)
        if key is None or self.views == 1:
            return tuple(ex[map_key(t, 0)] for t in range(len(self.shapes))), ex["label"]
        face = tf.random.experimental.stateless_fold_in(
            tf.random.experimental.stateless_fold_in(key, part * 1_000_003 + copy), ex["index"])
        mirrored = tf.random.stateless_uniform([], face) < 0.5
        return tuple(tf.where(mirrored, ex[map_key(t, 1)], ex[map_key(t, 0)])
                     for t in range(len(self.shapes))), ex["label"]

    def _decode(self, maps, labels):
        decoded = [tf.cast(tf.reshape(tf.io.decode_raw(m, tf.float16), [-1, *shape]), tf.float32)
                   for m, shape in zip(maps, self.shapes)]
        return (decoded[0] if len(decoded) == 1 else tuple(decoded)), labels


def _draw(key, salt: int) -> tf.Tensor:
    """A scalar int64 seed drawn from `key` (shape [2]) for one kind of shuffle."""
    return tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(key, salt),
                                       minval=None, maxval=None, dtype=tf.int64)
