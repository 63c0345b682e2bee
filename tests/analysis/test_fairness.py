"""Fairness audit: group metrics on hand-computed tables, labels checking, the split, end to end."""

from __future__ import annotations

import json
import math
import shutil

import keras
import numpy as np
import pandas as pd
import pytest

from fakeface_tf.analysis import fairness, fairness_intervals, fairness_output
from fakeface_tf.cli import main
from fakeface_tf.core import config
from fakeface_tf.core.config import Config
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data import labelled
from fakeface_tf.data.faces import FaceOptions
from fakeface_tf.training.train import train

from conftest import tiny_config

# gender, race, age, truth (1 = fake), prediction (1 = called fake)
TOY = pd.DataFrame([
    ("Male", "White", "20-29", 0, 0),
    ("Male", "White", "20-29", 0, 0),
    ("Male", "Black", "20-29", 1, 0),
    ("Male", "Black", "70+", 1, 1),
    ("Female", "Black", "70+", 0, 1),
    ("Female", "Black", "70+", 0, 0),
    ("Female", "Asian", "0-2", 0, 0),
    ("Female", "Asian", "0-2", 1, 1),
], columns=["gender", "race", "age", "t", "p"])


def toy_report(toy=TOY):
    return fairness.fairness_report(toy["t"], toy["p"].astype(float), toy[["age", "gender", "race"]])


def row(table, attribute, group):
    found = table[(table["attribute"] == attribute) & (table["group"] == group)]
    assert len(found) == 1, (attribute, group)
    return found.iloc[0]


def comparison(report, name):
    return next(c for c in report["comparisons"] if c["name"] == name)


def test_group_rates_match_the_hand_computed_table():
    table = toy_report()["groups"]
    black = row(table, "race", "Black")  # truths 1,1,0,0 predictions 0,1,1,0
    assert (black.n, black.n_real, black.n_fake) == (4, 2, 2)
    assert black.accuracy == pytest.approx(0.5)
    assert black.fpr == pytest.approx(0.5) and black.fnr == pytest.approx(0.5)
    assert black.selection_rate == pytest.approx(0.5)
    female = row(table, "gender", "Female")  # truths 0,0,0,1 predictions 1,0,0,1
    assert female.fpr == pytest.approx(1 / 3) and female.fnr == pytest.approx(0.0)
    assert female.accuracy == pytest.approx(0.75)
    cell = row(table, "race x gender", "Black / Female")
    assert (cell.race, cell.gender, cell.n, cell.fpr) == ("Black", "Female", 2, pytest.approx(0.5))
    assert row(table, "all", "all").n == 8
    assert set(table["attribute"]) == {"all", "age", "gender", "race", "race x gender", "age x gender"}


def test_dir_and_aod_use_the_documented_orientation():
    report = toy_report()
    gender = comparison(report, "Female vs Male")
    assert (gender["unprivileged"], gender["privileged"]) == ("Female", "Male")
    # called real: Female 2/4, Male 3/4; FPR 1/3 vs 0; TPR 1 vs 1/2
    assert gender["dir"] == pytest.approx((2 / 4) / (3 / 4))
    assert gender["fpr_difference"] == pytest.approx(1 / 3)
    assert gender["aod"] == pytest.approx(0.5 * (1 / 3 + 1 / 2))
    old = comparison(report, "age 70+ vs others")  # 70+: called real 1/3; others 4/5
    assert old["dir"] == pytest.approx((1 / 3) / (4 / 5))
    assert old["aod"] == pytest.approx(0.5 * ((1 / 2 - 0) + (1 - 1 / 2)))
    assert gender["dir_ci"][1] > 1 and gender["flags"] == []  # 4 faces a side: nothing is clear

    swapped = TOY.assign(gender=TOY["gender"].map({"Male": "Female", "Female": "Male"}))
    mirrored = comparison(toy_report(swapped), "Female vs Male")
    assert mirrored["dir"] == pytest.approx((3 / 4) / (2 / 4))
    assert mirrored["aod"] == pytest.approx(-gender["aod"])


def test_every_comparison_is_named_unprivileged_first():
    for result in toy_report()["comparisons"]:
        first, second = result["name"].removeprefix("age ").split(" vs ")
        for named, side in ((first, result["unprivileged"]), (second, result["privileged"])):
            assert named == side or (named == "others" and side.startswith("not ")), result["name"]


def test_missing_group_makes_its_comparison_unavailable():
    assert comparison(toy_report(), "age 3-9 vs others")["unavailable"] == "no faces on one side"


