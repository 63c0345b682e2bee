"""Train only what is not frozen: run a pretrained backbone's frozen layers once, then fit the rest.

With most of FaceRes frozen, every epoch would push the same images through the same frozen
blocks again. `cut_at_frozen` cuts the model in two where its frozen part ends; `cache` runs
that part once over the training images and their mirror images (flips are the one
augmentation that can be precomputed) and over the validation images; Keras then fits the
trainable rest on the stored maps. `training.cache_frozen` says where they are kept: `memory`
(float16 arrays, `CachedMaps`), `disk` (`frozen_cache` writes them as they are computed,
`stored_maps` streams them back; later runs on the same faces reuse them), or `auto`: memory
while they fit in `frozen_cache.RAM_CACHE_BYTES`, else disk. The rest shares its layers with
the whole model, so training it trains the whole model. probe.py fits the linear head first.
"""

from __future__ import annotations

import logging
import math

import keras
import numpy as np

from fakeface_tf.core import logs
from fakeface_tf.core.config import Config, ModelConfig
from fakeface_tf.data import datasets, labelled
from fakeface_tf.models.registry import frozen_outputs
from fakeface_tf.training import frozen_cache
from fakeface_tf.training.stored_maps import Part, StoredMaps

log = logging.getLogger(__name__)


def cut_at_frozen(model: keras.Model, model_cfg: ModelConfig) -> tuple[keras.Model, keras.Model]:
    """`model` cut in two where its frozen layers end (`models.frozen_outputs`): (frozen part:
    image -> cut tensors, trainable rest: cut tensors -> P(fake)), sharing `model`'s layers."""
    cut = frozen_outputs(model, model_cfg)
    cut = cut if len(cut) > 1 else cut[0]  # one tensor, not a list of one: plain batches fit it
    return keras.Model(model.inputs, cut, name="frozen"), keras.Model(cut, model.outputs[0], name="rest")


def _maps(frozen: keras.Model, dataset, flips: bool, what: str, faces: int):
    """The frozen part's outputs (float16) for every batch of `dataset` (`faces` in all), read
    once and held in memory: (maps, maps of the mirrored images or None, labels)."""
    views = 2 if flips else 1
    stores, labels = [[] for _ in range(views)], []
    progress = logs.Progress(f"frozen layers over the {what}", faces)
    for images, y in dataset:
        for store, values in zip(stores, frozen_cache.run_views(frozen, images, views)):
            store.append(values)
        labels.append(np.asarray(y, np.float32))
        progress.update(len(labels[-1]))
    progress.done()
    joined = []
    while stores:  # each view's batches freed once joined: 1.5 copies at the peak, not 2
        joined.append([np.concatenate(parts) for parts in zip(*stores.pop(0))])
    return joined[0], (joined[1] if flips else None), np.concatenate(labels)


class CachedMaps(keras.utils.PyDataset):
    """Batches of frozen-part outputs held in memory; with `flipped`, each example of each
    epoch takes its plain or mirrored maps by a coin seeded by (seed, epoch), and the order is
    reshuffled every epoch (`epoch`: the first one, so a resumed run continues the sequence)."""

    def __init__(self, maps, labels, batch_size: int, seed: int | None = None, flipped=None,
                 epoch: int = 0):
        super().__init__()
        self.maps, self.labels, self.flipped = maps, labels, flipped
        self.batch_size, self.seed, self.epoch = batch_size, seed, epoch
        self._plan()

    @property
    def data(self) -> CachedMaps:
        """What Keras fits on (this PyDataset)."""
        return self

    def plain(self):
        """(maps, labels) batches in stored order without mirroring (what the probe reads)."""
        plain = CachedMaps(self.maps, self.labels, self.batch_size)
        return (plain[i] for i in range(len(plain)))

    def _plan(self):
        n = len(self.labels)
        if self.seed is None:
            self.order, self.mirror = np.arange(n), np.zeros(n, bool)
            return
        rng = np.random.default_rng([self.seed, self.epoch])
        self.order = rng.permutation(n)
        self.mirror = rng.random(n) < 0.5 if self.flipped is not None else np.zeros(n, bool)

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        mirror = self.mirror[rows]
        inputs = []
        for i, plain in enumerate(self.maps):
            batch = plain[rows]
            if mirror.any():
                batch[mirror] = self.flipped[i][rows[mirror]]
            inputs.append(batch.astype(np.float32))
        return (tuple(inputs) if len(inputs) > 1 else inputs[0]), self.labels[rows]

    def on_epoch_end(self):
        self.epoch += 1
        self._plan()


