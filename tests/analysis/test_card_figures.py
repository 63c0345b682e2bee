"""The model card shows no empty figure: a ROC curve of one class, or a gallery of mistakes that
were never made, is left out with one line saying why."""

from __future__ import annotations

import json
import shutil

import pytest

from fakeface_tf.analysis import card, evaluate

FIGURES = ("roc_curve", "score_histograms", "worst_false_positives", "worst_false_negatives")


def _model_with_evaluation(tiny_keras_model, folder, labels, scores):
    """A bare model with one evaluation of (labels, scores) at threshold 0.5 beside it."""
    shutil.copy(tiny_keras_model, folder / "model.keras")
    metrics = evaluate.compute_metrics(labels, scores, 0.5)
    metrics.update(split="all", files={name: f"{name}.png" for name in FIGURES})
    (folder / "eval-extra").mkdir()
    (folder / "eval-extra" / "metrics.json").write_text(json.dumps(metrics))
    for name in FIGURES:
        (folder / "eval-extra" / f"{name}.png").write_bytes(b"png")
    return card.write_card(folder).read_text()


def test_fakes_only_evaluation_leaves_out_roc_and_false_positives_saying_why(tiny_keras_model, tmp_path):
    text = _model_with_evaluation(tiny_keras_model, tmp_path, [1, 1, 1, 1], [0.9, 0.8, 0.3, 0.7])
    assert "![roc_curve]" not in text and "- roc curve left out: only one class present" in text
    assert "![worst_false_positives]" not in text
    assert "- worst false positives left out: no real face was called fake" in text
    assert "![score_histograms](eval-extra/score_histograms.png)" in text
    assert "![worst_false_negatives](eval-extra/worst_false_negatives.png)" in text


@pytest.mark.parametrize("labels, scores, gallery", [
    ([1, 1, 0, 0], [0.9, 0.3, 0.1, 0.2], "worst_false_positives"),  # no real face called fake
    ([1, 1, 0, 0], [0.9, 0.8, 0.7, 0.2], "worst_false_negatives"),  # no fake face called real
])
def test_gallery_of_a_mistake_never_made_is_left_out(tiny_keras_model, tmp_path, labels, scores, gallery):
    text = _model_with_evaluation(tiny_keras_model, tmp_path, labels, scores)
    assert f"![{gallery}]" not in text and f"- {gallery.replace('_', ' ')} left out: no " in text
    shown = [name for name in FIGURES if name != gallery]
    assert all(f"![{name}](eval-extra/{name}.png)" in text for name in shown)
