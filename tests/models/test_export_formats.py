"""`fakeface export`: each format agrees with Keras on every verdict, or is refused."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from fakeface_tf.cli import main
from fakeface_tf.core.config import REPO_ROOT, load_config
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.models import artifacts, export_check, export_formats
from fakeface_tf.models.calibration import Calibration, write_calibration
from fakeface_tf.models.export import export_saved_model
from fakeface_tf.models.uncertainty import Band, write_band
from fakeface_tf.serving.inference import verdict_for

REFERENCE = REPO_ROOT / "saved_models" / "reference"


def _folder_size(folder) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _midpoint(sorted_values: np.ndarray, q: float) -> float:
    """A cut halfway between two neighbouring values near quantile q: no value sits on it."""
    i = int(q * (len(sorted_values) - 1))
    return float((sorted_values[i] + sorted_values[i + 1]) / 2)


@pytest.fixture(scope="module")
def model_folder(tiny_records, tmp_path_factory):
    """A 32 px gray model whose P(fake) spreads over (0, 1) on tiny_records' test split, with
    a threshold, a Platt map and an "uncertain" band set between its scores."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    features = keras.layers.Dense(64, activation="relu")(x)
    logit = keras.layers.Dense(1, name="logit")(features)
    model = keras.Model(inputs, keras.layers.Activation("sigmoid", name="prob")(logit))
    folder = tmp_path_factory.mktemp("export_model")
    calibration = Calibration("platt", slope=1.5, intercept=0.2)
    write_calibration(folder, calibration)
    model.save(folder / "model.keras")
    crops, _ = export_check.check_crops(artifacts.load_model(folder / "model.keras"), tiny_records, None)
    z = keras.Model(inputs, logit).predict(crops.astype("float32"), verbose=0).ravel()
    kernel, bias = model.get_layer("logit").get_weights()  # logits standardised to sd 2
    model.get_layer("logit").set_weights([kernel * 2 / z.std(), (bias - z.mean()) * 2 / z.std()])
    model.save(folder / "model.keras")
    scores = np.sort(calibration.apply(model.predict(crops.astype("float32"), verbose=0).ravel()))
    assert scores[-1] - scores[0] > 0.3  # spread enough that the cuts below fall between scores
    (folder / "threshold.json").write_text(json.dumps({"threshold": _midpoint(scores, 0.5)}))
    write_band(folder, Band(_midpoint(scores, 0.35), _midpoint(scores, 0.65), 0.1, len(scores)))
    return folder


def _service_verdicts(folder, crops) -> list[str]:
    loaded = artifacts.load_model(folder)
    return [verdict_for(True, p, loaded.threshold, loaded.band) for p in loaded.predict(crops)]


def test_savedmodel_stores_each_weight_once_with_identical_outputs(model_folder, tmp_path):
    model = keras.models.load_model(model_folder / "model.keras")
    export_saved_model(model, tmp_path / "once")
    archive = keras.export.ExportArchive()  # the export as it was: the model tracked as well
    archive.track(model)
    archive.add_endpoint("serve", lambda images: {"prob": model(tf.cast(images, tf.float32))},
                         input_signature=[tf.TensorSpec((None, 32, 32, 1), tf.uint8)])
    archive.write_out(str(tmp_path / "twice"), verbose=False)
    once, twice = _folder_size(tmp_path / "once" / "variables"), _folder_size(tmp_path / "twice" / "variables")
    assert 0.45 < once / twice < 0.55
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (5, 32, 32, 1)).astype(np.uint8))
    old = tf.saved_model.load(str(tmp_path / "twice")).signatures["serving_default"](images)
    new = tf.saved_model.load(str(tmp_path / "once")).signatures["serving_default"](images)
    np.testing.assert_array_equal(new["prob"].numpy(), old["prob"].numpy())
    layer = keras.layers.TFSMLayer(str(tmp_path / "once"), call_endpoint="serve")
    np.testing.assert_array_equal(layer(images)["prob"].numpy(), old["prob"].numpy())


def test_savedmodel_verdict_signature_gives_the_services_verdicts(model_folder, tiny_records, tmp_path):
    report = export_check.export_model(model_folder, "savedmodel", tmp_path / "sm", check=tiny_records,
                                       progress=False)
    crops, _ = export_check.check_crops(artifacts.load_model(model_folder), tiny_records, None)
    saved = tf.saved_model.load(str(report.path))
    out = saved.signatures["verdict"](images=tf.constant(crops))
    verdicts = [v.decode() for v in out["verdict"].numpy()]
    assert verdicts == _service_verdicts(model_folder, crops)
    assert {"fake face", "real face", "uncertain"} <= set(verdicts)
    rule = {k: float(v) for k, v in saved.signatures["decision_rule"]().items()}
    assert rule["threshold"] == json.loads((model_folder / "threshold.json").read_text())["threshold"]
    # The folder loads as a model of its own, with the same verdicts (its rule files copied in).
    assert _service_verdicts(report.path, crops) == verdicts
    assert report.n_checked == len(crops) == 32 and report.max_diff < 1e-5


