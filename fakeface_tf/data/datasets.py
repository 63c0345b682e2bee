"""tf.data pipelines over the face-crop TFRecords written by `fakeface preprocess`.

Batches are parsed whole (`records.parse_batch`: batch first, then one parse and one
decode_raw per batch), which is what makes this pipeline several times faster than
decoding JPEGs one by one. Images stay float32 in [0, 255]: the models rescale inside,
so a saved model takes raw pixels (`unit_range=True` gives [0, 1] for other uses).
"""

from __future__ import annotations

import glob
import math
import os
from pathlib import Path

import tensorflow as tf

from fakeface_tf.core.config import AugmentConfig, Config, records_dir
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data import records
from fakeface_tf.data.blur_jpeg import blur_jpeg

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


def records_path(cfg: Config) -> Path:
    """`data.path`, looked up under the repository when relative and absent from the cwd
    (`config.records_dir`); checked to hold training shards."""
    path = records_dir(cfg.data.path)
    resolve_files(path, "train")
    return path


def image_shape(source, split: str | None = None) -> tuple[int, int, int]:
    """(height, width, channels) of the first record; every record of a run shares it."""
    for raw in tf.data.TFRecordDataset(resolve_files(source, split)).take(1):
        ex = records.parse(raw)
        return tuple(int(v) for v in ex["image"].shape)
    raise FakefaceError(f"the TFRecord files in {source} hold no examples")


def keep_fraction(fraction: float):
    """A tf.data filter keeping a fixed `fraction` of serialized records, chosen by a hash of
    each record's source path (so 25 % is a subset of 50 %, whatever the shard order)."""
    path_only = {"path": records.features()["path"]}

    def keep(raw):
        path = tf.io.parse_single_example(raw, path_only)["path"]
        return tf.strings.to_hash_bucket_strong(path, 10_000, [7, 11]) < int(round(fraction * 10_000))

    return keep


def count_examples(source, split: str | None = None, fraction: float = 1.0) -> dict[str, int]:
    """Number of examples per label name ({"real": n, "fake": m}) in `split` (in the kept
    `fraction`)."""
    label_only = {"label": records.features()["label"]}
    ds = tf.data.TFRecordDataset(resolve_files(source, split))
    if fraction < 1:
        ds = ds.filter(keep_fraction(fraction))
    # Whole serialized records, images and all, are batched before the labels are parsed:
    # 256 of 224 px RGB are 38 MB (4096 were 600 MB, and the freed heap stayed with the process).
    ds = ds.batch(256)
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


def _key(seed: tf.Tensor, salt: int) -> tf.Tensor:
    """A stateless-op seed for one kind of random draw, derived from a batch's key."""
    return tf.random.experimental.stateless_fold_in(seed, salt)


def _transform(images: tf.Tensor, matrices: tf.Tensor, interpolation: str) -> tf.Tensor:
    """Resample each image through its 2x3 matrix mapping output (x, y) to input pixels,
    borders reflected: one resampling for every geometric change at once."""
    n = tf.shape(images)[0]
    flat = tf.concat([tf.reshape(matrices, [n, 6]), tf.zeros([n, 2])], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=flat, output_shape=tf.shape(images)[1:3], fill_value=0.0,
        interpolation=interpolation, fill_mode="REFLECT")


def _geometry(images: tf.Tensor, augment: AugmentConfig, key: tf.Tensor) -> tf.Tensor:
    """Random rotation, zoom and shear about the centre, bilinear, in one resampling."""
    n = tf.shape(images)[0]

    def draw(salt: int, bound: float) -> tf.Tensor:
        return tf.random.stateless_uniform([n], _key(key, salt), -float(bound), float(bound))

    angle = draw(0, augment.rotation) * 2.0 * math.pi
    zoom = 1.0 + draw(1, augment.zoom)  # > 1 samples a wider square: zooms out
    shear_x, shear_y = draw(2, augment.shear), draw(3, augment.shear)
    cos, sin = tf.cos(angle) * zoom, tf.sin(angle) * zoom
    # [[cos, -sin], [sin, cos]] @ [[1, shear_x], [shear_y, 1]], scaled by the zoom
    a = tf.stack([tf.stack([cos - sin * shear_y, cos * shear_x - sin], -1),
                  tf.stack([sin + cos * shear_y, sin * shear_x + cos], -1)], 1)
    centre = (tf.cast(tf.shape(images)[2:0:-1], tf.float32) - 1.0) / 2.0  # (x, y)
    offset = centre[None, :] - tf.linalg.matvec(a, tf.tile(centre[None, :], [n, 1]))
    return _transform(images, tf.concat([a, offset[:, :, None]], axis=2), "BILINEAR")


def _reflect(index: tf.Tensor, n) -> tf.Tensor:
    """Pixel indices up to `n` past either edge mirrored back into [0, n), edge pixel repeated."""
    index = tf.where(index < 0, -index - 1, index)
    return tf.where(index >= n, 2 * n - index - 1, index)


def _shift(images: tf.Tensor, fraction: float, key: tf.Tensor) -> tf.Tensor:
    """Translate each image by whole pixels (at most `fraction` of a side), borders
    reflected: rows and columns are gathered, so every pixel is a copy and GAN traces stay
    sharp."""
    n, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    sides = tf.cast(tf.stack([height, width]), tf.float32)
    moves = tf.random.stateless_uniform([n, 2], key, -fraction, fraction) * sides  # (dy, dx)
    moves = tf.cast(tf.round(moves), tf.int32)
    rows = _reflect(tf.range(height)[None, :] - moves[:, :1], height)  # N x H source rows
    cols = _reflect(tf.range(width)[None, :] - moves[:, 1:], width)  # N x W source columns
    images = tf.gather(images, rows, axis=1, batch_dims=1)
    return tf.gather(images, cols, axis=2, batch_dims=1)


