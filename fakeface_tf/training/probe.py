"""The head's warm-up: the linear head fitted as a logistic regression on frozen features.

With `training.probe_init`, a new model's `feature_norm` and `logit` layers start from an L2
logistic regression on the standardised `features` layer, its strength picked on validation
AUC (fitting.py keeps it as epoch 0, which fine-tuning must beat). Memory stays bounded at
any number of faces: the standardisation's moments stream over every training face
(`Moments`), the regressions fit on a seeded sample (`Reservoir`).
"""

from __future__ import annotations

import logging
import time

import keras
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from fakeface_tf.core import logs
from fakeface_tf.training.frozen import CachedMaps
from fakeface_tf.training.stored_maps import StoredMaps

log = logging.getLogger(__name__)
PROBE_C = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # inverse L2 strengths tried for the probe
PROBE_FACES = 20_000  # the probe's regression fits on at most this many training faces


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
    progress = logs.Progress(f"probe features of the {what}", total)
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
