"""Fitting the calibration map: it recovers a known temperature, ECE tells calibrated scores from
distorted ones, and `fakeface calibrate` changes probabilities but no verdict."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from fakeface_tf.analysis import calibration, conformal
from fakeface_tf.analysis.scoring import score_dataset
from fakeface_tf.cli import main
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.run_folder import RunFolder
from fakeface_tf.models import artifacts
from fakeface_tf.models.calibration import Calibration, read_calibration
from fakeface_tf.models.uncertainty import Band, read_band, write_band


def calibrated_draw(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn with P(fake) = sigmoid(z): these scores are calibrated by construction."""
    rng = np.random.default_rng(seed)
    p = expit(rng.normal(0.0, 2.0, n))
    return (rng.random(n) < p).astype(int), p


def overconfident(p, temperature: float) -> np.ndarray:
    """The logit multiplied by `temperature`: what temperature scaling has to undo."""
    return expit(temperature * np.log(p / (1 - p)))


def test_temperature_scaling_recovers_a_known_temperature():
    labels, p = calibrated_draw(5000, seed=0)
    fitted = calibration.fit_temperature(labels, overconfident(p, 2.5), source="synthetic")
    assert fitted.temperature == pytest.approx(2.4710, abs=1e-4)  # measured, seed 0; truth 2.5
    assert (fitted.method, fitted.intercept, fitted.n_fit, fitted.source) == (
        "temperature", 0.0, 5000, "synthetic")
    np.testing.assert_allclose(fitted.apply(overconfident(p, 2.5)), p, atol=0.01)


def test_platt_scaling_recovers_a_known_slope_and_shift():
    labels, p = calibrated_draw(5000, seed=0)
    distorted = expit(2.0 * np.log(p / (1 - p)) - 1.0)  # z -> 2z - 1, so a = 0.5, b = 0.5
    fitted = calibration.fit_platt(labels, distorted)
    # measured with seed 0 (the truth is a = b = 0.5)
    assert (fitted.slope, fitted.intercept) == pytest.approx((0.5058, 0.5010), abs=1e-4)


def test_ece_is_small_for_calibrated_scores_and_large_for_distorted_ones():
    labels, p = calibrated_draw(5000, seed=0)
    assert calibration.expected_calibration_error(labels, p) == pytest.approx(0.0154, abs=1e-4)
    assert calibration.expected_calibration_error(labels, overconfident(p, 2.5)) == pytest.approx(
        0.1153, abs=1e-4)
    assert calibration.expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0


def test_the_ece_a_calibrated_model_would_show_shrinks_with_more_faces():
    _, p = calibrated_draw(5000, seed=0)
    # measured, seed 0: the ECE of 283 faces (the sample's test split) is noisy even when
    # the scores are perfectly calibrated
    assert calibration.ece_if_calibrated(p[:283]) == pytest.approx(0.0705, abs=1e-4)
    assert calibration.ece_if_calibrated(p) == pytest.approx(0.0166, abs=1e-4)


def test_ece_weights_each_bin_by_its_faces():
    # Bin [0.2, 0.27): 3 faces at 0.25, 1 fake -> gap 0.0833; bin [0.8, 0.87): 1 face at 0.8, real.
    assert calibration.expected_calibration_error([0, 0, 1, 0], [0.25, 0.25, 0.25, 0.8]) == (
        pytest.approx((3 * (1 / 3 - 0.25) + 0.8) / 4))


def test_a_map_that_reverses_the_ranking_is_refused():
    labels, p = calibrated_draw(500, seed=1)
    with pytest.raises(FakefaceError, match="slope"):
        calibration.fit_platt(labels, 1 - p)


def banded_folder(tmp_path, threshold: float = 0.47, low: float = 0.3, high: float = 0.72):
    artifacts.save_threshold(tmp_path, threshold, "accuracy", {"split": "valid"})
    write_band(tmp_path, Band(low=low, high=high, alpha=0.05, n_calibration=100))
    return tmp_path


def test_mapping_the_threshold_and_band_keeps_every_verdict_and_records_the_raw_values(tmp_path):
    root = banded_folder(tmp_path)
    scores = np.r_[np.random.default_rng(3).random(5000), 0.47, 0.3, 0.72, 0.0, 1.0]
    new = Calibration("platt", slope=0.4, intercept=-0.7)
    raw, record = calibration.mapped_threshold(root, None, new)
    band, band_record = calibration.mapped_band(root, None, new)
    assert raw == 0.47 and record["raw_threshold"] == 0.47 and record["split"] == "valid"
    assert record["threshold"] == pytest.approx(float(new.apply(0.47)))
    assert (band_record["raw_low"], band_record["raw_high"]) == (0.3, 0.72)
    assert calibration.changed_verdicts(scores, new, raw, band, record, band_record) == 0
    before = conformal.verdicts(scores, 0.47, band)
    assert set(before) == {"real", "fake", "uncertain"}