def test_fnr_without_fakes_stays_unavailable():
    report = toy_report()
    white = row(report["groups"], "race", "White")  # two real faces, no fakes
    assert math.isnan(white.fnr) and math.isnan(white.fnr_lo) and math.isnan(white.fnr_hi)
    assert white.fpr == 0.0
    versus = comparison(report, "others vs White")
    assert math.isnan(versus["tpr_difference"]) and math.isnan(versus["aod"])
    assert versus["aod_fpr_half"] == pytest.approx(0.5 * (1 / 3 - 0))
    assert versus["equalized_odds"]["basis"].startswith("|FPR gap| only")
    assert report["equalized_odds"]["race"]["basis"].startswith("FPR gap only")
    cleaned = fairness_output._clean({"fnr": white.fnr, "aod_ci": versus["aod_ci"]})
    assert cleaned == {"fnr": None, "aod_ci": [None, None]}


def test_faces_not_found_are_counted_per_group_not_dropped():
    toy = TOY.assign(p=TOY["p"].astype(float))
    toy.loc[4, "p"] = np.nan  # the Female/Black real face that was called fake
    table = toy_report(toy)["groups"]
    female = row(table, "gender", "Female")
    assert (female.n, female.n_no_face, female.n_real) == (4, 1, 2)
    assert female.no_face_rate == pytest.approx(0.25)
    assert female.fpr == pytest.approx(0.0)


def random_table(n=400, seed=1, gap=0.0):
    rng = np.random.default_rng(seed)
    groups = pd.DataFrame({"gender": rng.choice(["Male", "Female"], n),
                           "race": rng.choice(["White", "Black", "Asian"], n),
                           "age": rng.choice(["0-2", "20-29", "70+"], n)})
    t = rng.integers(0, 2, n)
    p = (rng.random(n) < 0.2 + gap * (groups["gender"] == "Female")).astype(float)
    return t, p, groups


def test_group_intervals_are_wilson_and_hold_the_rate():
    t, p, groups = random_table()
    table = fairness.group_metrics(t, p, groups)
    for r in table.itertuples():
        assert (r.fpr_lo, r.fpr_hi) == pytest.approx(
            fairness_intervals.wilson(round(r.fpr * r.n_real), r.n_real))
    inside = (table["fpr_lo"] <= table["fpr"]) & (table["fpr"] <= table["fpr_hi"])
    assert inside.all()


def test_equalized_odds_over_two_groups_is_their_comparisons():
    t, p, groups = random_table(gap=0.3)
    report = fairness.fairness_report(t, p, groups)
    gender, pair = report["equalized_odds"]["gender"], comparison(report, "Female vs Male")
    assert gender["value"] == pytest.approx(pair["equalized_odds"]["value"])
    assert gender["ci"] == pytest.approx(pair["equalized_odds"]["ci"])
    for odds in report["equalized_odds"].values():
        assert odds["ci"][0] <= odds["value"] <= odds["ci"][1]


def test_a_clear_gap_is_flagged_and_no_gap_is_not():
    t, p, groups = random_table(n=600, gap=0.5)
    gender = fairness.binary_comparisons(t, p, groups)[0]
    assert gender["name"] == "Female vs Male" and gender["fpr_difference_ci"][0] > 0
    assert any("FPR gap" in flag and "excludes zero" in flag for flag in gender["flags"])
    t, p, groups = random_table(n=600, gap=0.0)
    gender = fairness.binary_comparisons(t, p, groups)[0]
    assert gender["fpr_difference_ci"][0] < 0 < gender["fpr_difference_ci"][1]
    assert not any("FPR gap" in flag for flag in gender["flags"])


# ------------------------------------------------------------------------------ labels


def write_labels(folder, lines, images=("a.jpg", "b.jpg")):
    for name in images:
        (folder / name).write_bytes(b"x")
    path = folder / "labels.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_labels_load_and_resolve_images_beside_or_under_images(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "c.jpg").write_bytes(b"x")
    path = write_labels(tmp_path, ["file,age,gender,race,label,pair_id",
                                   "a.jpg,20-29,Male,White,real,p1", "c.jpg,70+,Female,Black,fake,p1"])
    df = labelled.load_labels(path)
    assert list(df["label"]) == ["real", "fake"] and list(df["line"]) == [2, 3]
    assert df["path"][1] == str(tmp_path / "images" / "c.jpg")


