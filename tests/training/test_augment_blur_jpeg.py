"""augment.blur_jpeg: CNNDetection's Blur+JPEG(p) training augmentation (data/blur_jpeg.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from scipy.ndimage import gaussian_filter

from fakeface_tf.core.config import AugmentConfig, Config, from_dict
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data import datasets
from fakeface_tf.data.blur_jpeg import blur_jpeg, gaussian_blur

NO_AUGMENT = AugmentConfig(flip=False, rotation=0, zoom=0, shear=0, brightness=0)
KEY = tf.constant([7, 11], tf.int64)


@pytest.fixture(scope="module")
def batch() -> tf.Tensor:
    """16 noisy 32x32 RGB images in [0, 255]: fine detail that a blur or JPEG must change."""
    return tf.constant(np.random.default_rng(0).uniform(0, 255, (16, 32, 32, 3)), tf.float32)


def test_blur_matches_scipy_gaussian_filter_and_sigma_zero_is_the_identity(batch):
    images = batch[:3].numpy()
    out = gaussian_blur(batch[:3], tf.constant([0.0, 3.0, 2.0])).numpy()
    assert np.array_equal(out[0], images[0])
    for i, sigma in ((1, 3.0), (2, 2.0)):
        # scipy's radius is 4 sigma (8 at sigma 2, the same 12 taps either side at 3)
        expected = np.stack([gaussian_filter(images[i, :, :, c], sigma, mode="reflect")
                             for c in range(3)], -1)
        np.testing.assert_allclose(out[i], expected, atol=0.02)


def test_probability_one_changes_every_image(batch):
    out = blur_jpeg(batch, 1.0, KEY).numpy()
    changed = np.abs(out - batch.numpy()).mean(axis=(1, 2, 3))
    assert (changed > 1.0).all()  # noise is smoothed and re-quantised, not nudged
    assert out.min() >= 0 and out.max() <= 255


def test_probability_zero_changes_nothing(batch):
    assert np.array_equal(blur_jpeg(batch, 0.0, KEY).numpy(), batch.numpy())


def test_probability_half_changes_some_images_and_leaves_others(batch):
    changed = (blur_jpeg(batch, 0.5, KEY).numpy() != batch.numpy()).any(axis=(1, 2, 3))
    assert 0 < changed.sum() < len(changed)


def test_same_key_repeats_and_another_key_differs(batch):
    first, again = blur_jpeg(batch, 0.5, KEY).numpy(), blur_jpeg(batch, 0.5, KEY).numpy()
    other = blur_jpeg(batch, 0.5, tf.constant([7, 12], tf.int64)).numpy()
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def _train_images(records, augment: AugmentConfig, seed: int) -> np.ndarray:
    ds = datasets.make_dataset(records, "train", batch_size=16, training=True,
                               augment=augment, seed=seed)
    return np.concatenate([x.numpy() for x, _ in ds])


@pytest.mark.slow
def test_training_pipeline_applies_it_and_repeats_under_the_seed(tiny_records):
    plain = _train_images(tiny_records, NO_AUGMENT, seed=3)
    augment = dataclasses.replace(NO_AUGMENT, blur_jpeg=0.5)
    first, again = _train_images(tiny_records, augment, 3), _train_images(tiny_records, augment, 3)
    assert not np.array_equal(plain, first)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, _train_images(tiny_records, augment, 4))


def test_off_by_default():
    assert AugmentConfig().blur_jpeg == 0.0 and Config().augment.blur_jpeg == 0.0


@pytest.mark.parametrize("values, message", [
    ({"augment": {"blur_jpeg": 1.5}}, "augment.blur_jpeg must be in [0, 1]"),
    ({"augment": {"blur_jpeg": 0.5, "flip": True, "rotation": 0, "zoom": 0, "brightness": 0},
      "training": {"cache_frozen": "auto"}}, "training.cache_frozen works with flips only"),
])
def test_bad_settings_are_refused_by_name(values, message):
    with pytest.raises(FakefaceError, match=message.replace("[", r"\[").replace("]", r"\]")):
        from_dict(values)