def test_tflite_export_agrees_with_keras_on_every_verdict(model_folder, tiny_records, tmp_path):
    report = export_check.export_model(model_folder, "tflite", tmp_path / "lite", check=tiny_records,
                                       progress=False)
    crops, _ = export_check.check_crops(artifacts.load_model(model_folder), tiny_records, None)
    runner = tf.lite.Interpreter(model_path=str(report.path / "model.tflite")).get_signature_runner()
    raw = runner(images=crops)["prob"].ravel()
    loaded = artifacts.load_model(model_folder)
    verdicts = [verdict_for(True, p, loaded.threshold, loaded.band) for p in loaded.calibration.apply(raw)]
    assert verdicts == _service_verdicts(model_folder, crops)
    assert report.max_diff < 1e-4  # XNNPACK sums in its own order


def test_a_dynamic_int8_export_that_moves_verdicts_is_refused(model_folder, tiny_records, tmp_path):
    # This model's logits are scaled up (sd 2, then Platt slope 1.5), so int8 weights move
    # P(fake) by ~0.27 and flip verdicts: a real refusal, not a staged one.
    with pytest.raises(FakefaceError, match="tflite export changes .* verdicts"):
        export_check.export_model(model_folder, "tflite", tmp_path / "q" / "lite", "dynamic",
                                  check=tiny_records, progress=False)
    assert list((tmp_path / "q").iterdir()) == []


def test_onnx_export_agrees_with_keras_on_every_verdict(model_folder, tiny_records, tmp_path):
    pytest.importorskip("tf2onnx", reason="ONNX export needs the `export` extra (tf2onnx)")
    ort = pytest.importorskip("onnxruntime", reason="checking ONNX needs onnxruntime")
    report = export_check.export_model(model_folder, "onnx", tmp_path / "onnx", check=tiny_records,
                                       progress=False)
    crops, _ = export_check.check_crops(artifacts.load_model(model_folder), tiny_records, None)
    session = ort.InferenceSession(str(report.path / "model.onnx"), providers=["CPUExecutionProvider"])
    raw = session.run(None, {"images": crops})[0].ravel()
    loaded = artifacts.load_model(model_folder)
    verdicts = [verdict_for(True, p, loaded.threshold, loaded.band) for p in loaded.calibration.apply(raw)]
    assert verdicts == _service_verdicts(model_folder, crops)
    assert report.max_diff < 1e-4


def test_an_export_that_changes_a_verdict_is_refused_and_leaves_nothing(model_folder, tiny_records,
                                                                         tmp_path, monkeypatch):
    honest = export_formats.WRITERS["tflite"]

    def flipped(model, folder, rule, quantize):  # an export whose P(fake) is 1 - the truth
        score = honest(model, folder, rule, quantize)
        return lambda images: (1 - score(images)[0], rule.verdicts(1 - score(images)[0]))

    monkeypatch.setitem(export_formats.WRITERS, "tflite", flipped)
    with pytest.raises(FakefaceError, match="changes .* verdicts"):
        export_check.export_model(model_folder, "tflite", tmp_path / "out" / "lite", check=tiny_records,
                                  progress=False)
    assert list((tmp_path / "out").iterdir()) == []


def test_export_command_prints_the_difference_and_refuses_a_full_folder(model_folder, tiny_records,
                                                                         tmp_path, capsys):
    out = tmp_path / "lite"
    args = ["export", str(model_folder), "--format", "tflite", "--out", str(out), "--check",
            str(tiny_records), "--no-progress"]
    assert main(args) == 0
    assert "max |diff| P(fake)" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"model.tflite", "threshold.json", "conformal.json",
                                               "calibration.json"}
    assert main(args) != 0  # the folder is not empty now
    assert "not an empty folder" in capsys.readouterr().err


@pytest.mark.slow
def test_reference_savedmodel_export_stores_each_weight_once_with_the_same_verdicts(tmp_path):
    if not (REFERENCE / "model.keras").is_file():
        pytest.skip("saved_models/reference is absent")
    records = REPO_ROOT / load_config(REFERENCE / "config.yaml").data.path  # the reference's own
    if not records.is_dir():
        pytest.skip(f"{records} is absent")
    report = export_check.export_model(REFERENCE, "savedmodel", tmp_path / "sm", check=records,
                                       limit=16, progress=False)
    weights = 4 * artifacts.load_model(REFERENCE).keras_model.count_params()  # float32 bytes
    for variables in (report.path / "variables", REFERENCE / "saved_model" / "variables"):
        assert _folder_size(variables) < 1.05 * weights, variables  # ExportArchive.track: 2x
    assert report.max_diff < 1e-5
