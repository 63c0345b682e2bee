"""The score bar of the explanation PNGs: P(fake) in words a person reads right, a bar on a
log-odds axis so 0.2 % shows, and the threshold marked and labelled."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from PIL import Image

from fakeface_tf.core import plots


@pytest.mark.parametrize("probability, text", [(0.0004, "< 0.1%"), (0.002, "0.2%"), (0.5, "50.0%"),
                                               (0.998, "99.8%"), (0.9996, "> 99.9%")])
def test_probability_text_never_rounds_to_zero_or_certainty(probability, text):
    assert plots.probability_text(probability) == text


def _drawn(probability: float, threshold: float, band=None):
    ax = Figure().subplots()
    plots.score_bar(ax, probability, threshold, band)
    return ax


def _axes_x(ax, value: float) -> float:
    """Where `value` lies across the axes, 0 (left) to 1 (right)."""
    return ax.transAxes.inverted().transform(ax.transData.transform((value, 0)))[0]


@pytest.mark.parametrize("probability", [0.002, 0.5, 0.998])
def test_bar_ends_at_the_probabilitys_log_odds_and_says_it(probability):
    ax = _drawn(probability, 0.6)
    (bar,) = ax.patches
    end = math.log(999)  # log-odds of the axis' right end, 99.9 %
    expected = (math.log(probability / (1 - probability)) + end) / (2 * end)
    assert _axes_x(ax, bar.get_x()) == pytest.approx(0.0, abs=1e-6)
    assert _axes_x(ax, bar.get_x() + bar.get_width()) == pytest.approx(expected, abs=1e-3)
    texts = [t.get_text() for t in ax.texts]
    assert f" P(fake) {100 * probability:.1f}% " in texts and "threshold 60.0%" in texts
    colour = "tab:red" if probability >= 0.6 else "tab:blue"  # the side of the threshold
    assert bar.get_facecolor()[:3] == pytest.approx(to_rgb(colour))


def test_threshold_line_and_band_sit_at_their_values():
    ax = _drawn(0.5, 0.6, band=(0.4, 0.7))
    line = ax.lines[0]
    assert line.get_xdata()[0] == pytest.approx(0.6)
    band = [p for p in ax.patches if p.get_hatch()]
    assert len(band) == 1
    assert ax.patches[0].get_facecolor()[:3] == pytest.approx(to_rgb("tab:orange"))  # uncertain


def test_explanation_png_is_taller_with_its_score_bar(tmp_path):
    image, heat = np.zeros((40, 40, 3), np.uint8), np.zeros((40, 40))
    plain = plots.explanation(image, heat, tmp_path / "plain.png", "t")
    scored = plots.explanation(image, heat, tmp_path / "scored.png", "t", probability=0.002, threshold=0.6)
    assert Image.open(scored).height > Image.open(plain).height
