"""Metrics, confusion-matrix layout, threshold choice and the `fakeface evaluate` outputs."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as sk

from fakeface_tf.analysis import evaluate, metrics
from fakeface_tf.cli import main
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data import records
from fakeface_tf.models import artifacts

PROMISED = ("metrics.json", "scores.csv", "confusion_matrix.png", "roc_curve.png", "pr_curve.png",
            "reliability.png", "score_histograms.png", "risk_coverage.png",
            "worst_false_positives.png", "worst_false_negatives.png")


def test_metrics_agree_with_scikit_learn():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 1])
    s = np.array([0.9, 0.8, 0.4, 0.6, 0.3, 0.7, 0.2, 0.1, 0.55, 0.35])
    m = evaluate.compute_metrics(y, s, threshold=0.5)
    pred = (s >= 0.5).astype(int)
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(sk.precision_score(y, pred))
    assert m["recall"] == pytest.approx(sk.recall_score(y, pred))
    assert m["f1"] == pytest.approx(sk.f1_score(y, pred))
    assert m["roc_auc"] == pytest.approx(sk.roc_auc_score(y, s))
    assert m["average_precision"] == pytest.approx(sk.average_precision_score(y, s))
    assert m["accuracy_real"] == pytest.approx(3 / 5) and m["accuracy_fake"] == pytest.approx(3 / 5)
    assert m["counts"] == {"total": 10, "real": 5, "fake": 5, "predicted_fake": 5, "predicted_real": 5}
    assert m["notes"] == {}


def test_confusion_matrix_rows_are_predicted_columns_actual_positive_fake():
    # 4 fakes: 3 caught, 1 missed. 3 reals: 2 called fake, 1 called real.
    y = [1, 1, 1, 1, 0, 0, 0]
    s = [0.9, 0.8, 0.7, 0.2, 0.6, 0.55, 0.1]
    cm = evaluate.compute_metrics(y, s, 0.5)["confusion_matrix"]
    assert cm["rows"] == ["predicted fake", "predicted real"]
    assert cm["columns"] == ["actual fake", "actual real"]
    assert cm["matrix"] == [[3, 2], [1, 1]]
    assert cm["cells"]["predicted fake"] == {"actual fake": 3, "actual real": 2}
    assert cm["cells"]["predicted real"] == {"actual fake": 1, "actual real": 1}


def test_one_class_makes_auc_unavailable_not_an_error():
    m = evaluate.compute_metrics([0, 0, 0], [0.1, 0.2, 0.7], 0.5)
    assert m["roc_auc"] is None and m["average_precision"] is None
    assert m["notes"]["roc_auc"] == evaluate.ONE_CLASS
    assert m["recall"] is None and "no fake" in m["notes"]["recall"]
    assert m["accuracy"] == pytest.approx(2 / 3) and m["accuracy_fake"] is None
    assert "unavailable" in evaluate.summary(m)


def test_threshold_of_maximum_accuracy_has_a_known_answer():
    # Only thresholds in (0.25, 0.30] get 7 of 8 right; the midpoint is 0.275.
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    s = [0.05, 0.10, 0.20, 0.25, 0.30, 0.35, 0.80, 0.15]
    assert evaluate.choose_threshold(y, s, "accuracy") == pytest.approx(0.275)


def test_threshold_for_a_target_false_positive_rate_has_a_known_answer():
    reals = np.arange(10) / 10 + 0.05  # 0.05 ... 0.95
    fakes = np.array([0.5, 0.97, 0.98, 0.99])
    y = np.r_[np.zeros(10), np.ones(4)]
    s = np.r_[reals, fakes]
    chosen = evaluate.choose_threshold(y, s, "fpr", target_fpr=0.2)
    assert chosen == pytest.approx(0.8)  # two reals (0.85, 0.95) above: FPR exactly 0.2
    assert evaluate.compute_metrics(y, s, chosen)["accuracy_real"] == pytest.approx(0.8)
    assert evaluate.choose_threshold(y, s, "fpr", target_fpr=0.0) == pytest.approx(0.96)
    with pytest.raises(FakefaceError, match="target-fpr"):
        evaluate.choose_threshold(y, s, "fpr", target_fpr=None)


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: equal snapshots mean an untouched folder."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_evaluate_auto_writes_every_promised_file_and_leaves_the_model_folder_byte_identical(
        tiny_run_copy, tiny_records, tmp_path, capsys):
    before = folder_bytes(tiny_run_copy)
    out = tmp_path / "eval"
    code = main(["evaluate", str(tiny_run_copy), str(tiny_records), "--out", str(out),
                 "--threshold", "auto"])
    assert code == 0
    for name in (*PROMISED, "learning_curves.png", "threshold.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["counts"]["total"] == 32 and metrics["rejected"]["count"] == 0
    assert metrics["threshold_source"].startswith("auto")
    chosen = json.loads((out / "threshold.json").read_text())
    assert chosen["threshold"] == metrics["threshold"] != 0.5 and chosen["method"] == "accuracy"
    assert folder_bytes(tiny_run_copy) == before
    printed = capsys.readouterr().out
    assert "accuracy" in printed and str(out / "threshold.json") in printed


def test_save_threshold_makes_the_chosen_threshold_the_models_own(tiny_run_copy, tiny_records,
                                                                   tmp_path, capsys):
    code = main(["evaluate", str(tiny_run_copy), str(tiny_records), "--out", str(tmp_path / "eval"),
                 "--threshold", "auto", "--save-threshold"])
    assert code == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert artifacts.load_model(tiny_run_copy).threshold == metrics["threshold"] != 0.5
    assert str(tiny_run_copy / "threshold.json") in capsys.readouterr().out


def test_default_output_folder_sits_beside_the_model(tiny_run_copy, tiny_records):
    metrics = evaluate.evaluate(tiny_run_copy, tiny_records, split="valid", progress=False)
    assert metrics["out"] == str(tiny_run_copy / f"eval-{tiny_records.name}-valid")
    assert metrics["threshold"] == 0.5 and metrics["threshold_source"] == "default"


def test_single_class_evaluation_set_reports_auc_unavailable(tiny_run, tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 32, 32, 1), dtype=np.uint8)
    (tmp_path / "data").mkdir()
    records.write(tmp_path / "data" / records.shard_name("test", 0, 1),
                  (records.serialize(img, 0, path=f"r{i}.png", split="test") for i, img in enumerate(images)))
    metrics = evaluate.evaluate(tiny_run, tmp_path / "data", out=tmp_path / "out", progress=False)
    assert metrics["roc_auc"] is None and metrics["notes"]["roc_auc"] == evaluate.ONE_CLASS
    assert (tmp_path / "out" / "roc_curve.png").is_file()


def test_image_folder_counts_and_lists_files_without_a_face(tiny_keras_model, sample_root, tmp_path):
    folder = tmp_path / "images"
    for label, source in (("real", sample_root / "faces" / "real"), ("fake", sample_root / "faces" / "fake")):
        (folder / label).mkdir(parents=True)
        shutil.copy(sorted(source.glob("*.jpg"))[0], folder / label)
    nonface = sorted((sample_root / "nonface").glob("*.jpg"))[0]
    shutil.copy(nonface, folder / "fake" / "zz_nonface.jpg")
    (folder / "real" / "notes.txt").write_text("not an image")
    metrics = evaluate.evaluate(tiny_keras_model, folder, out=tmp_path / "out", threshold=0.5,
                                progress=False)
    assert metrics["counts"]["total"] == 2 and metrics["split"] == "all"
    rejected = {Path(f["path"]).name: f["status"] for f in metrics["rejected"]["files"]}
    assert rejected == {"notes.txt": "skipped", "zz_nonface.jpg": "no_face"}
    assert metrics["rejected"]["by_status"] == {"skipped": 1, "no_face": 1}


def test_auto_threshold_refuses_data_without_a_validation_split(tiny_run, tmp_path):
    for label in ("real", "fake"):
        (tmp_path / label).mkdir()  # a flat folder: its images would be the test set too
    with pytest.raises(FakefaceError, match="validation split"):
        evaluate.evaluate(tiny_run, tmp_path, threshold="auto", progress=False)


@pytest.mark.parametrize("make_model", [
    lambda tmp: tmp / "missing",
    lambda tmp: (tmp / "notes.txt").write_text("hi") and tmp / "notes.txt",
    lambda tmp: tmp,
], ids=["missing", "not-a-model-file", "folder-without-model"])
def test_bad_model_path_exits_2(make_model, tiny_records, tmp_path, capsys):
    assert main(["evaluate", str(make_model(tmp_path)), str(tiny_records)]) == 2
    assert "fakeface: error:" in capsys.readouterr().err


def test_missing_data_and_out_of_range_threshold_exit_2(tiny_run, tiny_records, tmp_path, capsys):
    assert main(["evaluate", str(tiny_run), str(tmp_path / "nodata")]) == 2
    assert "data not found" in capsys.readouterr().err
    assert main(["evaluate", str(tiny_run), str(tiny_records), "--threshold", "1.5"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err
    assert main(["evaluate", str(tiny_run), str(tiny_records), "--save-threshold"]) == 2
    assert "--save-threshold needs a threshold" in capsys.readouterr().err


@pytest.mark.slow
def test_learning_curve_scores_each_run_on_the_test_split_ordered_by_training_faces(
        tiny_records, tiny_run_copy, tmp_path, capsys):
    import pandas as pd

    from fakeface_tf.training.train import train

    from conftest import tiny_config

    half = train(tiny_config(tiny_records, "data.train_fraction=0.5"), tmp_path / "runs",
                 progress=False)
    assert main(["learning-curve", str(tiny_run_copy), str(half), "--data", str(tiny_records),
                 "--out", str(tmp_path / "curve")]) == 0
    table = pd.read_csv(tmp_path / "curve" / "learning_curve.csv")
    assert table["train_fraction"].tolist() == [0.5, 1.0]
    assert table["train_faces"].iloc[1] == 64 and 16 <= table["train_faces"].iloc[0] < 64
    assert (table["test_faces"] == 32).all()
    assert not (tiny_run_copy / "threshold.json").exists()  # scoring changes no model
    y, s, _ = evaluate.score_dataset(artifacts.load_model(tiny_run_copy), tiny_records, keep_worst=0,
                                     progress=False)
    assert table["roc_auc"].iloc[1] == pytest.approx(sk.roc_auc_score(y, s))
    assert (tmp_path / "curve" / "learning_curve.png").stat().st_size > 5000
    assert "learning_curve.png" in capsys.readouterr().out


def brute_force_threshold(y, s, method, target_fpr=None):
    """choose_threshold's definition, one candidate at a time over every image."""
    y, s = np.asarray(y), np.asarray(s, dtype=float)
    candidates = metrics._candidate_thresholds(s)
    if method == "accuracy":
        accuracy = np.array([np.mean((s >= c) == (y == 1)) for c in candidates])
        best = np.flatnonzero(accuracy == accuracy.max())
        return candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]]
    fpr = np.array([np.mean(s[y == 0] >= c) for c in candidates])
    return candidates[np.flatnonzero(fpr <= target_fpr).min()]