@pytest.mark.parametrize("lines, message", [
    (["file,age,gender,label", "a.jpg,20-29,Male,real"], r"line 1 \(header\): missing column\(s\) race"),
    (["file,age,gender,race,label", "a.jpg,20-29,Male,White,real", "b.jpg,20-29,Male,White,fak"],
     r"line 3, field 'label': unknown value 'fak'"),
    (["file,age,gender,race,label", "missing.jpg,20-29,Male,White,real"],
     r"line 2, field 'file': image not found: .*missing.jpg"),
    (["file,age,gender,race,label", "a.jpg,21,Male,White,real"], r"line 2, field 'age': unknown value '21'"),
    (["file,age,gender,race,label", "a.jpg,20-29,,White,real"], r"line 2, field 'gender': empty"),
])
def test_malformed_labels_name_the_row_and_field(tmp_path, lines, message):
    with pytest.raises(FakefaceError, match=message):
        labelled.load_labels(write_labels(tmp_path, lines))


def test_fairface_layout_maps_onto_ours(tmp_path):
    path = write_labels(tmp_path, ["file,age,gender,race,service_test",
                                   "a.jpg,more than 70,Female,East Asian,True",
                                   "b.jpg,3-9,Male,Latino_Hispanic,False"])
    df = labelled.load_labels(path)  # detected from the header
    assert list(df["label"]) == ["real", "real"]
    assert list(df["age"]) == ["70+", "3-9"] and df["race"][0] == "East Asian"
    assert "service_test" not in df.columns
    with pytest.raises(FakefaceError, match="missing column"):
        labelled.load_labels(path, "utk")


# ------------------------------------------------------------------------------- split


def strata_table(n_per=6):
    rows = [(f"{race}_{gender}_{age}_{i}.jpg", "real", age, gender, race)
            for race in ("White", "Black") for gender in ("Male", "Female")
            for age in ("0-2", "70+") for i in range(n_per)]
    rows.append(("lonely.jpg", "real", "3-9", "Male", "Indian"))
    return pd.DataFrame(rows, columns=["file", "label", "age", "gender", "race"])


def test_stratified_split_has_no_overlap_and_covers_every_group():
    df = strata_table()
    train, assess = labelled.split_labels(df, seed=0)
    assert set(train["file"]).isdisjoint(assess["file"])
    assert len(train) + len(assess) == len(df)
    strata = lambda part: set(map(tuple, part[["race", "gender", "age"]].to_numpy()))  # noqa: E731
    assert strata(assess) == strata(df)  # a one-face stratum goes to the assessment part
    assert strata(train) == strata(df) - {("Indian", "Male", "3-9")}
    assert len(assess) == 8 * 3 + 1
    again = labelled.split_labels(df.sample(frac=1, random_state=5), seed=0)[1]
    assert set(again["file"]) == set(assess["file"])  # row order does not matter


def test_split_keeps_pairs_together():
    df = strata_table()
    df["pair_id"] = [f"pair{i // 2}" for i in range(len(df))]
    train, assess = labelled.split_labels(df, seed=1)
    assert set(train["pair_id"]).isdisjoint(assess["pair_id"])


def test_stratified_sample_keeps_every_stratum():
    df = strata_table()
    sample = labelled.stratified_sample(df, 9, seed=0)
    assert len(sample) == 9
    assert len(sample.groupby(["race", "gender", "age"])) == 9


