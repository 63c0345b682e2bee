"""tf.data pipelines over the face-crop TFRecords written by `fakeface preprocess`.

Batches are parsed whole (`records.parse_batch`: batch first, then one parse and one
decode_raw per batch), which is what makes this pipeline several times faster than
decoding JPEGs one by one. Images stay float32 in [0, 255]: the models rescale inside,
so a saved model takes raw pixels (`unit_range=True` gives [0, 1] for other uses).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import keras
import tensorflow as tf

from fakeface_tf import records
from fakeface_tf.config import AugmentConfig
from fakeface_tf.errors import FakefaceError

AUTOTUNE = tf.data.AUTOTUNE
META_KEYS = ("path", "group", "box", "angle")


def resolve_files(source, split: str | None = None) -> list[str]:
    """Shard files of `split` from a records folder, a glob pattern, or a list of files."""
    if isinstance(source, (list, tuple)):
        files = [str(f) for f in source]
    elif Path(source).is_dir():
        files = records.shard_files(source, split)
    else:
        files = sorted(glob.glob(str(source)))
        if split:
            files = [f for f in files if os.path.basename(f).startswith(f"{split}-")]
    if not files:
        where = f" for split '{split}'" if split else ""
        raise FakefaceError(f"no TFRecord files{where} in {source}; run `fakeface preprocess` first")
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise FakefaceError(f"TFRecord file not found: {missing[0]}")
    return files


def image_shape(source, split: str | None = None) -> tuple[int, int, int]:
    """(height, width, channels) of the first record; every record of a run shares it."""
    for raw in tf.data.TFRecordDataset(resolve_files(source, split)).take(1):
        ex = records.parse(raw)
        return tuple(int(v) for v in ex["image"].shape)
    raise FakefaceError(f"the TFRecord files in {source} hold no examples")


def keep_fraction(fraction: float):
    """A tf.data filter keeping a fixed `fraction` of serialized records, chosen by a hash of
    each record's source path (so 25 % is a subset of 50 %, whatever the shard order)."""
    path_only = {"path": records.FEATURES["path"]}

    def keep(raw):
        path = tf.io.parse_single_example(raw, path_only)["path"]
        return tf.strings.to_hash_bucket_strong(path, 10_000, [7, 11]) < int(round(fraction * 10_000))

    return keep


def count_examples(source, split: str | None = None, fraction: float = 1.0) -> dict[str, int]:
    """Number of examples per label name ({"real": n, "fake": m}) in `split` (in the kept
    `fraction`)."""
    label_only = {"label": records.FEATURES["label"]}
    ds = tf.data.TFRecordDataset(resolve_files(source, split))
    if fraction < 1:
        ds = ds.filter(keep_fraction(fraction))
    ds = ds.batch(4096)
    ds = ds.map(lambda raw: tf.io.parse_example(raw, label_only)["label"])
    counts = {name: 0 for name in records.LABELS}
    names = {v: k for k, v in records.LABELS.items()}
    for labels in ds:
        for value, n in zip(*tf.unique_with_counts(labels)[::2]):
            counts[names[int(value)]] += int(n)
    return counts


def _gaussian_blur(images: tf.Tensor, sigma: float = 1.0) -> tf.Tensor:
    """A light 5x5 Gaussian blur of a float NxHxWxC batch (edges reflected)."""
    x = tf.range(-2.0, 3.0)
    kernel_1d = tf.exp(-(x**2) / (2.0 * sigma**2))
    kernel_1d /= tf.reduce_sum(kernel_1d)
    kernel = tf.tensordot(kernel_1d, kernel_1d, axes=0)[:, :, None, None]
    kernel = tf.tile(kernel, [1, 1, tf.shape(images)[-1], 1])
    padded = tf.pad(images, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="REFLECT")
    return tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")


