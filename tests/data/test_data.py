"""tf.data pipelines over face-crop TFRecords (fakeface_tf.data.datasets), on tiny synthetic shards."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fakeface_tf.core.config import AugmentConfig
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data import datasets, records

NO_AUGMENT = AugmentConfig(flip=False, rotation=0, zoom=0, shear=0, brightness=0, jpeg_quality=0, blur=0)


def collect(ds) -> tuple[np.ndarray, np.ndarray]:
    batches = list(ds)
    return (np.concatenate([b[0].numpy() for b in batches]),
            np.concatenate([b[1].numpy() for b in batches]))


def test_eval_batches_are_float_pixels_in_record_order(tiny_records):
    images, labels = collect(datasets.make_dataset(tiny_records, "valid", batch_size=10))
    stored = records.read_all(tiny_records, "valid")
    assert images.dtype == np.float32 and labels.dtype == np.float32
    assert images.shape == (32, 32, 32, 1)
    assert np.array_equal(images, np.stack([ex["image"] for ex in stored]).astype(np.float32))
    assert np.array_equal(labels, [ex["label"] for ex in stored])


def test_unit_range_divides_by_255(tiny_records):
    raw, _ = collect(datasets.make_dataset(tiny_records, "test", batch_size=16))
    unit, _ = collect(datasets.make_dataset(tiny_records, "test", batch_size=16, unit_range=True))
    assert unit.max() <= 1.0
    np.testing.assert_allclose(unit * 255.0, raw, atol=1e-4)


def test_meta_holds_path_group_box_angle(tiny_records):
    images, labels, meta = next(iter(datasets.make_dataset(tiny_records, "test", batch_size=4,
                                                       with_meta=True)))
    assert set(meta) == {"path", "group", "box", "angle"}
    assert meta["path"].numpy().tolist() == [f"test/{j}.jpg".encode() for j in range(4)]
    assert meta["box"].shape == (4, 4) and meta["angle"].shape == (4,)


def test_training_shuffle_is_seeded(tiny_records):
    def order(seed):
        _, labels, meta = zip(*datasets.make_dataset(tiny_records, "train", batch_size=64, training=True,
                                                 seed=seed, with_meta=True))
        return meta[0]["path"].numpy().tolist()

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert sorted(order(1)) == sorted(f"train/{j}.jpg".encode() for j in range(64))


ALL_ON = AugmentConfig(flip=True, rotation=0.05, zoom=0.1, shear=0.1, brightness=0.1,
                       jpeg_quality=50, blur=0.5, shift=0.1, mixup=0.4)


def batches(ds, epochs: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every (images, labels) batch of `epochs` passes over `ds`, as arrays."""
    return [(x.numpy(), y.numpy()) for _ in range(epochs) for x, y in ds]


@pytest.mark.slow
def test_same_seed_gives_identical_augmented_batches_and_another_seed_does_not(tiny_records):
    make = lambda seed: datasets.make_dataset(tiny_records, "train", batch_size=16,  # noqa: E731
                                          training=True, augment=ALL_ON, seed=seed)
    first, again, other = batches(make(3)), batches(make(3)), batches(make(4))
    assert len(first) == len(again) == 8  # 64 images, batch 16, two passes
    for (x, y), (x2, y2) in zip(first, again):
        assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert not any(np.array_equal(x, x2) for (x, _), (x2, _) in zip(first, other))
    assert all(x.min() >= 0 and x.max() <= 255 for x, _ in first)


def test_each_epoch_draws_new_augmentations_for_the_same_image(tiny_records):
    ds = datasets.make_dataset(tiny_records, "train", batch_size=16, training=True, with_meta=True,
                           augment=dataclasses.replace(ALL_ON, mixup=0.0), seed=3)
    epochs = [{p: img for x, _, meta in ds for p, img in zip(meta["path"].numpy(), x.numpy())}
              for _ in range(2)]
    assert epochs[0].keys() == epochs[1].keys() and len(epochs[0]) == 64
    assert not any(np.array_equal(epochs[0][p], epochs[1][p]) for p in epochs[0])


@pytest.mark.parametrize("switch", ["flip", "rotation", "zoom", "shear", "brightness",
                                    "jpeg_quality", "blur", "shift", "mixup"])
def test_each_augmentation_switch_alone_changes_images(tiny_records, switch):
    value = {"flip": True, "rotation": 0.1, "zoom": 0.2, "shear": 0.2, "brightness": 0.3,
             "jpeg_quality": 20, "blur": 1.0, "shift": 0.2, "mixup": 0.4}[switch]
    make = lambda aug: datasets.make_dataset(tiny_records, "train", batch_size=32,  # noqa: E731
                                         training=True, augment=aug, seed=5)
    plain, _ = collect(make(NO_AUGMENT))
    changed, _ = collect(make(dataclasses.replace(NO_AUGMENT, **{switch: value})))
    assert not np.array_equal(plain, changed)