# -------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def pairs_setup(tmp_path_factory, sample_root, tiny_keras_model):
    """A labels CSV over the 12 akpair real/fake pairs, the tiny model and a crop cache."""
    folder = tmp_path_factory.mktemp("fairness")
    rows = []
    for i, real in enumerate(sorted((sample_root / "pairs" / "real").glob("akpair_*_real.jpg"))):
        stem = real.name[: -len("_real.jpg")]
        demo = [("20-29", "70+")[i % 2], ("Male", "Female")[i // 2 % 2], ("White", "Black")[i % 2]]
        rows.append([str(real), "real", *demo, stem])
        rows.append([str(sample_root / "pairs" / "fake" / f"{stem}_psp.jpg"), "fake", *demo, stem])
    labels = folder / "labels.csv"
    columns = ["file", "label", "age", "gender", "race", "pair_id"]
    pd.DataFrame(rows, columns=columns).to_csv(labels, index=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(config.CACHE_ENV, str(folder / "cache"))
        yield folder, labels, tiny_keras_model


def test_fairness_command_writes_the_report(pairs_setup, capsys):
    folder, labels, model = pairs_setup
    out = folder / "report"
    code = main(["fairness", str(model), str(labels), "--out", str(out),
                 "--threshold", "0.5"])
    assert code == 0
    report = json.loads((out / "fairness.json").read_text())
    held_out = labelled.split_labels(labelled.load_labels(labels))[1]
    assert report["part"].startswith("assessment part") and report["rows"] == len(held_out) < 24
    everyone = next(g for g in report["groups"] if g["attribute"] == "all")
    assert everyone["n"] == len(held_out) and everyone["n_no_face"] == len(report["no_face"])
    assert everyone["n_fake"] > 0 and everyone["fnr"] is not None  # both classes: FNR computed
    table = pd.read_csv(out / "by_group.csv")
    assert {"race x gender", "age x gender"} <= set(table["attribute"])
    for name in ("rates_age.png", "rates_gender.png", "rates_race.png", "heatmap_race_x_gender.png"):
        assert (out / name).stat().st_size > 0
    printed = capsys.readouterr().out
    assert "Binary comparisons" in printed and "Female vs Male" in printed


def test_fairness_of_a_tracked_model_logs_its_headline_figures_to_its_run(pairs_setup, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    from fakeface_tf.core.run_folder import RunFolder

    folder, labels, model = pairs_setup
    tracked = tmp_path / "model"
    tracked.mkdir()
    shutil.copy(model, tracked / model.name)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.tracking.MlflowClient(uri)
    run_id = client.create_run(client.create_experiment(
        "x", (tmp_path / "artifacts").as_uri())).info.run_id
    RunFolder(tracked).mlflow_run.write_text(json.dumps({"run_id": run_id, "tracking_uri": uri}))
    report = fairness.assess(tracked / model.name, labels, threshold=0.5, progress=False)
    logged = client.get_run(run_id).data.metrics
    everyone = report["groups"].query("attribute == 'all'").iloc[0]
    assert logged["fairness.all.fpr"] == pytest.approx(everyone["fpr"])
    assert logged["fairness.rows"] == report["rows"]
    assert logged["fairness.flags"] == len(report["flags"])
    assert logged["fairness.equalized_odds.gender"] == pytest.approx(
        report["equalized_odds"]["gender"]["value"])
    assert "fairness" in {a.path for a in client.list_artifacts(run_id)}


def test_fairness_compare_of_a_model_with_itself_changes_nothing(pairs_setup, capsys):
    folder, labels, model = pairs_setup
    out = folder / "compare"
    args = ["fairness-compare", str(model), str(model), str(labels), "--out", str(out)]
    assert main(args) == 0
    table = pd.read_csv(out / "compare.csv")
    assert (table["n_a"] == table["n_b"]).all()
    for change in ("fpr_change", "accuracy_change"):
        assert np.allclose(table[change].dropna(), 0)
    assert "fpr_change" in capsys.readouterr().out


def test_training_dataset_holds_only_the_training_part(pairs_setup):
    _, labels, _ = pairs_setup
    cfg = Config()
    cfg.data.image_size, cfg.data.color, cfg.data.fairness_labels = 32, "gray", str(labels)
    train, _ = labelled.split_labels(labelled.load_labels(labels))
    elements = list(labelled.training_dataset(cfg).as_numpy_iterator())
    image, _ = elements[0]
    assert image.shape == (32, 32, 1) and image.dtype == np.float32 and image.max() <= 255
    found = labelled.face_crops(train["path"], FaceOptions(size=32, color="gray")).ok
    expected = train["label"].map({"real": 0.0, "fake": 1.0})[found]
    assert [label for _, label in elements] == list(expected)
    assert set(expected) == {0.0, 1.0}


class CountBatches(keras.callbacks.Callback):
    """Counts the training batches Keras runs."""

    def on_train_begin(self, logs=None):
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


@pytest.mark.slow
def test_training_mixes_in_each_fairness_face_of_the_training_part_weight_times(
        pairs_setup, tiny_records, tmp_path):
    _, labels, _ = pairs_setup
    train_part, _ = labelled.split_labels(labelled.load_labels(labels))
    found = int(labelled.face_crops(train_part["path"], FaceOptions(size=32, color="gray")).ok.sum())
    counter = CountBatches()
    cfg = tiny_config(tiny_records, "training.epochs=1", f"data.fairness_labels={labels}",
                      "data.fairness_weight=2")
    train(cfg, tmp_path / "runs", progress=False, callbacks=[counter])
    assert found > 0
    assert counter.batches == math.ceil((64 + 2 * found) / 16)  # 64 records + the faces twice


def test_faces_cut_and_scored_in_chunks_score_as_in_one_piece(pairs_setup, monkeypatch):
    from fakeface_tf.models.artifacts import load_model

    _, labels, model = pairs_setup
    df = labelled.load_labels(labels)
    loaded = load_model(model)
    whole = fairness.score(loaded, df, 0.5, progress=False)
    monkeypatch.setattr(fairness, "SCORE_CHUNK", 16)  # 24 files: a chunk of 16, then one of 8
    chunked = fairness.score(loaded, df, 0.5, progress=False)
    pd.testing.assert_frame_equal(whole, chunked)  # scores to 1e-5: the model's batches differ
    assert (whole["status"] == "ok").sum() > 12 and whole["prob"].notna().sum() == (whole["status"] == "ok").sum()