def augmenter(augment: AugmentConfig, seed: int = 0):
    """A function (images, step) -> images applying the switched-on augmentations.

    Geometry and brightness use seeded Keras preprocessing layers; JPEG re-compression
    and blur use stateless TF ops keyed on (seed, step), so a run is reproducible.
    """
    layers = []
    if augment.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if augment.rotation:
        layers.append(keras.layers.RandomRotation(augment.rotation, fill_mode="reflect", seed=seed + 1))
    if augment.zoom:
        layers.append(keras.layers.RandomZoom(augment.zoom, fill_mode="reflect", seed=seed + 2))
    if augment.shear:
        layers.append(keras.layers.RandomShear(augment.shear, augment.shear, fill_mode="reflect",
                                               seed=seed + 3))
    if augment.shift:  # nearest: a whole-pixel shift, no interpolation to blur GAN traces
        layers.append(keras.layers.RandomTranslation(augment.shift, augment.shift, fill_mode="reflect",
                                                     interpolation="nearest", seed=seed + 5))
    if augment.brightness:
        layers.append(keras.layers.RandomBrightness(augment.brightness, value_range=(0, 255),
                                                    seed=seed + 4))
    quality = int(augment.jpeg_quality)
    if quality and not 0 < quality < 95:
        raise FakefaceError(f"augment.jpeg_quality must be in 1..94, got {quality}")

    def apply(images: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
        for layer in layers:
            images = layer(images, training=True)
        images = tf.clip_by_value(images, 0.0, 255.0)
        base = tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)])
        if quality:
            n = tf.shape(images)[0]
            seeds = tf.random.stateless_uniform([n, 2], base, maxval=2**31 - 1, dtype=tf.int64)

            def recompress(args):
                image, s = args
                pixels = tf.cast(tf.round(image), tf.uint8)
                out = tf.image.stateless_random_jpeg_quality(pixels, quality, 95, s)
                return tf.cast(out, tf.float32)

            images = tf.map_fn(recompress, (images, seeds), fn_output_signature=tf.float32)
        if augment.blur:
            n = tf.shape(images)[0]
            pick = tf.random.stateless_uniform([n, 1, 1, 1], base + 1) < augment.blur
            images = tf.where(pick, _gaussian_blur(images), images)
        return images

    return apply


def mixup(images: tf.Tensor, labels: tf.Tensor, alpha: float, seed) -> tuple[tf.Tensor, tf.Tensor]:
    """Blend each example with its neighbour in the (shuffled) batch, labels alike.

    The weight of the example itself is max(l, 1 - l) with l ~ Beta(alpha, alpha), so every
    blend stays closer to its own image. A stateless draw keyed on `seed` keeps runs reproducible.
    """
    n = tf.shape(images)[0]
    a = tf.random.stateless_gamma([n], seed, alpha=alpha)
    b = tf.random.stateless_gamma([n], seed + 1, alpha=alpha)
    weight = a / (a + b)
    weight = tf.maximum(weight, 1.0 - weight)
    other_images, other_labels = tf.roll(images, 1, axis=0), tf.roll(labels, 1, axis=0)
    images = weight[:, None, None, None] * images + (1.0 - weight[:, None, None, None]) * other_images
    return images, weight * labels + (1.0 - weight) * other_labels


def make_dataset(source, split: str | None = None, batch_size: int = 32, training: bool = False,
                 augment: AugmentConfig | None = None, seed: int = 0, with_meta: bool = False,
                 unit_range: bool = False, shuffle_buffer: int = 2048, repeat: bool = False,
                 drop_remainder: bool = False, cache: bool = False,
                 fraction: float = 1.0) -> tf.data.Dataset:
    """Batches of (images, labels) or (images, labels, meta) from face-crop TFRecords.

    images: float32 NxHxWxC in [0, 255] ([0, 1] with `unit_range`); labels: float32 (N,),
    1 = fake. Evaluation (training=False) reads the shards in order, so the order is fixed;
    training shuffles files and examples with `seed` and augments when `augment` is given.
    `fraction` < 1 keeps that share of the records (`keep_fraction`), e.g. for learning curves.
    """
    files = resolve_files(source, split)
    shape = image_shape(files)
    if training:
        file_ds = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=seed)
        ds = file_ds.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(files)),
                                num_parallel_calls=AUTOTUNE, deterministic=True)
    else:
        ds = tf.data.TFRecordDataset(files)
    if fraction < 1:
        ds = ds.filter(keep_fraction(fraction))
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    apply = augmenter(augment, seed) if training and augment is not None else None

    def parse(raw, step=None):
        ex = records.parse_batch(raw, shape)
        images = tf.cast(ex["image"], tf.float32)
        if apply is not None:
            images = apply(images, step)
        if unit_range:
            images = images / 255.0
        labels = tf.cast(ex["label"], tf.float32)
        if apply is not None and augment.mixup:
            base = tf.stack([tf.cast(seed, tf.int64) + 7, tf.cast(step, tf.int64)])
            images, labels = mixup(images, labels, augment.mixup, base)
        if with_meta:
            return images, labels, {k: ex[k] for k in META_KEYS}
        return images, labels

    if apply is None:
        ds = ds.map(parse, num_parallel_calls=AUTOTUNE, deterministic=True)
    else:
        # Sequential: Keras' seeded layers advance a shared state, so a parallel map
        # would hand out random draws in a racy order and break reproducibility.
        ds = ds.enumerate().map(lambda step, raw: parse(raw, step))
    return ds.prefetch(AUTOTUNE)
