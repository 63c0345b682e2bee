"""MODEL_CARD.md gathers every artefact beside a model, and copes when they are missing."""

import json
import shutil

import pytest
import yaml

from fakeface_tf.analysis import card, evaluate
from fakeface_tf.cli import main
from fakeface_tf.models import artifacts
from fakeface_tf.models.uncertainty import Band, write_band


def _add_artefacts(run, tmp_path):
    """Hand-made outputs of preprocess, evaluate, robustness and fairness beside `run`."""
    records = tmp_path / "records"
    records.mkdir()
    (records / "preprocess.json").write_text(json.dumps({
        "settings": {"src": "/data/faces", "layout": "real/ + fake/, hash split",
                     "face": {"min_face": 31, "min_confidence": 0.93}},
        "status": {"ok": 40, "no_face": 3},
        "counts": {"train": {"real": {"ok": 17, "no_face": 2}, "fake": {"ok": 19, "no_face": 1}},
                   "test": {"real": {"ok": 2}, "fake": {"ok": 2}}},
        "warnings": ["test is tiny"]}))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["path"] = str(records)
    (run / "config.yaml").write_text(yaml.safe_dump(config))

    metrics = evaluate.compute_metrics([1, 1, 0, 0, 0], [0.9, 0.2, 0.6, 0.1, 0.3], 0.37)
    metrics.update(split="test", rejected={"count": 4}, files={})
    (run / "eval-faces-test").mkdir()
    (run / "eval-faces-test" / "metrics.json").write_text(json.dumps(metrics))
    artifacts.save_threshold(run, 0.37, "accuracy", {"data": "faces", "split": "valid"})
    (run / "robustness-faces-test").mkdir()
    (run / "robustness-faces-test" / "robustness.csv").write_text(
        "condition,accuracy,roc_auc\nclean,0.9,0.95\njpeg_q30,0.61,\n")
    (run / "fairness").mkdir()
    (run / "fairness" / "fairness.json").write_text(json.dumps({
        "rows": 120, "part": "test", "threshold": 0.37, "flags": ["FPR of Black faces is high"],
        "groups": [{"attribute": "race", "group": "Black", "n": 30, "fpr": 0.2, "accuracy": 0.8},
                   {"attribute": "race x gender", "group": "Black x Male", "n": 15, "fpr": 0.3}]}))


@pytest.mark.slow
def test_card_gathers_every_artefact(tiny_run_copy, tmp_path):
    _add_artefacts(tiny_run_copy, tmp_path)
    path = card.write_card(tiny_run_copy)
    assert path == tiny_run_copy / card.CARD
    text = path.read_text()
    assert "| train | fake | 19 | 1 |" in text  # counts from preprocess.json
    assert "Minimum face: 31 px" in text
    assert "name: baseline" in text  # training recipe from config.yaml
    assert "eval-faces-test" in text and "| predicted fake | 1 | 1 |" in text
    assert "0.370, chosen by accuracy" in text
    assert "| jpeg_q30 | 0.610 | unavailable |" in text
    assert "accuracy falls from 0.900 (clean) to 0.610 under jpeg_q30" in text
    assert "FPR of Black faces is high" in text and "| race | Black | 30 |" in text
    assert "Black x Male" not in text  # intersections stay in the fairness report


def test_card_for_a_bare_model_says_what_is_missing(tiny_keras_model, tmp_path):
    model = shutil.copy(tiny_keras_model, tmp_path / "model.keras")
    (tmp_path / "fairness").mkdir()
    (tmp_path / "fairness" / "fairness.json").write_text("{not json")
    assert main(["card", str(model)]) == 0 and not (tmp_path / card.CARD).exists()  # printed only
    assert main(["card", str(model), "--write"]) == 0
    text = (tmp_path / card.CARD).read_text()
    for missing in ("No config.yaml", "No evaluation yet", "No robustness sweep yet",
                    "No fairness report", "0.5 (default"):
        assert missing in text, missing


