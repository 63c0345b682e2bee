"""Train only what is not frozen: run a pretrained backbone's frozen layers once, then fit the rest.

With most of FaceRes frozen, every epoch would push the same images through the same frozen
blocks again. `split` cuts the model where its frozen part ends; `cache` runs that part once
over the training images and their mirror images (flips are the one augmentation that can be
precomputed) and over the validation images; Keras then fits the trainable rest on the stored
maps (float16 in memory). The rest shares its layers with the whole model, so training it
trains the whole model. `probe` fits the linear head as a logistic regression first.
"""

from __future__ import annotations

import logging
import math

import keras
import numpy as np
import tensorflow as tf

from fakeface_tf.config import Config
from fakeface_tf.models import frozen_outputs

log = logging.getLogger(__name__)
PROBE_C = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # inverse L2 strengths tried for the probe


def split(model: keras.Model, cfg: Config) -> tuple[keras.Model, keras.Model]:
    """(frozen part: image -> cut tensors, trainable rest: cut tensors -> P(fake))."""
    cut = frozen_outputs(model, cfg.model)
    cut = cut if len(cut) > 1 else cut[0]  # one tensor, not a list of one: plain batches fit it
    return keras.Model(model.inputs, cut, name="frozen"), keras.Model(cut, model.outputs[0], name="rest")


def _maps(frozen: keras.Model, dataset, flips: bool):
    """The frozen part's outputs (float16) for every batch of `dataset`, read once: (maps,
    maps of the mirrored images or None, labels)."""
    views = (False, True) if flips else (False,)
    stores, labels = [[] for _ in views], []
    for images, y in dataset:
        for store, mirrored in zip(stores, views):
            values = frozen(tf.reverse(images, axis=[2]) if mirrored else images, training=False)
            values = values if isinstance(values, (list, tuple)) else [values]
            store.append([np.asarray(v, np.float16) for v in values])
        labels.append(np.asarray(y, np.float32))
    joined = [[np.concatenate(parts) for parts in zip(*store)] for store in stores]
    return joined[0], (joined[1] if flips else None), np.concatenate(labels)


class CachedMaps(keras.utils.PyDataset):
    """Batches of stored frozen-part outputs; with `flipped`, each example of each epoch takes
    its plain or mirrored maps by a seeded coin, and the order is reshuffled every epoch."""

    def __init__(self, maps, labels, batch_size: int, seed: int | None = None, flipped=None):
        super().__init__()
        self.maps, self.labels, self.flipped = maps, labels, flipped
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0
        self._plan()

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
        return (inputs if len(inputs) > 1 else inputs[0]), self.labels[rows]

    def on_epoch_end(self):
        self.epoch += 1
        self._plan()


def cache(frozen: keras.Model, train_ds, valid_ds, cfg: Config) -> tuple[CachedMaps, CachedMaps]:
    """Run the frozen part once: (training batches with flips as configured, validation batches)."""
    log.info("running the frozen layers once over the training and validation images")
    train_maps, flipped, train_labels = _maps(frozen, train_ds, flips=cfg.augment.flip)
    valid_maps, _, valid_labels = _maps(frozen, valid_ds, flips=False)
    size = sum(m.nbytes for m in train_maps + valid_maps + (flipped or []))
    log.info("cached %d training and %d validation maps (%.0f MB)", len(train_labels),
             len(valid_labels), size / 1e6)
    batch = cfg.training.batch_size
    return (CachedMaps(train_maps, train_labels, batch, cfg.training.seed, flipped),
            CachedMaps(valid_maps, valid_labels, batch))


def _plain(batches):
    """CachedMaps in stored order without mirroring; image datasets as they are."""
    if isinstance(batches, CachedMaps):
        return CachedMaps(batches.maps, batches.labels, batches.batch_size)
    return batches


def _features(model: keras.Model, cut: list | None, batches) -> tuple[np.ndarray, np.ndarray]:
    """The `features` layer's values and the labels, in one pass over `batches` (images, or
    cached maps of the `cut` tensors)."""
    features = model.get_layer("features").output
    if isinstance(batches, CachedMaps):
        if cut is not None and len(cut) == 1 and cut[0] is features:  # frozen: maps are features
            return np.concatenate(batches.maps).astype(np.float64), batches.labels
        cached = batches  # one batch at a time: the float32 maps of all of them are large
        batches = (cached[i] for i in range(len(cached)))
    source = cut or model.inputs
    extract = keras.Model(source[0] if len(source) == 1 else source, features)
    parts, labels = [], []
    for x, y in batches:
        parts.append(np.asarray(extract(x, training=False)))
        labels.append(np.asarray(y))
    return np.concatenate(parts).astype(np.float64), np.concatenate(labels)


def probe(model: keras.Model, train, valid, cut: list | None = None) -> dict:
    """Fit the linear head as an L2 logistic regression on the standardised features, with its
    strength picked on validation AUC, and write it into `feature_norm` (frozen from then on)
    and `logit`. `train`/`valid` are image datasets, or CachedMaps of the `cut` tensors
    (`models.frozen_outputs`)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score

    train, valid = _plain(train), _plain(valid)
    x_train, y_train = _features(model, cut, train)
    x_valid, y_valid = _features(model, cut, valid)
    norm = model.get_layer("feature_norm")
    mean, var = x_train.mean(axis=0), x_train.var(axis=0)
    scale = np.sqrt(var + norm.epsilon)
    z_train, z_valid = (x_train - mean) / scale, (x_valid - mean) / scale
    best = None
    for c in PROBE_C:
        clf = LogisticRegression(C=c, max_iter=2000).fit(z_train, y_train)
        auc = roc_auc_score(y_valid, clf.decision_function(z_valid))
        log.info("probe C=%g: validation AUC %.4f", c, auc)
        if best is None or auc > best[0]:
            best = (auc, c, clf)
    auc, c, clf = best
    norm.moving_mean.assign(mean.astype(np.float32))
    norm.moving_variance.assign(var.astype(np.float32))
    norm.trainable = False  # inference mode from now on: the probe's standardisation stays
    model.get_layer("logit").set_weights([clf.coef_.T.astype(np.float32),
                                          clf.intercept_.astype(np.float32)])
    return {"C": c, "val_auc": float(auc),
            "val_accuracy": float(accuracy_score(y_valid, clf.predict(z_valid)))}
