"""In-distribution fairness: only held-out records are scored, groups come from the attributes
file (reals) or the estimators (fakes), and what was dropped is counted."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from fakeface_tf.analysis import fairness, fairness_indist, fairness_indist_output, group_estimators
from fakeface_tf.analysis.fairness_metrics import group_metrics
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.run_folder import FAIRNESS_INDIST_DIR, FAIRNESS_INDIST_FILE, FPR_GROUPS_FILE
from fakeface_tf.data import records

SIZE = 16
# (file under src, split, label); the attributes name every real below plus one outside
FACES = [("real/r_train_0.jpg", "train", "real"), ("real/r_train_1.jpg", "train", "real"),
         ("real/r_valid_0.jpg", "valid", "real"), ("real/r_test_0.jpg", "test", "real"),
         ("real/r_test_1.jpg", "test", "real"), ("fake/f_train_0.jpg", "train", "fake"),
         ("fake/f_valid_0.jpg", "valid", "fake"), ("fake/f_test_0.jpg", "test", "fake")]
ATTRIBUTES = {"r_train_0": ("70+", "Female"), "r_train_1": ("0-2", "Male"),
              "r_valid_0": ("20-29", "Female"), "r_test_0": ("20-29", "Male"),
              "r_test_1": ("50-59", "Female"), "elsewhere": ("30-39", "Male")}


def _records(folder, src):
    """A records folder with one shard per split, its manifest.csv and preprocess.json."""
    folder.mkdir()
    for split in records.SPLITS:
        rows = [(i, f, lab) for i, (f, s, lab) in enumerate(FACES) if s == split]
        examples = (records.serialize(np.full((SIZE, SIZE, 3), 10 * i, np.uint8),
                                      records.LABELS[lab], path=f, split=split)
                    for i, f, lab in rows)
        records.write(folder / records.shard_name(split, 0, 1), examples)
    manifest = pd.DataFrame([{"path": f, "split": s, "label": lab, "status": "ok"}
                             for f, s, lab in FACES])
    manifest.to_csv(folder / "manifest.csv", index=False)
    (folder / records.SUMMARY_FILE).write_text(json.dumps({"settings": {"src": str(src)}}))
    return folder


def _model(folder, records_dir):
    """A tiny RGB model whose P(fake) is the image's mean / 255, with its config."""
    import keras

    from fakeface_tf.core.config import Config, apply_overrides

    inputs = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    mean = keras.layers.Dense(1, use_bias=False, name="mean")
    model = keras.Model(inputs, mean(pooled))
    mean.set_weights([np.full((3, 1), 1 / 3, np.float32)])
    folder.mkdir()
    model.save(folder / "model.keras")
    apply_overrides(Config(name="tiny"), [f"data.path={records_dir}", f"data.image_size={SIZE}",
                                          "data.color=rgb"]).save(folder / "config.yaml")
    return folder


class _Stub:
    """An estimator that calls every face Female, age 0-20, race Black."""

    def __init__(self):
        self.seen = 0

    def __call__(self, images):
        self.seen += len(images)
        return pd.DataFrame({"age": ["0-20"] * len(images), "gender": ["Female"] * len(images),
                             "race": ["Black"] * len(images)})


@pytest.fixture
def setup(tmp_path, monkeypatch):
    root = tmp_path / "data"
    src = root / "faces"
    src.mkdir(parents=True)
    attributes = pd.DataFrame([{"file": f"faces/real/{k}.jpg", "age": a, "gender": g,
                                "race": "unknown", "label": "real", "age_estimate": "25"}
                               for k, (a, g) in ATTRIBUTES.items()])
    attributes.to_csv(src / "attributes.csv", index=False)
    rec = _records(tmp_path / "records", src)
    model = _model(tmp_path / "model", rec)
    stub = _Stub()
    estimator = group_estimators.Estimator("stub", "a stub", stub, ("age", "gender", "race"),
                                           ("0-20",), lambda years: "0-20")
    monkeypatch.setattr(group_estimators, "load_estimators", lambda names: {"stub": estimator})
    monkeypatch.setenv("FAKEFACE_DATA", str(root))
    return {"root": root, "model": model, "attributes": src / "attributes.csv", "stub": stub,
            "out": model / FAIRNESS_INDIST_DIR}


def _assess(setup, **options):
    return fairness_indist.assess(setup["model"], out=setup["out"], attributes=setup["attributes"],
                                  extra_fakes=None, utkface=None, threshold=0.5, progress=False,
                                  **options)


@pytest.mark.slow
def test_training_faces_are_never_scored_and_the_dropped_rows_are_counted(setup, caplog):
    with caplog.at_level(logging.INFO):
        report = _assess(setup)
    scored = report["scores"]
    assert set(scored["split"]) == {"valid", "test"}
    assert not scored["path"].str.contains("train").any()
    assert setup["stub"].seen == 5  # 3 held-out reals + 2 held-out fakes, no training crop
    counts = report["counts"]
    assert (counts["in_training_split"], counts["not_in_records"], counts["held_out"]) == (2, 1, 3)
    assert "dropped 2 of the training split (never scored), 1 not in the records" in caplog.text
    written = json.loads((setup["out"] / FAIRNESS_INDIST_FILE).read_text())
    assert written["counts"]["in_training_split"] == 2


