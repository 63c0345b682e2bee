"""The split-conformal "uncertain" band: its guarantee, its agreement with MAPIE, and what
`fakeface evaluate --alpha` writes with it (and does not write without it)."""

import json

import numpy as np
import pandas as pd
import pytest

from fakeface_tf.analysis import conformal, evaluate
from fakeface_tf.cli import main
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.models.uncertainty import UNCERTAIN, Band, read_band, write_band


def overlapping_scores(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Labels (1 = fake) and P(fake) from two overlapping beta distributions."""
    labels = rng.integers(0, 2, n)
    scores = np.where(labels == 1, rng.beta(5, 2, n), rng.beta(2, 5, n))
    return labels, scores


def contains_truth(band: Band, labels, scores) -> np.ndarray:
    return np.array([("fake" if y else "real") in band.label_set(p) for y, p in zip(labels, scores)])


def test_band_covers_the_true_label_at_least_one_minus_alpha_on_a_fresh_draw():
    rng = np.random.default_rng(7)
    band = conformal.fit_band(*overlapping_scores(2000, rng), alpha=0.05, source="synthetic")
    labels, scores = overlapping_scores(20_000, rng)
    coverage = contains_truth(band, labels, scores).mean()
    assert coverage >= 1 - 0.05 - 0.02
    assert coverage == pytest.approx(0.94365)  # measured with seed 7: 1 - alpha is met on average
    assert (band.n_calibration, band.alpha, band.source) == (2000, 0.05, "synthetic")
    assert 0 < band.low < 0.5 < band.high < 1 and band.low == pytest.approx(1 - band.high)


@pytest.mark.parametrize("alpha", [0.02, 0.05, 0.1])
def test_band_gives_the_same_sets_as_mapie_predict_set(alpha):
    rng = np.random.default_rng(1)
    labels, scores = overlapping_scores(2000, rng)
    mapie = conformal.conformalize(labels, scores, alpha)
    q = conformal.mapie_threshold(mapie)
    band = conformal.band_from_threshold(q, alpha, len(labels))
    assert q >= 0.5  # the two-sided band: the sets below are never empty
    fresh = np.r_[rng.random(5000), band.low, band.high]
    _, sets = mapie.predict_set(fresh.reshape(-1, 1))
    theirs = sets[:, :, 0]  # columns: real (0), fake (1)
    ours = np.array([["real" in band.label_set(p), "fake" in band.label_set(p)] for p in fresh])
    tie = (np.abs(fresh - band.low) < 1e-7) | (np.abs(fresh - band.high) < 1e-7)
    np.testing.assert_array_equal(ours[~tie], theirs[~tie])
    assert ours[~tie].all(axis=1).any() and (ours[~tie].sum(axis=1) == 1).any()


def test_a_threshold_below_one_half_shrinks_the_band_to_a_point():
    # q = 0.3: MAPIE leaves P(fake) in (0.3, 0.7) with an empty set, which a Band cannot say;
    # those faces get the threshold verdict instead of "uncertain".
    band = conformal.band_from_threshold(0.3, 0.2, 50)
    assert (band.low, band.high) == (0.5, 0.5)
    assert band.label_set(0.4) == ("real",) and band.label_set(0.6) == ("fake",)
    everything = conformal.band_from_threshold(1.0, 0.05, 50)
    assert (everything.low, everything.high) == (0.0, 1.0)


def test_separable_scores_fit_a_point_band_and_mapie_agrees_off_the_empty_middle():
    labels = np.r_[np.zeros(100, int), np.ones(100, int)]
    scores = np.r_[np.linspace(0.0, 0.1, 100), np.linspace(0.9, 1.0, 100)]
    mapie = conformal.conformalize(labels, scores, 0.1)
    q = conformal.mapie_threshold(mapie)
    assert q < 0.5
    _, sets = mapie.predict_set(np.array([[0.05], [0.5], [0.95]]))
    assert sets[:, :, 0].tolist() == [[True, False], [False, False], [False, True]]
    band = conformal.fit_band(labels, scores, 0.1)
    assert (band.low, band.high) == (0.5, 0.5)


def test_too_few_calibration_faces_or_a_bad_alpha_is_refused():
    with pytest.raises(FakefaceError, match="at least 20 calibration faces"):
        conformal.fit_band([0, 1] * 5, [0.2, 0.8] * 5, alpha=0.05)
    for alpha in (0.0, 1.0, -0.1):
        with pytest.raises(FakefaceError, match="between 0 and 1"):
            conformal.fit_band([0, 1] * 50, [0.2, 0.8] * 50, alpha=alpha)


def test_verdicts_and_band_metrics_have_a_known_answer():
    band = Band(low=0.3, high=0.7, alpha=0.1, n_calibration=40, source="d [valid]")
    labels = [0, 0, 1, 1, 0, 1]
    scores = [0.1, 0.5, 0.9, 0.65, 0.8, 0.2]  # decided: right, -, right, -, wrong, wrong
    assert conformal.verdicts(scores, 0.5, band).tolist() == [
        "real", UNCERTAIN, "fake", UNCERTAIN, "fake", "real"]
    assert conformal.verdicts(scores, 0.5).tolist() == ["real", "fake", "fake", "fake", "fake", "real"]
    m = conformal.band_metrics(labels, scores, 0.5, band)
    assert (m["coverage"], m["decided_accuracy"], m["uncertain"]) == (4 / 6, 0.5, 2)
    assert m["band"] == {"low": 0.3, "high": 0.7, "alpha": 0.1, "n_calibration": 40,
                         "method": band.method, "source": "d [valid]"}


def test_risk_coverage_decides_the_surest_faces_first():
    labels = [0, 1, 1, 0]
    scores = [0.05, 0.45, 0.9, 0.6]  # margins 0.45, 0.05, 0.4, 0.1: right, wrong, right, wrong
    table = conformal.risk_coverage(labels, scores, 0.5)
    assert table["coverage"].tolist() == [0.25, 0.5, 0.75, 1.0]
    assert table["accuracy"].tolist() == [1.0, 1.0, pytest.approx(2 / 3), 0.5]
    assert table["margin"].tolist() == pytest.approx([0.45, 0.4, 0.1, 0.05])


# ---------------------------------------------------------------------- fakeface evaluate


def test_evaluate_with_alpha_writes_the_band_the_verdicts_and_the_coverage(
        tiny_run_copy, tiny_records, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", str(tiny_run_copy), str(tiny_records), "--out", str(out),
                 "--threshold", "auto", "--alpha", "0.05"]) == 0
    band = read_band(out)
    assert band is not None and band.n_calibration == 32 and band.alpha == 0.05
    assert band.source == f"{tiny_records} [valid]"
    assert read_band(tiny_run_copy) is None  # the model folder is left as it was
    metrics = json.loads((out / "metrics.json").read_text())
    scores = pd.read_csv(out / "scores.csv")
    said = conformal.verdicts(scores["score"], metrics["threshold"], band)
    assert scores["verdict"].tolist() == said.tolist()
    assert metrics["uncertain"] == int((scores["verdict"] == UNCERTAIN).sum())
    assert metrics["coverage"] == pytest.approx(1 - metrics["uncertain"] / 32)
    assert metrics["band"]["low"] == band.low and metrics["band"]["n_calibration"] == 32
    assert metrics["files"]["conformal"] == "conformal.json"
    assert (out / metrics["files"]["risk_coverage"]).is_file()
    printed = capsys.readouterr().out
    assert "coverage" in printed and "accuracy on decided faces" in printed


def test_evaluate_uses_the_models_own_band_without_alpha(tiny_run_copy, tiny_records, tmp_path):
    write_band(tiny_run_copy, Band(low=0.0, high=1.0, alpha=0.1, n_calibration=30))
    metrics = evaluate.evaluate(tiny_run_copy, tiny_records, out=tmp_path / "eval", progress=False)
    assert (metrics["coverage"], metrics["decided_accuracy"], metrics["uncertain"]) == (0.0, None, 32)
    assert set(pd.read_csv(tmp_path / "eval" / "scores.csv")["verdict"]) == {UNCERTAIN}
    assert "conformal" not in metrics["files"]  # used, not fitted: nothing written


def test_evaluate_without_a_band_adds_no_verdict_column_and_no_band_keys(
        tiny_run_copy, tiny_records, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", str(tiny_run_copy), str(tiny_records), "--out", str(out)]) == 0
    assert pd.read_csv(out / "scores.csv").columns.tolist() == ["path", "label", "score", "predicted"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert not {"coverage", "decided_accuracy", "uncertain", "band"} & set(metrics)
    assert not (out / "conformal.json").exists() and (out / "risk_coverage.png").is_file()
    assert "coverage" not in capsys.readouterr().out


def test_alpha_out_of_range_exits_2_before_scoring(tiny_run, tiny_records, capsys):
    assert main(["evaluate", str(tiny_run), str(tiny_records), "--alpha", "1.5"]) == 2
    assert "alpha must be between 0 and 1" in capsys.readouterr().err


@pytest.mark.parametrize("text, why", [
    ("{not json", "is not a band file: Expecting property name"),
    ("[1, 2]", "is not a band file"),
    ('{"low": 0.7, "high": 0.4, "alpha": 0.05, "n_calibration": 300}', "0 <= low <= high <= 1"),
])
def test_a_bad_band_file_is_a_clear_error_naming_the_file(tmp_path, text, why):
    from fakeface_tf.core.run_folder import RunFolder

    RunFolder(tmp_path).conformal.write_text(text)
    with pytest.raises(FakefaceError, match=why) as error:
        read_band(tmp_path)
    assert str(RunFolder(tmp_path).conformal) in str(error.value)
    assert read_band(tmp_path / "elsewhere") is None  # no file: no band
