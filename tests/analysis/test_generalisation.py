"""Recall on other generators: fakes-only class folders can be evaluated, and the model card's
"Other generators" table counts every fake (called fake, real, uncertain, no face) per source."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from fakeface_tf.analysis import card, evaluate, generalisation
from fakeface_tf.analysis.scoring import data_source
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.models.uncertainty import Band, write_band


def _eval_folder(root: Path, name: str, scores: pd.DataFrame, counts: dict, rejected=()):
    """A hand-made evaluation beside a model: scores.csv and the metrics.json fields read."""
    folder = root / name
    folder.mkdir()
    scores.to_csv(folder / evaluate.SCORES_FILE, index=False)
    (folder / "metrics.json").write_text(json.dumps(
        {"counts": counts, "rejected": {"count": len(rejected), "files": list(rejected)}}))


def _scores(names, verdicts):
    return pd.DataFrame({"path": [f"/data/fake/{n}" for n in names], "label": 1,
                         "score": 0.5, "predicted": [int(v == "fake") for v in verdicts],
                         "verdict": verdicts})


@pytest.fixture
def model_root(tmp_path) -> Path:
    """Two fakes-only evaluations (one mixing two sources, one with a face MTCNN missed and a
    non-image file) and a two-class one that must not count."""
    _eval_folder(tmp_path, "eval-extra", _scores(
        ["tpdneb_1.jpg", "tpdneb_2.jpg", "tpdneb_3.jpg", "tpdnej_1.jpg"],
        ["fake", "real", "uncertain", "fake"]), {"real": 0, "fake": 4})
    _eval_folder(tmp_path, "eval-pairs_fake", _scores(
        ["akpair_a_psp.jpg", "akpair_b_psp.jpg"], ["real", "real"]), {"real": 0, "fake": 2},
        [{"path": "/data/fake/akpair_c_psp.jpg", "label": 1, "status": "no_face"},
         {"path": "/data/fake/notes.txt", "label": 1, "status": "skipped"}])
    _eval_folder(tmp_path, "eval-records-test", _scores(["zoya_1.jpg"], ["fake"]),
                 {"real": 3, "fake": 1})
    return tmp_path


def test_table_counts_each_source_and_generator_apart(model_root):
    table = generalisation.generalisation_table(model_root).set_index("source")
    assert list(table.index) == ["eval-extra: tpdneb_*", "eval-extra: tpdnej_*", "eval-extra: all",
                                 "eval-pairs_fake: akpair_*"]
    row = table.loc["eval-extra: tpdneb_*"]
    assert row["generator"] == "StyleGAN2 (thispersondoesnotexist.com)"
    assert (row["faces scored"], row["no face"]) == (3, 0)
    assert row["called fake (recall)"] == "1 (0.333, 95% CI 0.061-0.792)"
    assert (row["called real"], row["uncertain"]) == ("1 (0.333)", "1 (0.333)")
    assert table.loc["eval-extra: all", "called fake (recall)"].startswith("2 (0.500")


def test_every_psp_fake_called_real_is_a_miss_and_a_missed_face_is_counted_apart(model_root):
    row = generalisation.generalisation_table(model_root).set_index("source").loc[
        "eval-pairs_fake: akpair_*"]
    assert "pSp" in row["generator"]
    assert (row["faces scored"], row["no face"]) == (2, 1)  # notes.txt is no face to miss
    assert row["called fake (recall)"].startswith("0 (0.000")
    assert (row["called real"], row["uncertain"]) == ("2 (1.000)", "0 (0.000)")


def test_an_evaluation_without_a_band_says_so_instead_of_counting_zero(tmp_path):
    scores = _scores(["tpdneb_1.jpg", "tpdneb_2.jpg"], ["fake", "real"]).drop(columns="verdict")
    _eval_folder(tmp_path, "eval-extra", scores, {"real": 0, "fake": 2})
    row = generalisation.generalisation_table(tmp_path).iloc[0]
    assert row["called fake (recall)"].startswith("1 (0.500") and row["uncertain"] == "no band"


def test_no_fakes_only_evaluation_gives_an_empty_table(tmp_path):
    _eval_folder(tmp_path, "eval-records-test", _scores(["zoya_1.jpg"], ["fake"]),
                 {"real": 3, "fake": 1})
    (tmp_path / "eval-broken").mkdir()
    (tmp_path / "eval-broken" / "metrics.json").write_text("{not json")
    assert generalisation.generalisation_table(tmp_path).empty


def test_card_shows_the_table_after_the_evaluations(tiny_keras_model, model_root):
    model = shutil.copy(tiny_keras_model, model_root / "model.keras")
    text = card.write_card(model).read_text()
    assert "## Other generators" in text
    assert text.index("## Evaluation") < text.index("## Other generators")
    assert "| eval-pairs_fake: akpair_* |" in text and "| 2 (1.000) |" in text


def test_a_folder_named_fake_is_one_class_of_images(tmp_path):
    folder = tmp_path / "pairs" / "fake"
    folder.mkdir(parents=True)
    assert data_source(folder) == ("images", folder)
    other = tmp_path / "pairs" / "misc"
    other.mkdir()
    with pytest.raises(FakefaceError, match="folder named real/ or fake/"):
        data_source(other)


@pytest.mark.slow
def test_evaluate_scores_a_fakes_only_class_folder(tiny_keras_model, sample_root, tmp_path):
    folder = tmp_path / "fake"
    folder.mkdir()
    for path in sorted((sample_root / "pairs" / "fake").glob("*.jpg"))[:2]:
        shutil.copy(path, folder)
    shutil.copy(sorted((sample_root / "nonface").glob("*.jpg"))[0], folder / "zz_nonface.jpg")
    (tmp_path / "model").mkdir()
    model = shutil.copy(tiny_keras_model, tmp_path / "model" / "model.keras")
    write_band(tmp_path / "model", Band(low=0.4, high=0.6, alpha=0.05, n_calibration=10))
    metrics = evaluate.evaluate(model, folder, out=tmp_path / "out", threshold=0.5,
                                progress=False)
    assert metrics["counts"] == {**metrics["counts"], "total": 2, "real": 0, "fake": 2}
    assert metrics["split"] == "all" and metrics["roc_auc"] is None
    assert metrics["rejected"]["by_status"] == {"no_face": 1}
    scores = pd.read_csv(tmp_path / "out" / evaluate.SCORES_FILE)
    assert (scores["label"] == 1).all() and set(scores["verdict"]) <= {"real", "fake", "uncertain"}
