"""Train only what is not frozen: run a pretrained backbone's frozen layers once, then fit the rest.

With most of FaceRes frozen, every epoch would push the same images through the same frozen
blocks again. `split` cuts the model where its frozen part ends; `cache` runs that part once
over the training images and their mirror images (flips are the one augmentation that can be
precomputed) and over the validation images; Keras then fits the trainable rest on the stored
maps. `training.cache_frozen` says where they are kept: `memory` (float16 arrays,
`CachedMaps`), `disk` (`frozen_cache`: written as they are computed, streamed back, reused by
later runs on the same faces), or `auto`: memory while they fit in
`frozen_cache.RAM_CACHE_BYTES`, else disk. The rest shares its layers with the whole model, so
training it trains the whole model. `probe` fits the linear head as a logistic regression first.
"""

from __future__ import annotations

import logging
import math
import time

import keras
import numpy as np

from fakeface_tf import data, frozen_cache
from fakeface_tf.config import Config
from fakeface_tf.frozen_cache import Part, Progress, StoredMaps
from fakeface_tf.models import frozen_outputs

log = logging.getLogger(__name__)
PROBE_C = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # inverse L2 strengths tried for the probe
PROBE_FACES = 20_000  # the probe's regression fits on at most this many training faces


def split(model: keras.Model, cfg: Config) -> tuple[keras.Model, keras.Model]:
    """(frozen part: image -> cut tensors, trainable rest: cut tensors -> P(fake))."""
    cut = frozen_outputs(model, cfg.model)
    cut = cut if len(cut) > 1 else cut[0]  # one tensor, not a list of one: plain batches fit it
    return keras.Model(model.inputs, cut, name="frozen"), keras.Model(cut, model.outputs[0], name="rest")


def _maps(frozen: keras.Model, dataset, flips: bool, what: str, faces: int):
    """The frozen part's outputs (float16) for every batch of `dataset` (`faces` in all), read
    once and held in memory: (maps, maps of the mirrored images or None, labels)."""
    views = 2 if flips else 1
    stores, labels = [[] for _ in range(views)], []
    progress = Progress(f"frozen layers over the {what}", faces)
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
    path, batch = data.records_path(cfg), cfg.training.batch_size
    fraction, views = cfg.data.train_fraction, 2 if cfg.augment.flip else 1
    fairness = _fairness_faces(cfg)
    copies = round(cfg.data.fairness_weight)
    train_faces = (sum(data.count_examples(path, "train", fraction).values())
                   + (int(fairness.cardinality()) * copies if fairness is not None else 0))
    valid_faces = sum(data.count_examples(path, "valid").values())
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
    path, batch = data.records_path(cfg), cfg.training.batch_size
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
    from fakeface_tf import labelled

    return labelled.training_dataset(cfg)