@pytest.mark.parametrize("seed", range(6))
def test_threshold_search_picks_what_trying_every_threshold_on_every_image_picks(seed):
    rng = np.random.default_rng(seed)
    n = 200
    y = rng.integers(0, 2, n)
    s = np.clip(0.3 * y + rng.normal(0.35, 0.2, n), 0, 1)
    s = np.round(s, 2) if seed % 2 else s  # rounded scores: many ties, and 0 and 1 themselves
    assert evaluate.choose_threshold(y, s, "accuracy") == brute_force_threshold(y, s, "accuracy")
    for target in (0.0, 0.05, 0.3, 1.0):
        assert (evaluate.choose_threshold(y, s, "fpr", target_fpr=target)
                == brute_force_threshold(y, s, "fpr", target))


def test_gallery_keeps_the_most_extreme_crops_as_copies_that_let_each_batch_go():
    import weakref

    rng = np.random.default_rng(0)
    highest, lowest = evaluate.Extremes(3, highest=True), evaluate.Extremes(3, highest=False)
    seen, batches = [], []
    for b in range(5):
        images = rng.integers(0, 256, (7, 4, 4, 1), dtype=np.uint8)
        scores = np.round(rng.random(7), 1)  # ties: the earlier crop ranks first
        paths = [f"b{b}_{i}.png" for i in range(7)]
        for extremes in (highest, lowest):
            extremes.add(scores, paths, (image for image in images))
        seen += [(float(v), p, image.copy()) for v, p, image in zip(scores, paths, images)]
        batches.append(weakref.ref(images))
        del images
    assert all(ref() is None for ref in batches)  # no kept crop is a view into a batch
    for extremes, order in ((highest, lambda t: -t[0]), (lowest, lambda t: t[0])):
        expected = sorted(seen, key=order)[:3]  # stable: ties in arrival order
        kept = extremes.items()
        assert [(v, p) for v, p, _ in kept] == [(v, p) for v, p, _ in expected]
        for (_, _, image), (_, _, original) in zip(kept, expected):
            np.testing.assert_array_equal(image, original)
    assert evaluate.Extremes(0, highest=True).items() == []