def test_refitting_starts_from_the_raw_scale_not_from_the_last_map(tmp_path):
    root = banded_folder(tmp_path)
    first, second = Calibration("platt", 2.0, 0.3), Calibration("temperature", 0.8)
    for name, record in (("threshold.json", calibration.mapped_threshold(root, None, first)[1]),
                         ("conformal.json", calibration.mapped_band(root, None, first)[1])):
        (root / name).write_text(json.dumps(record))
    assert artifacts.read_threshold(root) == pytest.approx(float(first.apply(0.47)))
    raw, record = calibration.mapped_threshold(root, first, second)
    band, band_record = calibration.mapped_band(root, first, second)
    assert raw == 0.47 and (band.low, band.high) == (0.3, 0.72)
    assert record["threshold"] == pytest.approx(float(second.apply(0.47)))
    # A threshold saved later on the calibrated scale (no raw_threshold) goes back through the map.
    artifacts.save_threshold(root, float(first.apply(0.6)), "given")
    assert calibration.mapped_threshold(root, first, second)[0] == pytest.approx(0.6)


@pytest.mark.slow
def test_calibrate_changes_probabilities_but_no_verdict_on_the_test_split(tiny_run_copy, tiny_records):
    run = tiny_run_copy
    artifacts.save_threshold(run, 0.5, "given")
    before = artifacts.load_model(run)
    labels, raw_valid, _ = score_dataset(before, tiny_records, "valid", progress=False)
    write_band(run, conformal.fit_band(labels, raw_valid, alpha=0.2))
    labels, raw, _ = score_dataset(before, tiny_records, "test", progress=False)
    band_before = read_band(run)
    said_before = conformal.verdicts(raw, before.threshold, band_before)

    assert main(["calibrate", str(run), str(tiny_records), "--method", "platt"]) == 0
    after = artifacts.load_model(run)
    _, scores, _ = score_dataset(after, tiny_records, "test", progress=False)
    assert after.calibration.method == "platt" and read_calibration(run) == after.calibration
    np.testing.assert_allclose(scores, after.calibration.apply(raw), rtol=1e-9)
    assert np.abs(scores - raw).max() > 0.05
    np.testing.assert_array_equal(conformal.verdicts(scores, after.threshold, after.band), said_before)
    assert json.loads(RunFolder(run).threshold.read_text())["raw_threshold"] == 0.5
    saved_band = json.loads(RunFolder(run).conformal.read_text())
    assert (saved_band["raw_low"], saved_band["raw_high"]) == (band_before.low, band_before.high)
    assert saved_band["low"] == pytest.approx(float(after.calibration.apply(band_before.low)))

    table = pd.read_csv(run / calibration.REPORT_DIR / calibration.TABLE_FILE)
    assert list(table["method"]) == ["raw", "temperature", "platt", "isotonic"]
    assert list(table["shipped"]) == [False, False, True, False]
    assert (run / calibration.REPORT_DIR / calibration.FIGURE_FILE).is_file()

    # Refitting scores the raw model again: the same map, not a map of the map.
    shipped = read_calibration(run)
    assert main(["calibrate", str(run), str(tiny_records), "--method", "platt"]) == 0
    again = read_calibration(run)
    assert (again.slope, again.intercept) == pytest.approx((shipped.slope, shipped.intercept))
    assert artifacts.read_threshold(run) == pytest.approx(after.threshold)

    # Keeping raw P(fake) (what `auto` does when no map beats it) undoes the map exactly.
    calibration._keep_raw(artifacts.load_model(run))
    assert read_calibration(run) is None and artifacts.read_threshold(run) == 0.5
    assert (read_band(run).low, read_band(run).high) == (band_before.low, band_before.high)


def test_auto_ships_the_map_with_the_lowest_held_out_log_loss_raw_included():
    table = pd.DataFrame({"method": ["raw", "temperature", "platt", "isotonic"],
                          "valid_cv_log_loss": [0.257, 0.259, 0.262, 0.100]})
    assert calibration.choose(table) == "raw"  # isotonic is never shipped
    table.loc[1, "valid_cv_log_loss"] = 0.2
    assert calibration.choose(table) == "temperature"


def test_calibrate_refuses_data_without_a_valid_split_before_loading_a_model(tmp_path,
                                                                           tiny_keras_model):
    (tmp_path / "real").mkdir()
    (tmp_path / "fake").mkdir()
    with pytest.raises(FakefaceError, match="no valid or test split"):
        calibration.calibrate(tiny_keras_model, tmp_path)
    assert not (tiny_keras_model.parent / "calibration.json").exists()