class Moments:
    """Per-feature mean and (population) variance over batches, merged exactly in float64."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, x: np.ndarray) -> None:
        b, mean = len(x), x.mean(axis=0, dtype=np.float64)
        m2 = ((x - mean) ** 2).sum(axis=0)
        delta, total = mean - self.mean, self.n + b
        self.mean = self.mean + delta * b / total
        self.m2 = self.m2 + m2 + delta ** 2 * self.n * b / total
        self.n = total

    @property
    def var(self) -> np.ndarray:
        return self.m2 / self.n


class Reservoir:
    """A seeded uniform sample of at most `size` rows of a stream (all of them, in order, when
    the stream is no longer)."""

    def __init__(self, size: int, seed: int):
        self.size, self.rng, self.seen = size, np.random.default_rng(seed), 0
        self.parts, self.x, self.y = [], None, None

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        fill = max(0, min(len(x), self.size - self.seen))
        if fill:
            self.parts.append((x[:fill].copy(), y[:fill].copy()))
        if fill < len(x):
            self._freeze()
            seen = self.seen + np.arange(fill, len(x))  # rows before each later row
            slot = (self.rng.random(len(seen)) * (seen + 1)).astype(np.int64)
            take = slot < self.size
            self.x[slot[take]], self.y[slot[take]] = x[fill:][take], y[fill:][take]
        self.seen += len(x)

    def _freeze(self) -> None:
        if self.x is None:
            self.x = np.concatenate([x for x, _ in self.parts])
            self.y = np.concatenate([y for _, y in self.parts])
            self.parts = []

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        self._freeze()
        return self.x, self.y


def _feature_batches(model: keras.Model, cut: list | None, batches, what: str):
    """The `features` layer's values (float32) and the labels, batch by batch, in one pass
    over `batches`: image batches, or CachedMaps/StoredMaps of the `cut` tensors (read in
    stored order, plain)."""
    features = model.get_layer("features").output
    extract, total = None, None
    if isinstance(batches, (CachedMaps, StoredMaps)):
        total = batches.faces if isinstance(batches, StoredMaps) else len(batches.labels)
        batches, source = batches.plain(), cut
        if not (cut is not None and len(cut) == 1 and cut[0] is features):  # else maps are features
            extract = keras.Model(source[0] if len(source) == 1 else source, features)
    else:
        extract = keras.Model(model.inputs, features)
    progress = Progress(f"probe features of the {what}", total)
    for x, y in batches:
        values = extract(x, training=False) if extract is not None else x
        y = np.asarray(y, np.float32)
        progress.update(len(y))
        yield np.asarray(values, np.float32), y
    progress.done()


def probe(model: keras.Model, train, valid, cut: list | None = None, seed: int = 0) -> dict:
    """Fit the linear head as an L2 logistic regression on the standardised features, with its
    strength picked on validation AUC, and write it into `feature_norm` (frozen from then on)
    and `logit`. `train`/`valid` are image datasets, or CachedMaps/StoredMaps of the `cut`
    tensors (`models.frozen_outputs`).

    Memory stays bounded at any number of faces: the standardisation's mean and variance are
    streamed over all training faces, the regressions fit on a seeded sample of at most
    PROBE_FACES of them (all of them, when there are no more), in float32, and validation
    faces are scored as they stream past."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    moments, sample = Moments(), Reservoir(PROBE_FACES, seed)
    for x, y in _feature_batches(model, cut, train, "training faces"):
        moments.add(x)
        sample.add(x, y)
    norm = model.get_layer("feature_norm")
    mean, var = moments.mean, moments.var
    scale = np.sqrt(var + norm.epsilon)
    mean32, scale32 = mean.astype(np.float32), scale.astype(np.float32)
    z_train, y_train = sample.arrays()
    z_train -= mean32
    z_train /= scale32
    log.info("probe: fitting on %d of %d training faces", len(y_train), moments.n)
    fits = []
    for c in PROBE_C:
        started = time.monotonic()
        fits.append(LogisticRegression(C=c, max_iter=2000).fit(z_train, y_train))
        log.info("probe C=%g: fitted in %.0f s", c, time.monotonic() - started)
    del z_train, sample
    scores, y_valid = [], []
    for x, y in _feature_batches(model, cut, valid, "validation faces"):
        z = (x - mean32) / scale32
        scores.append(np.stack([clf.decision_function(z) for clf in fits], axis=1))
        y_valid.append(y)
    scores, y_valid = np.concatenate(scores), np.concatenate(y_valid)
    aucs = [roc_auc_score(y_valid, scores[:, i]) for i in range(len(PROBE_C))]
    for c, auc in zip(PROBE_C, aucs):
        log.info("probe C=%g: validation AUC %.4f", c, auc)
    best = int(np.argmax(aucs))  # the first of equals, the weakest fit
    norm.moving_mean.assign(mean.astype(np.float32))
    norm.moving_variance.assign(var.astype(np.float32))
    norm.trainable = False  # inference mode from now on: the probe's standardisation stays
    clf = fits[best]
    model.get_layer("logit").set_weights([clf.coef_.T.astype(np.float32),
                                          clf.intercept_.astype(np.float32)])
    predicted = clf.classes_[(scores[:, best] > 0).astype(int)]
    return {"C": PROBE_C[best], "val_auc": float(aucs[best]),
            "val_accuracy": float(np.mean(predicted == y_valid))}
