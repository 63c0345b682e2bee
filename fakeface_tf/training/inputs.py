"""What a training reads: the records' face cut, checked against the config, and the training
and validation batches (fairness faces mixed in when configured)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import tensorflow as tf

from fakeface_tf.core.config import Config
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data import datasets, labelled
from fakeface_tf.data.face_cut import CONFIG_FIELDS, FaceOptions, face_options, read_cut
from fakeface_tf.training.frozen_cache import RAM_CACHE_BYTES


class TrainingData(NamedTuple):
    """The batches of one training (unpacks as train, valid, steps, fixed_steps)."""

    train: tf.data.Dataset
    valid: tf.data.Dataset
    steps: int  # training batches an epoch
    fixed_steps: int | None  # training.steps_per_epoch when set (the data repeats), else None


def training_cut(cfg: Config) -> FaceOptions:
    """The face cut of the run's records (their preprocess.json), refused when it is not the
    cut the config asks for; the config's own cut for records without preprocess.json."""
    path = datasets.records_path(cfg)
    wanted, cut = face_options(cfg.data), read_cut(path)
    if cut is None:
        return wanted
    differences = cut.differences(wanted, list(CONFIG_FIELDS))
    if differences:
        raise FakefaceError(f"data.path {path} was cut differently from what the config asks "
                            f"(records vs config: {'; '.join(differences)}); preprocess again or "
                            "change data.* in the config")
    return cut


def training_data(cfg: Config, strategy: tf.distribute.Strategy) -> TrainingData:
    """The training and validation batches of `cfg` and the steps of an epoch, fairness faces
    mixed in when configured, split across `strategy`'s replicas by data."""
    path = datasets.records_path(cfg)
    expected = (cfg.data.image_size, cfg.data.image_size, cfg.data.channels)
    found = tuple(datasets.image_shape(path))
    if found != expected:
        raise FakefaceError(
            f"data.path {path} holds {found} images but the config asks for {expected} "
            "(data.image_size, data.color); preprocess again or change the config"
        )
    batch, seed = cfg.training.batch_size, cfg.training.seed
    fraction = cfg.data.train_fraction
    examples, known_length = _count(path, "train", fraction), True
    train_ds = datasets.make_dataset(path, "train", batch_size=batch, training=True,
                                     augment=cfg.augment, seed=seed,
                                     cache=_fits_in_memory(path, "train", fraction),
                                     fraction=fraction)
    if cfg.data.fairness_labels:
        extra = fairness_faces(cfg)
        n_extra = int(extra.cardinality())  # negative when tf.data cannot tell
        examples, known_length = examples + max(n_extra, 0), n_extra >= 0
        train_ds = (train_ds.unbatch().concatenate(extra)
                    .shuffle(8192, seed=seed).batch(batch).prefetch(tf.data.AUTOTUNE))
    steps = cfg.training.steps_per_epoch or math.ceil(examples / batch)
    if cfg.training.steps_per_epoch:
        train_ds = train_ds.repeat()
    elif known_length:  # a known length spares Keras guessing where an epoch ends
        train_ds = train_ds.apply(tf.data.experimental.assert_cardinality(steps))
    valid_ds = datasets.make_dataset(path, "valid", batch_size=batch,
                                     cache=_fits_in_memory(path, "valid")).apply(
        tf.data.experimental.assert_cardinality(math.ceil(_count(path, "valid") / batch)))
    if strategy.num_replicas_in_sync > 1 or cfg.distribute == "multiworker":
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        train_ds, valid_ds = train_ds.with_options(options), valid_ds.with_options(options)
    return TrainingData(train_ds, valid_ds, steps, cfg.training.steps_per_epoch or None)


def _fits_in_memory(path: Path, split: str, fraction: float = 1.0) -> bool:
    """Whether `split`'s records (the kept `fraction`) fit tf.data's in-memory cache
    (`frozen_cache.RAM_CACHE_BYTES`); larger sets are read from disk every epoch instead."""
    size = sum(Path(f).stat().st_size for f in datasets.resolve_files(path, split))
    return size * fraction <= RAM_CACHE_BYTES


def fairness_faces(cfg: Config) -> tf.data.Dataset:
    """The labelled faces mixed into training (`data.fairness_labels`), unbatched, each
    repeated `data.fairness_weight` times."""
    return labelled.training_dataset(cfg).repeat(round(cfg.data.fairness_weight))


def plain_training_images(cfg: Config) -> tf.data.Dataset:
    """The training images in a fixed order without augmentation (fairness faces appended when
    configured): what the frozen part and the probe see."""
    batch = cfg.training.batch_size
    ds = datasets.make_dataset(datasets.records_path(cfg), "train", batch_size=batch,
                               fraction=cfg.data.train_fraction)
    if cfg.data.fairness_labels:
        ds = ds.unbatch().concatenate(fairness_faces(cfg)).batch(batch)
    return ds


def _count(path: Path, split: str, fraction: float = 1.0) -> int:
    return sum(datasets.count_examples(path, split, fraction).values())
