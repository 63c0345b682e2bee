"""The calibration map beside a model: applied by load_model when present, absent = raw P(fake),
and a bad calibration.json is refused by name."""

import json
import shutil

import numpy as np
import pytest

from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.run_folder import RunFolder
from fakeface_tf.models import artifacts
from fakeface_tf.models.calibration import Calibration, read_calibration, write_calibration


@pytest.fixture
def model_folder(tiny_keras_model, tmp_path):
    shutil.copy(tiny_keras_model, tmp_path / "model.keras")
    return tmp_path


def images(n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 64, 64, 1)).astype(np.uint8)


def test_the_map_is_strictly_increasing_keeps_0_and_1_and_inverts():
    platt = Calibration("platt", slope=0.6, intercept=-0.3)
    p = np.linspace(0.001, 0.999, 999)
    q = platt.apply(p)
    assert (np.diff(q) > 0).all()
    np.testing.assert_allclose(platt.invert(q), p, rtol=1e-9)
    assert platt.apply(0.0) == 0.0 and platt.apply(1.0) == 1.0
    assert Calibration("temperature", slope=0.5).apply(0.5) == 0.5  # T leaves 0.5 where it is
    assert Calibration("temperature", slope=0.5).temperature == 2.0


def test_a_written_map_reads_back_the_same(tmp_path):
    written = Calibration("platt", 0.8, 0.1, n_fit=277, source="records [valid]")
    path = write_calibration(tmp_path, written)
    assert path == RunFolder(tmp_path).calibration and path.name == "calibration.json"
    assert read_calibration(tmp_path) == written
    assert json.loads(path.read_text())["temperature"] == pytest.approx(1.25)


def test_without_calibration_json_the_model_reports_raw_p_fake(model_folder):
    loaded = artifacts.load_model(model_folder)
    assert loaded.calibration is None and read_calibration(model_folder) is None
    np.testing.assert_array_equal(loaded.predict(images()), loaded.raw_predict(images()))


def test_with_calibration_json_every_load_reports_the_mapped_p_fake(model_folder):
    fitted = Calibration("platt", slope=3.0, intercept=0.4)
    write_calibration(model_folder, fitted)
    loaded = artifacts.load_model(model_folder)
    raw, calibrated = loaded.raw_predict(images()), loaded.predict(images())
    assert loaded.calibration == fitted
    np.testing.assert_allclose(calibrated, fitted.apply(raw), rtol=1e-12)
    assert np.abs(calibrated - raw).min() > 1e-3


@pytest.mark.parametrize("text, why", [
    ("{not json", "Expecting property name"),
    ('{"method": "platt", "slope": -1.0, "intercept": 0.0}', "slope must be finite and > 0"),
    ('{"method": "platt", "slope": NaN, "intercept": 0.0}', "slope must be finite and > 0"),
    ('{"method": "isotonic", "slope": 1.0}', "method must be one of temperature, platt"),
    ('{"method": "temperature", "slope": 1.0, "intercept": 0.5}', "no intercept"),
    ('{"method": "platt"}', "slope"),
    ("[1, 2]", "calibration file"),
])
def test_a_bad_calibration_json_is_a_clear_error_naming_the_file(model_folder, text, why):
    RunFolder(model_folder).calibration.write_text(text)
    with pytest.raises(FakefaceError, match="calibration.json") as error:
        artifacts.load_model(model_folder)
    assert str(RunFolder(model_folder).calibration) in str(error.value) and why in str(error.value)