def test_card_states_the_bands_guarantee_its_condition_and_its_measured_coverage(tiny_run_copy):
    write_band(tiny_run_copy, Band(low=0.2, high=0.8, alpha=0.05, n_calibration=277,
                                   source="records [valid]"))
    metrics = evaluate.compute_metrics([1, 0, 1], [0.9, 0.1, 0.5], 0.5)
    metrics.update(split="test", data="records", coverage=2 / 3, decided_accuracy=1.0, uncertain=1)
    (tiny_run_copy / "eval-records-test").mkdir()
    (tiny_run_copy / "eval-records-test" / "metrics.json").write_text(json.dumps(metrics))
    text = card.write_card(tiny_run_copy).read_text()
    assert ("On faces like the calibration faces (records [valid], 277 faces), the set of verdicts "
            "it gives contains the right one at least 95% of the time; P(fake) between 0.200 and "
            "0.800 is reported as uncertain.") in text
    assert ("test split of records: coverage 0.667 (share given a verdict), accuracy on decided "
            "faces 1.000, 1 uncertain.") in text


def test_card_without_a_band_has_no_uncertain_section(tiny_run_copy):
    assert "## Uncertain verdicts" not in card.write_card(tiny_run_copy).read_text()


def test_card_for_a_missing_model_exits_2(tmp_path, capsys):
    assert main(["card", str(tmp_path / "nope")]) == 2
    assert "model not found" in capsys.readouterr().err


def test_card_describes_the_cut_the_model_was_trained_on(tiny_run_copy):
    cut = tiny_run_copy / "face_cut.json"  # the cut saved with the model, not the config, rules
    assert "the eye line is levelled" in card.write_card(tiny_run_copy).read_text()
    cut.write_text(json.dumps({**json.loads(cut.read_text()), "level": False}))
    assert "the face is not rotated" in card.write_card(tiny_run_copy).read_text()
    cut.write_text(json.dumps({**json.loads(cut.read_text()), "view": "image"}))
    text = card.write_card(tiny_run_copy).read_text()
    assert "the photo's largest square around the face" in text
    assert "The model sees the square of the photo around the face" in text


def test_card_shows_the_learning_curve_and_the_licences_beside_the_model(tiny_run_copy):
    (tiny_run_copy / "learning_curve.csv").write_text(
        "run,train_fraction,train_faces,accuracy,roc_auc,threshold,test_faces\n"
        "a,0.5,32,0.75,0.8,0.5,32\nb,1.0,64,0.875,0.9,0.5,32\n")
    text = card.write_card(tiny_run_copy).read_text()
    section = text.split("## Learning curve")[1].split("\n## ")[0]
    assert "| 0.500 | 32 | 0.750 | 0.800 |" in section and "| 1.000 | 64 | 0.875 | 0.900 |" in section
    assert "## Licences" in text and "non-commercial" in text
    assert "FaceRes" not in text  # the backbone's terms only for a FaceRes model


def test_card_names_the_wall_time_data_hash_and_commit_of_the_run(tiny_run_copy):
    from fakeface_tf.data.records import records_hash

    env = json.loads((tiny_run_copy / "env.json").read_text())
    metrics = json.loads((tiny_run_copy / "metrics.json").read_text())
    text = card.write_card(tiny_run_copy).read_text()
    assert env["data"]["hash"] == records_hash(env["data"]["path"]) is not None
    assert f"content hash {env['data']['hash']}" in text
    assert f"git commit {env['git']['commit'] or '?'}" in text
    assert f"Training wall time {round(metrics['train_seconds'])} s" in text


@pytest.mark.parametrize("blocks, words", [(0, "all 13 blocks frozen (only the head trained)"),
                                           (4, "its last 4 of 13 blocks fine-tuned"),
                                           (14, "all 13 blocks and the stem fine-tuned")])
def test_card_says_which_backbone_blocks_trained(blocks, words):
    assert card._trained_blocks(blocks) == words