def _recompress(images: tf.Tensor, quality: int, key: tf.Tensor) -> tf.Tensor:
    """JPEG re-compression of each image with a random quality in [quality, 95]."""
    seeds = tf.random.stateless_uniform([tf.shape(images)[0], 2], key, maxval=2**31 - 1,
                                        dtype=tf.int64)

    def one(args):
        image, seed = args
        pixels = tf.cast(tf.round(image), tf.uint8)
        return tf.cast(tf.image.stateless_random_jpeg_quality(pixels, quality, 95, seed), tf.float32)

    return tf.map_fn(one, (images, seeds), fn_output_signature=tf.float32)


def augmenter(augment: AugmentConfig):
    """A function (images, key) -> images applying the switched-on augmentations.

    Every random draw is a stateless op seeded by `key` (shape [2]): the same key gives the
    same images whatever thread runs it, so the training map can run in parallel and a run
    is reproducible.
    """
    augment.validate()

    def apply(images: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
        n = tf.shape(images)[0]
        if augment.flip:
            pick = tf.random.stateless_uniform([n, 1, 1, 1], _key(key, 10)) < 0.5
            images = tf.where(pick, tf.reverse(images, axis=[2]), images)
        if augment.rotation or augment.zoom or augment.shear:
            images = _geometry(images, augment, _key(key, 11))
        if augment.shift:
            images = _shift(images, augment.shift, _key(key, 12))
        if augment.brightness:
            delta = augment.brightness * 255.0
            images = images + tf.random.stateless_uniform([n, 1, 1, 1], _key(key, 13), -delta, delta)
        images = tf.clip_by_value(images, 0.0, 255.0)
        if augment.jpeg_quality:
            images = _recompress(images, int(augment.jpeg_quality), _key(key, 14))
        if augment.blur:
            pick = tf.random.stateless_uniform([n, 1, 1, 1], _key(key, 15)) < augment.blur
            images = tf.where(pick, _gaussian_blur(images), images)
        if augment.blur_jpeg:
            images = blur_jpeg(images, augment.blur_jpeg, _key(key, 17))
        return images

    return apply


def mixup(images: tf.Tensor, labels: tf.Tensor, alpha: float, seed) -> tuple[tf.Tensor, tf.Tensor]:
    """Blend each example with its neighbour in the (shuffled) batch, labels alike.

    The weight of the example itself is max(l, 1 - l) with l ~ Beta(alpha, alpha), so every
    blend stays closer to its own image. A stateless draw keyed on `seed` (shape [2]) keeps
    runs reproducible.
    """
    n = tf.shape(images)[0]
    a = tf.random.stateless_gamma([n], seed, alpha=alpha)
    b = tf.random.stateless_gamma([n], _key(seed, 1), alpha=alpha)
    weight = a / (a + b)
    weight = tf.maximum(weight, 1.0 - weight)
    other_images, other_labels = tf.roll(images, 1, axis=0), tf.roll(labels, 1, axis=0)
    images = weight[:, None, None, None] * images + (1.0 - weight[:, None, None, None]) * other_images
    return images, weight * labels + (1.0 - weight) * other_labels


def make_dataset(source, split: str | None = None, batch_size: int = 32, training: bool = False,
                 augment: AugmentConfig | None = None, seed: int = 0, with_meta: bool = False,
                 unit_range: bool = False, shuffle_buffer: int = 2048, repeat: bool = False,
                 drop_remainder: bool = False, cache: bool = False,
                 fraction: float = 1.0, parallel: bool = True) -> tf.data.Dataset:
    """Batches of (images, labels) or (images, labels, meta) from face-crop TFRecords.

    images: float32 NxHxWxC in [0, 255] ([0, 1] with `unit_range`); labels: float32 (N,),
    1 = fake. Evaluation (training=False) reads the shards in order, so the order is fixed;
    training shuffles files and examples with `seed` and augments when `augment` is given.
    `fraction` < 1 keeps that share of the records (`keep_fraction`), e.g. for learning curves.
    `parallel=False` parses and augments one batch at a time (the benchmark's baseline).
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

    apply = augmenter(augment) if training and augment is not None else None

    def parse(raw, key=None):
        ex = records.parse_batch(raw, shape)
        images = tf.cast(ex["image"], tf.float32)
        if apply is not None:
            images = apply(images, key)
        if unit_range:
            images = images / 255.0
        labels = tf.cast(ex["label"], tf.float32)
        if apply is not None and augment.mixup:
            images, labels = mixup(images, labels, augment.mixup, _key(key, 16))
        if with_meta:
            return images, labels, {k: ex[k] for k in META_KEYS}
        return images, labels

    def mapped(ds, fn):
        """`ds.map(fn)`, on AUTOTUNE threads in order unless `parallel` is off."""
        return ds.map(fn, num_parallel_calls=AUTOTUNE, deterministic=True) if parallel else ds.map(fn)

    if apply is None:
        ds = mapped(ds, parse)
    else:
        # One key per batch, (seed, a draw that changes every epoch): stateless, so batches
        # may be augmented in parallel and still come out the same for the same seed.
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = mapped(tf.data.Dataset.zip(ds, draws),
                    lambda raw, draw: parse(raw, tf.stack([tf.constant(seed, tf.int64), draw])))
    return ds.prefetch(AUTOTUNE) if training else _without_autotuning(ds.prefetch(AUTOTUNE))


def _without_autotuning(ds: tf.data.Dataset) -> tf.data.Dataset:
    """`ds` without tf.data's autotuning thread, for data read once in order: that thread's
    shutdown at the end of the data stalled the frozen pass 23-28 s in 3 of 5 runs (none in
    6 without it), at no cost in throughput."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)