def cache(frozen: keras.Model, cfg: Config, train_images, valid_images, optimizer):
    """Run the frozen part once (or reuse its stored outputs): (training batches with flips as
    configured, validation batches), each a CachedMaps or a StoredMaps whose `data` Keras
    fits on. `train_images`/`valid_images` (plain image batches) feed the memory mode; the
    disk mode reads the records itself. `optimizer`'s step count tells the epoch."""
    path, batch = datasets.records_path(cfg), cfg.training.batch_size
    fraction, views = cfg.data.train_fraction, 2 if cfg.augment.flip else 1
    fairness = _fairness_faces(cfg)
    copies = round(cfg.data.fairness_weight)
    train_faces = (sum(datasets.count_examples(path, "train", fraction).values())
                   + (int(fairness.cardinality()) * copies if fairness is not None else 0))
    valid_faces = sum(datasets.count_examples(path, "valid").values())
    steps = math.ceil(train_faces / batch)

    def epoch() -> int:  # the epoch a pass starts: resumed runs go on where they stopped
        return int(keras.ops.convert_to_numpy(optimizer.iterations)) // steps

    size = (train_faces * views + valid_faces) * frozen_cache.face_bytes(frozen)
    mode = cfg.training.cache_frozen
    if mode == "auto":
        mode = "memory" if size <= frozen_cache.RAM_CACHE_BYTES else "disk"
    log.info("frozen layers' outputs: %d training faces x %d views and %d validation faces, "
             "%.0f MB, kept in %s", train_faces, views, valid_faces, size / 1e6, mode)
    if mode == "memory":
        train_maps, flipped, train_labels = _maps(frozen, train_images, cfg.augment.flip,
                                                  "training images", train_faces)
        valid_maps, _, valid_labels = _maps(frozen, valid_images, False, "validation images",
                                            valid_faces)
        return (CachedMaps(train_maps, train_labels, batch, cfg.training.seed, flipped, epoch()),
                CachedMaps(valid_maps, valid_labels, batch))
    train_parts, valid_part = _stored(frozen, cfg, fairness)
    return (StoredMaps(train_parts, batch, cfg.training.seed, epoch, train_faces),
            StoredMaps([valid_part], batch, faces=valid_faces))


def _stored(frozen: keras.Model, cfg: Config, fairness) -> tuple[list[Part], Part]:
    """The disk stores of the records' training split (its kept fraction), of the fairness
    faces (their copies) and of the validation split, built where missing."""
    path, batch = datasets.records_path(cfg), cfg.training.batch_size
    views = 2 if cfg.augment.flip else 1
    sources = [(frozen_cache.records_source(path, "train", batch), views),
               (frozen_cache.records_source(path, "valid", batch), 1)]
    if fairness is not None:
        sources.append((frozen_cache.dataset_source("fairness faces", fairness, batch), views))
    stores = frozen_cache.ensure(frozen, sources)
    copies = round(cfg.data.fairness_weight)
    train = [Part(stores[0], cfg.data.train_fraction)] + [Part(s, copies=copies) for s in stores[2:]]
    return train, Part(stores[1])


def _fairness_faces(cfg: Config):
    """The labelled faces mixed into training, one copy of each, or None."""
    if not cfg.data.fairness_labels:
        return None
    return labelled.training_dataset(cfg)
