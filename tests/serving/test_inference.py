"""Inference core: verdict mapping, heatmaps mapped back onto the face, bad-input errors."""

from __future__ import annotations

import dataclasses
import io

import cv2
import numpy as np
import pytest
from PIL import Image

from fakeface_tf.data.faces import crop_transform
from fakeface_tf.data.images import CorruptImageError, EmptyImageError, ImageTooLargeError, NotAnImageError
from fakeface_tf.serving.drawing import heatmap_to_original, overlay
from fakeface_tf.serving.explanations import EXPLAIN_METHODS, unit_range
from fakeface_tf.serving.inference import Detector, read_image, verdict_for


@pytest.fixture(scope="module")
def detector(tiny_keras_model) -> Detector:
    return Detector.load(tiny_keras_model)


@pytest.fixture(scope="module")
def face_path(sample_root):
    return sorted((sample_root / "faces" / "real").glob("*.jpg"))[0]


@pytest.fixture(scope="module")
def nonface_path(sample_root):
    return sorted((sample_root / "nonface").glob("*.jpg"))[0]


@pytest.mark.parametrize("face_ok, probability, threshold, expected", [
    (False, None, 0.5, "not a face"),
    (False, 0.9, 0.5, "not a face"),
    (True, 0.5, 0.5, "fake face"),
    (True, 0.49, 0.5, "real face"),
    (True, 0.2, 0.1, "fake face"),
    (True, 0.95, 0.99, "real face"),
])
def test_verdict_maps_face_and_probability_against_threshold(face_ok, probability, threshold, expected):
    assert verdict_for(face_ok, probability, threshold) == expected


def test_nonface_image_is_not_a_face_without_probability(detector, nonface_path):
    result = detector.predict(nonface_path, explain="gradcam++")
    assert result.verdict == "not a face"
    assert result.probability is None
    assert result.face.status != "ok" and result.face.reason
    assert result.heatmap is None and result.overlay() is None


def test_face_verdict_follows_the_models_threshold(detector, face_path):
    probability = detector.predict(face_path).probability
    assert 0.0 < probability < 1.0
    below = dataclasses.replace(detector, threshold=probability - 1e-3).predict(face_path)
    above = dataclasses.replace(detector, threshold=probability + 1e-3).predict(face_path)
    assert (below.verdict, above.verdict) == ("fake face", "real face")
    assert above.probability == pytest.approx(probability)


def test_crop_heatmap_hotspot_maps_back_to_the_box_centre():
    box, angle, size = (100.0, 60.0, 80.0, 100.0), 15.0, 64
    transform, _ = crop_transform(box, angle, 0.2, size)
    heat = np.zeros((size, size), np.float32)
    heat[size // 2 - 2:size // 2 + 2, size // 2 - 2:size // 2 + 2] = 1.0
    mapped = heatmap_to_original(heat, transform, (300, 320, 3))
    assert mapped.shape == (300, 320)
    ys, xs = np.nonzero(mapped > 0.5)
    assert abs(xs.mean() - (100 + 40)) < 2 and abs(ys.mean() - (60 + 50)) < 2


@pytest.mark.parametrize("method", EXPLAIN_METHODS)
def test_heatmap_covers_the_crop_and_sits_inside_the_face_region(detector, face_path, method):
    result = detector.predict(face_path, explain=method)
    size = detector.model.image_size
    assert result.heatmap.shape == (size, size)
    assert 0.0 <= result.heatmap.min() and result.heatmap.max() <= 1.0 and result.heatmap.max() > 0
    assert result.heatmap_image.shape == result.image.shape[:2]
    # The cropped square (face box plus margin, levelled) in original coordinates.
    inverse = cv2.invertAffineTransform(result.face.transform)
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float64)
    polygon = corners @ inverse[:, :2].T + inverse[:, 2]
    region = np.zeros(result.image.shape[:2], np.uint8)
    cv2.fillConvexPoly(region, np.round(polygon).astype(np.int32), 1)
    # Bilinear interpolation may bleed up to one crop pixel past the square's edge.
    bleed = int(np.ceil(np.sqrt(abs(np.linalg.det(inverse[:, :2]))))) + 1
    region = cv2.dilate(region, np.ones((2 * bleed + 1, 2 * bleed + 1), np.uint8))
    total = result.heatmap_image.sum()
    assert total > 0
    assert result.heatmap_image[region == 0].sum() < 1e-3 * total
    blended = result.overlay(opacity=0.5)
    assert blended.shape == result.image.shape and blended.dtype == np.uint8


def test_tiny_gradient_maps_still_span_zero_to_one():
    heat = unit_range(np.array([[0.0, 1e-9], [2e-9, 4e-9]]))
    assert heat.max() == 1.0 and heat.min() == 0.0
    assert not unit_range(np.full((3, 3), 5.0)).any()


def test_overlay_leaves_cold_pixels_untouched():
    image = np.full((10, 10, 3), 200, np.uint8)
    heat = np.zeros((10, 10), np.float32)
    heat[5, 5] = 1.0
    out = overlay(image, heat, opacity=1.0)
    assert (out[0, 0] == 200).all() and not (out[5, 5] == 200).all()


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("make, error", [
    (lambda face: b"", EmptyImageError),
    (lambda face: b"just some text, not an image\n", NotAnImageError),
    (lambda face: face[: len(face) // 3], CorruptImageError),
    (lambda face: _png(8000, 8000), ImageTooLargeError),
])
def test_bad_image_bytes_raise_the_specific_error(face_path, make, error):
    with pytest.raises(error, match=r"\w"):
        read_image(make(face_path.read_bytes()))


def test_every_method_explains_a_model_with_the_fft_branch(tmp_path, sample_root):
    """The FFT branch holds raw ops (zeros_like, fft2); wrapping the model must not clash."""
    from fakeface_tf.core.config import Config, apply_overrides
    from fakeface_tf.models.registry import build_model

    cfg = apply_overrides(Config(), ["model.name=fast", "model.freq_branch=true", "data.image_size=64",
                                     "model.filters=8"])
    build_model(cfg).save(tmp_path / "freq.keras")
    detector = Detector.load(tmp_path / "freq.keras")
    face = sorted((sample_root / "faces" / "fake").glob("*.jpg"))[0]
    for method in EXPLAIN_METHODS:
        assert detector.predict(face, explain=method).heatmap.shape == (64, 64)