def test_shift_moves_whole_pixels_without_resampling(tiny_records):
    make = lambda aug: datasets.make_dataset(tiny_records, "train", batch_size=32,  # noqa: E731
                                         training=True, augment=aug, seed=5)
    plain, _ = collect(make(NO_AUGMENT))
    shifted, _ = collect(make(dataclasses.replace(NO_AUGMENT, shift=0.2)))
    # Every output pixel is a copy of some input pixel of the same image: no new values.
    for before, after in zip(plain, shifted):
        assert set(np.unique(after)) <= set(np.unique(before))


def test_mixup_blends_images_and_labels_alike_and_is_reproducible(tiny_records):
    make = lambda aug: datasets.make_dataset(tiny_records, "train", batch_size=16,  # noqa: E731
                                         training=True, augment=aug, seed=5)
    mixed = dataclasses.replace(NO_AUGMENT, mixup=0.4)
    images, labels = collect(make(mixed))
    again, again_labels = collect(make(mixed))
    plain, plain_labels = collect(make(NO_AUGMENT))
    assert np.array_equal(images, again) and np.array_equal(labels, again_labels)
    assert ((labels > 0) & (labels < 1)).any()  # real and fake neighbours blend
    assert labels.min() >= 0 and labels.max() <= 1
    # The dominant image keeps its own label after rounding (its weight is >= 0.5).
    assert np.array_equal(np.round(labels[np.abs(labels - 0.5) > 1e-6]),
                          plain_labels[np.abs(labels - 0.5) > 1e-6])


def test_all_switches_off_leaves_images_untouched(tiny_records):
    make = lambda aug: datasets.make_dataset(tiny_records, "train", batch_size=32,  # noqa: E731
                                         training=True, augment=aug, seed=5)
    assert np.array_equal(collect(make(NO_AUGMENT))[0], collect(make(None))[0])


def test_repeat_and_drop_remainder_give_full_batches(tiny_records):
    ds = datasets.make_dataset(tiny_records, "train", batch_size=48, training=True, repeat=True,
                           drop_remainder=True)
    shapes = [images.shape[0] for images, _ in ds.take(3)]
    assert shapes == [48, 48, 48]


def test_sources_folder_glob_and_list_agree(tiny_records):
    files = records.shard_files(tiny_records, "test")
    by_folder = collect(datasets.make_dataset(tiny_records, "test"))[1]
    by_glob = collect(datasets.make_dataset(str(tiny_records / "*.tfrecord"), "test"))[1]
    by_list = collect(datasets.make_dataset(files))[1]
    assert np.array_equal(by_folder, by_glob) and np.array_equal(by_folder, by_list)


def test_image_shape_and_counts(tiny_records):
    assert datasets.image_shape(tiny_records) == (32, 32, 1)
    assert datasets.count_examples(tiny_records, "train") == {"real": 32, "fake": 32}
    assert datasets.count_examples(tiny_records) == {"real": 64, "fake": 64}


def test_counts_add_up_over_many_reading_batches(tmp_path):
    labels = [i % 3 == 0 for i in range(700)]  # 234 fake, 466 real: three batches of records
    pixels = np.zeros((4, 4, 1), np.uint8)
    records.write(tmp_path / records.shard_name("test", 0, 1),
                  (records.serialize(pixels, int(fake), path=f"{i}.png") for i, fake in enumerate(labels)))
    assert datasets.count_examples(tmp_path, "test") == {"real": 466, "fake": 234}


def test_missing_records_is_a_clear_error(tmp_path):
    with pytest.raises(FakefaceError, match="no TFRecord files for split 'train'"):
        datasets.make_dataset(tmp_path, "train")


def test_train_fraction_keeps_a_nested_hash_chosen_subset(tiny_records):
    def paths(fraction):
        ds = datasets.make_dataset(tiny_records, "train", batch_size=64, with_meta=True, fraction=fraction)
        return {p.decode() for _, _, meta in ds for p in meta["path"].numpy()}

    quarter, half, whole = paths(0.25), paths(0.5), paths(1.0)
    assert quarter < half < whole and len(whole) == 64
    assert abs(len(half) - 32) <= 10 and abs(len(quarter) - 16) <= 8
    assert sum(datasets.count_examples(tiny_records, "train", 0.5).values()) == len(half)
