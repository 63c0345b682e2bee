"""Degradation transforms do what they say; the sweep writes its table and plot."""

import cv2
import numpy as np
import pandas as pd
import pytest

from fakeface_tf.analysis import evaluate, robustness
from fakeface_tf.cli import main
from fakeface_tf.models import artifacts


@pytest.fixture(params=[1, 3], ids=["gray", "rgb"])
def crop(request) -> np.ndarray:
    """A 64x64 crop with smooth shading plus fine texture, like a face photo."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    smooth = 120 + 60 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    tint = np.array([1.0, 0.85, 0.7])[:request.param]  # colour mostly follows brightness
    image = (smooth[..., None] + rng.normal(0, 18, (64, 64, 1))) * tint
    return np.clip(image, 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return cv2.PSNR(a, b)


def high_frequency_energy(image: np.ndarray) -> float:
    return float(np.var(cv2.Laplacian(image.astype(np.float32), cv2.CV_32F)))


def test_every_condition_keeps_shape_and_dtype(crop):
    for name, transform in robustness.CONDITIONS.items():
        out = transform(crop)
        assert out.shape == crop.shape and out.dtype == np.uint8, name


def test_lower_jpeg_quality_loses_more(crop):
    q95, q75, q30 = (robustness.jpeg(crop, q) for q in (95, 75, 30))
    assert psnr(crop, q30) < psnr(crop, q75) < psnr(crop, q95) < 100
    assert psnr(crop, q95) - psnr(crop, q30) > 3


def test_resize_keeps_shape_and_smaller_factor_loses_more(crop):
    odd = crop[:, :61]
    assert robustness.rescale(odd, 0.5).shape == odd.shape
    assert psnr(crop, robustness.rescale(crop, 0.5)) < psnr(crop, robustness.rescale(crop, 0.75)) < 100


def test_blur_lowers_high_frequency_energy(crop):
    assert high_frequency_energy(robustness.blur(crop, 1.0)) < 0.5 * high_frequency_energy(crop)


def test_flip_mirrors_left_right(crop):
    flipped = robustness.hflip(crop)
    np.testing.assert_array_equal(flipped[:, 0], crop[:, -1])
    np.testing.assert_array_equal(robustness.hflip(flipped), crop)


def test_sweep_writes_table_and_plot_and_clean_matches_evaluate(tiny_run, tiny_records, tmp_path, capsys):
    out = tmp_path / "robust"
    assert main(["robustness", str(tiny_run), str(tiny_records), "--out", str(out)]) == 0
    table = pd.read_csv(out / "robustness.csv")
    assert list(table["condition"]) == list(robustness.CONDITIONS)
    assert (out / "robustness.png").is_file()
    assert (table["images"] == 32).all()
    loaded = artifacts.load_model(tiny_run)
    y, scores, _ = evaluate.score_dataset(loaded, tiny_records, "test", progress=False)
    clean = evaluate.compute_metrics(y, scores, loaded.threshold)
    row = table.set_index("condition").loc["clean"]
    assert row["accuracy"] == pytest.approx(clean["accuracy"])
    assert row["roc_auc"] == pytest.approx(clean["roc_auc"])
    printed = capsys.readouterr().out
    assert "jpeg_q30" in printed and "hflip" in printed
