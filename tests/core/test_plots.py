"""Every shared figure writes a PNG of its stated size with labelled axes, and a figure that
needs data it lacks (one class, no epochs, no crops) says so instead of failing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from fakeface_tf.core import plots

Y = np.array([0, 0, 0, 1, 1, 1])
S = np.array([0.1, 0.4, 0.7, 0.35, 0.8, 0.9])  # ROC-AUC 7/9 = 0.778; AP (1 + 1 + 3/5) / 3 = 0.867
HISTORY = pd.DataFrame({"epoch": [0, 1, 2], "loss": [0.7, 0.5, 0.4], "auc": [0.6, 0.8, 0.85],
                        "val_loss": [0.72, 0.6, 0.55], "val_auc": [0.55, 0.75, 0.8],
                        "learning_rate": [1e-3, 1e-3, 5e-4]})
GROUPS = pd.DataFrame({"group": ["Female", "Male"], "n": [10, 12],
                       "fpr": [0.3, 0.1], "fpr_lo": [0.1, 0.0], "fpr_hi": [0.5, 0.25],
                       "fnr": [np.nan, np.nan], "fnr_lo": [np.nan, np.nan], "fnr_hi": [np.nan, np.nan]})
CURVE = pd.DataFrame({"train_faces": [32, 64], "train_fraction": [0.5, 1.0],
                      "accuracy": [0.75, 0.875], "roc_auc": [0.8, 0.9]})
CROPS = [np.full((8, 8, 1), 40 * i, np.uint8) for i in range(3)]


@pytest.fixture
def drawn(monkeypatch) -> list[Figure]:
    """The Figures the plots module builds, kept for a look at their axes and texts."""
    figures = []

    class Kept(Figure):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            figures.append(self)

    monkeypatch.setattr(plots, "Figure", Kept)
    return figures


def texts(figure: Figure) -> list[str]:
    """Every piece of text drawn in the figure: titles, labels, annotations, legend entries."""
    return [t.get_text() for t in figure.findobj(lambda artist: hasattr(artist, "get_text"))
            if t.get_text()]


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


# name -> (draw into path, (width, height) in pixels: figure size in inches x dpi)
FIGURES = {
    "confusion_matrix": (lambda p: plots.confusion_matrix([[5, 1], [2, 7]], p), (462, 418)),
    "roc_curve": (lambda p: plots.roc_curve(Y, S, p), (495, 462)),
    "pr_curve": (lambda p: plots.pr_curve(Y, S, p), (495, 462)),
    "reliability_diagram": (lambda p: plots.reliability_diagram(Y, S, p), (495, 572)),
    "score_histograms": (lambda p: plots.score_histograms(Y, S, p, threshold=0.5), (605, 418)),
    "learning_curves": (lambda p: plots.learning_curves(HISTORY, p), (880, 407)),
    "image_gallery": (lambda p: plots.image_gallery(CROPS, ["a", "b", "c"], p, "crops"), (691, 345)),
    "condition_bars": (lambda p: plots.condition_bars(
        pd.DataFrame({"condition": ["clean", "blur"], "accuracy": [0.9, 0.7], "roc_auc": [0.95, None]}),
        p), (660, 440)),
    "data_curve": (lambda p: plots.data_curve(CURVE, p), (660, 440)),
    "explanation": (lambda p: plots.explanation(np.zeros((20, 40, 3), np.uint8), np.zeros((20, 40)),
                                                 p, "fake face"), (704, 352)),
    "group_rates": (lambda p: plots.group_rates(GROUPS, "gender", p), (720, 432)),
    "cell_heatmap": (lambda p: plots.cell_heatmap(
        pd.DataFrame([[0.2, np.nan]], index=["Black"], columns=["Female", "Male"]),
        pd.DataFrame([[5, 0]], index=["Black"], columns=["Female", "Male"]), "FPR", p), (636, 240)),
    "run_curves": (lambda p: plots.run_curves({"a": HISTORY, "b": HISTORY}, p), (1440, 540)),
    "risk_coverage": (lambda p: plots.risk_coverage([0.5, 1.0], [1.0, 0.75], p, (0.5, 1.0)),
                      (550, 462)),
}


@pytest.mark.parametrize("name", FIGURES)
def test_each_figure_writes_a_png_of_its_stated_size(name, tmp_path):
    draw, size = FIGURES[name]
    path = draw(tmp_path / "sub" / f"{name}.png")  # missing folders are made
    assert path == tmp_path / "sub" / f"{name}.png" and path.stat().st_size > 1000
    assert png_size(path) == size


def test_roc_and_pr_curves_label_their_axes_and_state_the_measured_area(drawn, tmp_path):
    plots.roc_curve(Y, S, tmp_path / "roc.png")
    plots.pr_curve(Y, S, tmp_path / "pr.png")
    (roc,), (pr,) = drawn[0].axes, drawn[1].axes
    assert roc.get_xlabel() == "false positive rate (real called fake)"
    assert roc.get_ylabel() == "true positive rate (fake caught)"
    assert [t.get_text() for t in roc.get_legend().get_texts()] == ["AUC = 0.778", "chance"]
    assert (pr.get_xlabel(), pr.get_ylabel()) == ("recall (fake caught)",
                                                  "precision (called fake and is fake)")
    assert pr.get_legend().get_texts()[0].get_text() == "AP = 0.867"


@pytest.mark.parametrize("label", [0, 1], ids=["only-real", "only-fake"])
def test_one_class_curves_say_unavailable_instead_of_failing(label, drawn, tmp_path):
    y = np.full(4, label)
    for draw, what in ((plots.roc_curve, "ROC"), (plots.pr_curve, "precision-recall")):
        path = draw(y, [0.2, 0.4, 0.6, 0.8], tmp_path / f"{what}.png")
        assert png_size(path) == (495, 462)
        assert f"{what} unavailable: only one class present" in texts(drawn[-1])
        assert not drawn[-1].axes[0].lines  # no curve drawn


def test_confusion_matrix_puts_each_count_in_its_cell(drawn, tmp_path):
    plots.confusion_matrix([[5, 1], [2, 7]], tmp_path / "cm.png")
    ax = drawn[0].axes[0]
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert cells == {(0, 0): "5", (0, 1): "1", (1, 0): "2", (1, 1): "7"}
    assert [t.get_text() for t in ax.get_xticklabels()] == ["actual fake", "actual real"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["predicted fake", "predicted real"]


def test_score_histograms_count_each_class_and_mark_the_threshold(drawn, tmp_path):
    plots.score_histograms(Y, S, tmp_path / "hist.png", threshold=0.4)
    ax = drawn[0].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "real (n=3)", "fake (n=3)", "threshold 0.400"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted P(fake)", "images")


def test_reliability_diagram_labels_both_panels(drawn, tmp_path):
    plots.reliability_diagram(Y, S, tmp_path / "rel.png")
    top, bottom = drawn[0].axes
    assert top.get_ylabel() == "fraction actually fake" and top.get_title() == "Reliability diagram"
    assert (bottom.get_xlabel(), bottom.get_ylabel()) == ("predicted P(fake)", "images")


def test_learning_curves_draw_one_panel_per_metric_with_train_and_validation(drawn, tmp_path):
    plots.learning_curves(HISTORY, tmp_path / "curves.png")
    shown = [ax for ax in drawn[0].axes if ax.axison]
    assert [ax.get_title() for ax in shown] == ["loss", "auc"]  # not the learning rate
    assert all(len(ax.lines) == 2 and ax.get_xlabel() == "epoch" for ax in shown)
    np.testing.assert_array_equal(shown[0].lines[0].get_xdata(), [1, 2, 3])  # epochs from 1


def test_learning_curves_of_an_empty_history_say_so(drawn, tmp_path):
    empty = tmp_path / "history.csv"
    empty.write_text("")
    assert png_size(plots.learning_curves(empty, tmp_path / "curves.png")) == (440, 407)
    assert "no epochs recorded in the history" in texts(drawn[0])


def test_an_empty_gallery_says_none(drawn, tmp_path):
    path = plots.image_gallery([], [], tmp_path / "gallery.png", "Worst false positives")
    assert png_size(path) == (576, 345)
    assert {"none", "Worst false positives"} <= set(texts(drawn[0]))


def test_explanation_stands_alone_with_its_verdict_and_colour_key(drawn, tmp_path):
    plots.explanation(np.zeros((20, 40, 3), np.uint8), np.zeros((20, 40)), tmp_path / "why.png",
                      "fake face (P(fake) 0.91)")
    image, key = drawn[0].axes
    assert image.get_title() == "fake face (P(fake) 0.91)"
    assert key.get_ylabel() == "weight in the verdict (0 = none, 1 = most)"


def test_group_rates_leave_out_a_rate_no_group_has(drawn, tmp_path):
    plots.group_rates(GROUPS, "gender", tmp_path / "rates.png")
    ax = drawn[0].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["FPR (real called fake)"]
    assert "FNR not measurable: no such faces" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Female\nn=10", "Male\nn=12"]
    assert ax.get_ylim()[1] == pytest.approx(0.5 * 1.3)  # fits the highest whisker


def test_cell_heatmap_labels_each_cell_with_its_value_and_n(drawn, tmp_path):
    grid = pd.DataFrame([[0.2, np.nan]], index=["Black"], columns=["Female", "Male"])
    counts = pd.DataFrame([[5, 0]], index=["Black"], columns=["Female", "Male"])
    plots.cell_heatmap(grid, counts, "FPR by race x gender", tmp_path / "heat.png")
    ax = drawn[0].axes[0]
    assert [t.get_text() for t in ax.texts] == ["0.20\nn=5", "n/a\nn=0"]
    assert ax.get_title() == "FPR by race x gender"


def test_data_curve_annotates_each_point_on_a_log_axis(drawn, tmp_path):
    plots.data_curve(CURVE, tmp_path / "curve.png")
    ax = drawn[0].axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.texts] == ["0.800", "0.900", "0.750", "0.875"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["32\n(50%)", "64\n(100%)"]


def test_run_curves_draw_each_run_on_both_panels(drawn, tmp_path):
    plots.run_curves({"a": HISTORY, "b": HISTORY}, tmp_path / "runs.png")
    loss, auc = drawn[0].axes
    assert len(loss.lines) == 4 and len(auc.lines) == 2  # training dashed + validation per run
    assert [t.get_text() for t in auc.get_legend().get_texts()] == ["a", "b"]
    assert (auc.get_xlabel(), auc.get_ylabel()) == ("epoch", "validation AUC")


def test_risk_coverage_labels_its_axes_and_marks_the_band_and_full_coverage(drawn, tmp_path):
    plots.risk_coverage([0.25, 0.5, 0.75, 1.0], [1.0, 1.0, 2 / 3, 0.5], tmp_path / "rc.png",
                        band_point=(0.75, 2 / 3))
    ax = drawn[0].axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("coverage (share of faces given a verdict)",
                                                  "accuracy on the decided faces")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "abstain on the least sure", "all decided: 0.500",
        "uncertain band: coverage 0.750, accuracy 0.667"]
    plots.risk_coverage([0.5, 1.0], [1.0, 0.75], tmp_path / "plain.png")
    assert len(drawn[1].axes[0].get_legend().get_texts()) == 2  # no band, no point


def test_the_auc_axis_starts_at_chance_so_small_gaps_look_small():
    assert plots.auc_axis([0.9453, 0.9486]) == (0.5, 1.0)
    assert plots.auc_axis([0.42, 0.9]) == (0.4, 1.0)  # below chance: the axis follows
