"""Frozen features per face for cross-validation: each backbone run once over the records'
training and validation faces (plain and mirrored), cached on disk.

A backbone turns a batch of RGB [0, 255] crops into one feature vector per face: `faceres` the
probe's features (mean and spatial std of FaceRes blocks 9, 11, 13: the `features` layer of
`models.registry.faceres_classifier`), `inception_nsfw` the mean and spatial std of the nsfwjs
InceptionV3's `mixed5` (at its own 299 px input), `mobilefacenet` MobileFaceNet's 192-d
embedding before its L2 norm with the mean and spatial std of one 14 px block (at 112 px,
`models.mobilefacenet`). `faceres_whole` is FaceRes on the whole
source image the crop came from (preprocess.json's `settings.src`), resized to 224 px: what
the face sits in, not only the face. A cache file,
`$FAKEFACE_CACHE/crossval/<backbone>-<key>.npz`, is named by a hash of what the features
depend on: the backbone (its cut and a hash of its weights, `frozen_cache.model_key`) and the
records (`frozen_cache.records_source` keys of both splits). Changed records or weights make
a new file; old ones are left behind (delete $FAKEFACE_CACHE/crossval to reclaim them).

Memory: the feature matrix (faces x 2 views x features, float32) is allocated once and filled
batch by batch, so nothing else grows with the number of faces; the matrix itself must be in
memory, as the logistic regressions fit on all of it (2,584 faces x 2 x 4,096 FaceRes
features are 85 MB).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from fakeface_tf.core.config import ModelConfig, cache_dir
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.files import replacing
from fakeface_tf.data import images
from fakeface_tf.data.records import source_folder
from fakeface_tf.models import inception_nsfw, mobilefacenet
from fakeface_tf.models.registry import faceres_classifier
from fakeface_tf.training import frozen_cache

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the cached layout or a backbone's features change
CACHE_NAME = "crossval"
SPLITS = ("train", "valid")  # the faces cross-validated; the test split stays untouched
VIEWS = 2  # plain, mirrored
BATCH = 32


@dataclass
class Faces:
    """Every face of the cross-validated splits with one backbone's features."""

    features: np.ndarray  # (faces, VIEWS, dims) float32: plain, mirrored
    labels: np.ndarray  # (faces,) int: 1 = fake
    paths: np.ndarray  # (faces,) str: the source image as the records name it

    def view(self, how: str) -> np.ndarray:
        """`plain` features, or `flip`: the mean of the plain and mirrored image's."""
        if how == "plain":
            return self.features[:, 0]
        if how == "flip":
            return self.features.mean(axis=1)
        raise FakefaceError(f"unknown feature view {how!r}: plain or flip")


def _faceres():
    """The probe's features: the `features` layer of a frozen FaceRes classifier."""
    model = faceres_classifier((224, 224, 3), ModelConfig(name="faceres", feature_blocks="9,11,13"))
    extract = keras.Model(model.inputs, model.get_layer("features").output, name="faceres_features")
    return extract, lambda images: np.asarray(extract(images, training=False), np.float32)


def _inception_nsfw():
    """Mean and spatial std of the nsfwjs InceptionV3's mixed5 (resized to 299 inside)."""
    mixed5 = inception_nsfw.mixed5_model(inception_nsfw.pretrained())
    return mixed5, lambda images: inception_nsfw.mixed5_stats(mixed5, images)


def _mobilefacenet():
    """MobileFaceNet's embedding before its L2 norm, and the mean and spatial std of its last
    14 px block (run from the TF.js graph, no Keras model: its key is the package files')."""
    run = mobilefacenet.embedder(mobilefacenet.load())
    return mobilefacenet.cache_key(), lambda images: mobilefacenet.features(run, images)


# name -> builder: () -> (the Keras model whose weights key the cache, or the key itself as a
# dict, batch -> features)
BACKBONES: dict[str, Callable] = {"faceres": _faceres, "inception_nsfw": _inception_nsfw,
                                  "faceres_whole": _faceres, "mobilefacenet": _mobilefacenet}
WHOLE_IMAGE = {"faceres_whole"}  # backbones that see the whole source image, not the crop
WHOLE_SIDE = 224


def whole_images(src: Path, names, side: int = WHOLE_SIDE) -> tf.Tensor:
    """The source images of a batch of records, whole, resized (antialiased) to side x side:
    RGB float [0, 255] like the crops."""
    loaded = [tf.image.resize(images.load_image(src / n.decode()), (side, side), antialias=True)
              for n in np.asarray(names)]
    return tf.stack(loaded)


def cache_file(backbone: str, model, records: Path) -> Path:
    """Where `backbone`'s features of `records` are cached (see the module docstring)."""
    sources = [frozen_cache.records_source(records, split, BATCH).key for split in SPLITS]
    model_key = model if isinstance(model, dict) else frozen_cache.model_key(model)
    key = {"format": FORMAT, "backbone": backbone, "model": model_key,
           "records": sources, "views": VIEWS}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir(CACHE_NAME) / f"{backbone}-{digest}.npz"


def _count(records: Path) -> int:
    return sum(frozen_cache.records_source(records, split, BATCH).count() for split in SPLITS)


def extract(run: Callable, records: Path, what: str, progress: bool = True,
            whole: bool = False) -> Faces:
    """`run` over every face of SPLITS, plain and mirrored, into one preallocated matrix (over
    the whole source images rather than the crops with `whole`)."""
    src = source_folder(records) if whole else None
    total, matrix, done = _count(records), None, 0
    labels, paths = np.empty(total, np.int64), np.empty(total, object)
    with tqdm(total=total, desc=what, unit="face", disable=not progress) as bar:
        for split in SPLITS:
            for crops, y, names in frozen_cache.records_source(records, split, BATCH).batches():
                seen = whole_images(src, names) if whole else crops
                plain, mirrored = run(seen), run(tf.reverse(seen, axis=[2]))
                if matrix is None:
                    matrix = np.empty((total, VIEWS, plain.shape[1]), np.float32)
                n = len(plain)
                matrix[done:done + n, 0], matrix[done:done + n, 1] = plain, mirrored
                labels[done:done + n] = np.asarray(y).astype(np.int64)
                paths[done:done + n] = [p.decode() for p in np.asarray(names)]
                done += n
                bar.update(n)
    if matrix is None or done != total:
        raise FakefaceError(f"{records}: counted {total} faces in {'+'.join(SPLITS)}, read {done}")
    return Faces(matrix, labels, paths.astype(str))


def load(backbone: str, records: str | Path, progress: bool = True) -> Faces:
    """`backbone`'s features of every face of `records`' SPLITS: from the cache, else computed
    once (a progress bar counts the faces) and cached."""
    if backbone not in BACKBONES:
        raise FakefaceError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    records = Path(records)
    model, run = BACKBONES[backbone]()
    path = cache_file(backbone, model, records)
    if path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            log.info("%s features of %s: cached in %s", backbone, records, path)
            return Faces(stored["features"], stored["labels"], stored["paths"])
    faces = extract(run, records, f"{backbone} features", progress, whole=backbone in WHOLE_IMAGE)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, suffix=".npz") as partial:  # never a half-written cache file
        np.savez(partial, features=faces.features, labels=faces.labels, paths=faces.paths)
    log.info("%s features of %d faces cached in %s", backbone, len(faces.labels), path)
    return faces