@pytest.mark.slow
def test_real_groups_come_from_the_attributes_file_and_fake_groups_from_the_estimator(setup):
    report = _assess(setup)
    fpr = pd.read_csv(setup["out"] / FPR_GROUPS_FILE)
    ages = dict(zip(fpr.loc[fpr["attribute"] == "age", "group"], fpr.loc[fpr["attribute"] == "age", "n"]))
    assert ages == {"20-29": 2, "50-59": 1}  # the held-out reals' rows; never 70+ or 0-2 (train)
    reals = report["scores"][report["scores"]["label"] == 0].set_index("path")
    assert reals.loc["real/r_test_1.jpg", ["age", "gender"]].tolist() == ["50-59", "Female"]
    fnr = report["fnr_groups"]
    assert fnr.loc[fnr["attribute"] == "race", "group"].tolist() == ["Black"]
    assert fnr.loc[fnr["attribute"] == "all", "n"].tolist() == [2]
    card = fairness_indist_output.card_section(setup["model"])
    assert "machine-estimated by the Microsoft Face API" in card and "| age | 50-59 | 1 | 0 |" in card
    assert "Held-out fakes; groups estimated by a stub" in card


def test_the_training_split_is_refused_as_a_split_to_score(setup):
    with pytest.raises(FakefaceError, match="never train"):
        _assess(setup, held_out=("valid", "train"))


def test_a_scored_record_assigned_to_training_in_the_manifest_is_refused(tmp_path):
    splits = pd.DataFrame({"path": ["a.jpg", "b.jpg"], "split": ["train", "valid"]})
    scored = pd.DataFrame({"path": ["b.jpg", "a.jpg"]})
    with pytest.raises(FakefaceError, match="1 scored faces are in the train split"):
        fairness_indist._never_trained_on(scored, splits, tmp_path, ("valid", "test"))


def test_an_attributes_file_without_a_gender_column_is_named(tmp_path):
    csv = tmp_path / "a.csv"
    csv.write_text("file,age\nx.jpg,20-29\n")
    with pytest.raises(FakefaceError, match=r"a.csv: line 1 \(header\): missing column\(s\) gender"):
        fairness_indist.load_attributes(csv, tmp_path)


def test_estimator_agreement_counts_only_faces_both_sides_know():
    reals = pd.DataFrame({"gender": ["Male", "Female", "unknown", "Male"],
                          "age_estimate": ["25", "70", "", "40"],
                          "x_gender": ["Male", "Male", "Female", "unknown"],
                          "x_age": ["21-25", "61+", "0-20", "31-40"]})
    from fakeface_tf.models import gear

    estimator = group_estimators.Estimator("x", "x", None, ("age", "gender"), gear.AGE_GROUPS,
                                           gear.age_group)
    check = group_estimators.face_api_check(reals, estimator)
    assert (check["gender"]["n"], check["gender"]["correct"]) == (2, 1)
    assert (check["age"]["n"], check["age"]["correct"]) == (3, 3)
    assert check["gender"]["confusion"] == [[1, 0], [1, 0]]


def test_the_utkface_report_says_what_it_measures_and_lists_no_face_rates_with_counts():
    labels = pd.Series(["real"] * 5)
    groups = pd.DataFrame({"age": ["0-2", "0-2", "0-2", "70+", "70+"],
                           "gender": ["Male"] * 5, "race": ["White"] * 5})
    table = group_metrics(np.zeros(5, int), np.array([0, np.nan, np.nan, 0, 1.0]), groups)
    assert "FPR on real photos of known (labelled) groups" in fairness.measures(labels)
    assert "FNR" not in fairness.measures(labels)
    lines = fairness.no_face_lines(table)
    assert any(line.split()[:4] == ["age", "0-2", "2/3", "0.667"] for line in lines)
    assert any(line.split()[:4] == ["age", "70+", "0/2", "0.000"] for line in lines)


def test_report_paths_are_named_from_the_data_root_never_the_machine(tmp_path):
    root = tmp_path / "data"
    assert fairness_indist._from_root(root / "faces_extra" / "fake" / "x.jpg", root) == "faces_extra/fake/x.jpg"
    assert fairness_indist._from_root("/elsewhere/labels.csv", root) == "/elsewhere/labels.csv"  # not under it


def test_group_estimators_see_a_face_crop_when_the_detector_sees_the_photo(sample_root):
    from fakeface_tf.data import faces, images

    photo = images.load_image(sample_root / "faces" / "real" / "zoya_00011.jpg")
    image_view = faces.FaceOptions(size=224, color="rgb", level=False, view="image")
    seen = faces.extract_face(photo, image_view).image
    face = faces.extract_face(photo, faces.FaceOptions(size=224, color="rgb", level=False)).image
    crops = group_estimators.face_crops(np.stack([seen, np.full_like(seen, 128)]), image_view)

    def apart(a, b):
        return np.abs(a.astype(float) - b).mean()

    assert apart(crops[0], face) < apart(seen, face) / 1.5  # measured 19.4 vs 36.7
    assert (crops[1] == 128).all()  # no face found: the detector's input as it is
    face_view = faces.FaceOptions(size=224, color="rgb", level=False)
    np.testing.assert_array_equal(group_estimators.face_crops(seen[None], face_view), seen[None])
