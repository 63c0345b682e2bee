"""`fakeface register`: a model folder becomes a registry version carrying its hashes and
metrics; the same weights keep their version; serve's version follows registered.json."""

from __future__ import annotations

import json
import shutil

import pytest

from fakeface_tf.cli import main
from fakeface_tf.core.run_folder import RunFolder
from fakeface_tf.data.records import records_hash
from fakeface_tf.models import model_version
from fakeface_tf.training import tracking

mlflow = pytest.importorskip("mlflow")


@pytest.fixture(autouse=True)
def _local_store(monkeypatch):
    monkeypatch.delenv(tracking.URI_ENV, raising=False)


def _versions(runs_dir, name):
    client = mlflow.tracking.MlflowClient(tracking.tracking_uri(runs_dir))
    return {int(v.version): v for v in client.search_model_versions(f"name = '{name}'")}


@pytest.mark.slow
def test_a_model_is_registered_once_with_its_hashes_and_metrics(tiny_run, tiny_records, tmp_path, capsys):
    from fakeface_tf.training.model_registry import register

    model = shutil.copytree(tiny_run, tmp_path / "shipped")
    runs = tmp_path / "runs"
    assert main(["register", str(model), "--runs-dir", str(runs)]) == 0
    assert "models:/shipped/1" in capsys.readouterr().out
    record = json.loads(RunFolder(model).registered.read_text())
    weights = model_version.content_hash(model / "model.keras")
    assert record["version"] == 1 and record["content_hash"] == weights
    (only,) = _versions(runs, "shipped").values()
    metrics = json.loads((model / "metrics.json").read_text())
    assert only.tags["content_hash"] == weights
    assert only.tags["data.hash"] == records_hash(tiny_records)
    assert float(only.tags["validation.auc"]) == pytest.approx(metrics["auc"])
    assert register(model, runs_dir=runs)["version"] == 1  # the same weights: no new version
    assert list(_versions(runs, "shipped")) == [1]
    with open(model / "model.keras", "ab") as file:  # other weights (a retrained model)
        file.write(b"\0")
    assert register(model, runs_dir=runs)["version"] == 2


def test_the_served_version_is_the_registry_version_while_the_weights_match(tmp_path, caplog):
    weights = tmp_path / "model.keras"
    weights.write_bytes(b"weights")
    assert model_version.version(tmp_path, model_version.content_hash(weights)) == model_version.content_hash(weights)
    record = {"name": "reference", "version": 3, "content_hash": model_version.content_hash(weights)}
    RunFolder(tmp_path).registered.write_text(json.dumps(record))
    assert model_version.version(tmp_path, model_version.content_hash(weights)) == "models:/reference/3"
    weights.write_bytes(b"retrained")
    assert model_version.version(tmp_path, model_version.content_hash(weights)) == model_version.content_hash(weights)
    assert "registered other weights" in caplog.text
    RunFolder(tmp_path).registered.write_text("[]")
    assert model_version.version(tmp_path, model_version.content_hash(weights)) == model_version.content_hash(weights)


def test_register_of_a_missing_model_is_a_clear_error(tmp_path, capsys):
    assert main(["register", str(tmp_path / "nothing")]) == 2
    assert "model not found" in capsys.readouterr().err


def test_serve_and_the_card_name_the_registered_version(tiny_keras_model, tiny_run, tmp_path):
    from fakeface_tf.analysis.card import write_card
    from fakeface_tf.serving.answers import model_identity
    from fakeface_tf.serving.inference import Detector

    model = tmp_path / "served" / tiny_keras_model.name
    model.parent.mkdir()
    shutil.copy(tiny_keras_model, model)
    weights = model_version.content_hash(model)
    assert model_identity(Detector.load(model))["version"] == weights  # not registered yet
    RunFolder(model.parent).registered.write_text(json.dumps(
        {"name": "served", "version": 2, "content_hash": weights}))
    identity = model_identity(Detector.load(model))
    assert identity["version"] == "models:/served/2" and identity["content_hash"] == weights
    run = shutil.copytree(tiny_run, tmp_path / "run")
    RunFolder(run).registered.write_text(json.dumps(
        {"name": "run", "version": 4, "content_hash": model_version.content_hash(run / "model.keras")}))
    assert "Version: models:/run/4 " in write_card(run).read_text()
