"""MLflow tracking: a training mirrored into the store beside the runs, read back with
`mlflow.search_runs`; `tracking: off` logs nothing; the records' hash tells data apart;
untracked run folders are imported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from fakeface_tf.cli import main
from fakeface_tf.core.config import load_config
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.run_folder import RunFolder
from fakeface_tf.data.records import records_hash
from fakeface_tf.training import tracking
from fakeface_tf.training.train import resume, train

from conftest import crash_after_first_epoch, tiny_config, write_synthetic_records

mlflow = pytest.importorskip("mlflow")


@pytest.fixture(autouse=True)
def _local_store(monkeypatch):
    """The store beside each test's runs folder, whatever the shell's MLFLOW_TRACKING_URI."""
    monkeypatch.delenv(tracking.URI_ENV, raising=False)


def _runs(runs_dir) -> pd.DataFrame:
    """Every MLflow run in the store beside `runs_dir`, all experiments."""
    mlflow.set_tracking_uri(tracking.tracking_uri(runs_dir))
    return mlflow.search_runs(search_all_experiments=True)


@pytest.fixture(scope="module")
def tracked_run(tiny_records, tmp_path_factory):
    root = tmp_path_factory.mktemp("tracked")
    cfg = tiny_config(tiny_records, "training.tracking=on", "training.epochs=2")
    return train(cfg, root / "runs", progress=False, saved_models_dir=root / "saved_models")


@pytest.mark.slow
def test_training_logs_params_epochs_final_metrics_artifacts_and_data_hash(tracked_run, tiny_records):
    runs = _runs(tracked_run.parent)
    assert len(runs) == 1
    row = runs.iloc[0]
    run_id = json.loads(RunFolder(tracked_run).mlflow_run.read_text())["run_id"]
    assert row["run_id"] == run_id and row["status"] == "FINISHED"
    cfg = load_config(tracked_run / "config.yaml")
    assert row["params.model.name"] == "baseline" and row["params.training.epochs"] == "2"
    assert row["params.data.path"] == cfg.data.path
    metrics = json.loads((tracked_run / "metrics.json").read_text())
    assert row["metrics.best_auc"] == pytest.approx(metrics["auc"])
    assert row["metrics.train_seconds"] == pytest.approx(metrics["train_seconds"])
    assert row["tags.data.hash"] == records_hash(tiny_records)
    assert row["tags.run_folder"] == str(tracked_run.resolve())
    assert row["tags.git.dirty"] in ("True", "False")
    assert row["tags.version.keras"]
    client = mlflow.tracking.MlflowClient(tracking.tracking_uri(tracked_run.parent))
    history = pd.read_csv(tracked_run / "history.csv")
    val_auc = client.get_metric_history(run_id, "val_auc")
    assert [m.step for m in val_auc] == [0, 1]
    assert [m.value for m in val_auc] == pytest.approx(history["val_auc"].tolist())
    env = json.loads((tracked_run / "env.json").read_text())
    assert env["data"]["hash"] == records_hash(tiny_records)


@pytest.mark.slow
def test_tracking_off_logs_nothing(tiny_records, tmp_path):
    run = train(tiny_config(tiny_records, "training.epochs=1"), tmp_path / "runs",
                progress=False, saved_models_dir=tmp_path / "saved_models")
    assert not (tmp_path / "runs" / "mlflow.db").exists()
    assert not RunFolder(run).mlflow_run.exists()


@pytest.mark.slow
def test_a_resumed_run_continues_the_same_mlflow_run(tiny_records, tmp_path):
    cfg = tiny_config(tiny_records, "training.tracking=on")
    with pytest.raises(RuntimeError):
        train(cfg, tmp_path / "runs", progress=False, saved_models_dir=tmp_path / "saved_models",
              callbacks=[crash_after_first_epoch()])
    run = next((tmp_path / "runs").glob("tiny-*"))
    resume(run, progress=False, saved_models_dir=tmp_path / "saved_models")
    runs = _runs(tmp_path / "runs")
    assert len(runs) == 1 and runs.iloc[0]["status"] == "FINISHED"
    client = mlflow.tracking.MlflowClient(tracking.tracking_uri(tmp_path / "runs"))
    assert [m.step for m in client.get_metric_history(runs.iloc[0]["run_id"], "loss")] == [0, 1]


def test_records_with_different_content_get_different_hashes(tmp_path):
    one = write_synthetic_records(tmp_path / "one")
    same = write_synthetic_records(tmp_path / "same")
    other = write_synthetic_records(tmp_path / "other", per_split={"train": 64, "valid": 30, "test": 32})
    assert records_hash(one) == records_hash(same)
    assert records_hash(one) != records_hash(other)
    (same / "manifest.csv").write_text("path,split\nfake/1.jpg,train\n")
    assert records_hash(one) != records_hash(same)
    assert records_hash(tmp_path / "missing") is None


@pytest.mark.slow
def test_an_untracked_run_folder_is_imported(tiny_run, tmp_path):
    run_dir = shutil.copytree(tiny_run, tmp_path / "runs" / tiny_run.name)
    assert not RunFolder(run_dir).mlflow_run.exists()
    (run_dir / "curves.png").write_bytes(b"\x89PNG\r\n")
    run_id = tracking.import_run(run_dir)
    runs = _runs(tmp_path / "runs")
    assert runs["run_id"].tolist() == [run_id]
    client = mlflow.tracking.MlflowClient(tracking.tracking_uri(tmp_path / "runs"))
    history = pd.read_csv(run_dir / "history.csv")
    assert len(client.get_metric_history(run_id, "val_auc")) == len(history)
    assert [a.path for a in client.list_artifacts(run_id)] == ["curves.png"]
    assert list((tmp_path / "runs" / "mlartifacts").rglob("curves.png"))  # beside the store
    assert tracking.import_run(run_dir) == run_id  # again: the same run, not a second one
    assert len(_runs(tmp_path / "runs")) == 1


@pytest.mark.slow
def test_runs_filters_by_an_mlflow_search_of_metrics_and_parameters(tracked_run, capsys):
    runs_dir = str(tracked_run.parent)
    where = "params.model.name = 'baseline' and metrics.best_auc >= 0"
    assert main(["runs", runs_dir, "--where", where]) == 0
    assert tracked_run.name in capsys.readouterr().out
    assert main(["runs", runs_dir, "--where", "metrics.best_auc > 1.5"]) == 2
    assert "no run in" in capsys.readouterr().err
    assert main(["runs", runs_dir, "--where", "metrics.best_auc >>> 1"]) == 2  # a clear error, not a trace
    assert "--where" in capsys.readouterr().err


def test_where_without_a_store_says_how_to_make_one(tmp_path):
    with pytest.raises(FakefaceError, match="does not exist: fakeface track-import"):
        tracking.search_folders(tmp_path, "metrics.best_auc > 0.9")


@pytest.mark.slow
def test_evaluate_robustness_and_card_log_to_the_run_they_evaluate(tracked_run, tiny_records):
    from fakeface_tf.analysis import card, evaluate, robustness

    run_id = json.loads(RunFolder(tracked_run).mlflow_run.read_text())["run_id"]
    result = evaluate.evaluate(tracked_run, tiny_records, threshold=0.5, progress=False)
    sweep = robustness.robustness(tracked_run, tiny_records, progress=False)
    card.write_card(tracked_run)
    client = mlflow.tracking.MlflowClient(tracking.tracking_uri(tracked_run.parent))
    logged = client.get_run(run_id).data.metrics
    report = Path(result["out"]).name
    assert logged[f"{report}.roc_auc"] == pytest.approx(result["roc_auc"])
    assert logged[f"{report}.counts.total"] == result["counts"]["total"]
    swept = Path(sweep.attrs["out"]).name
    for row in sweep.to_dict("records"):
        assert logged[f"{swept}.{row['condition']}.accuracy"] == pytest.approx(row["accuracy"])
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {report, swept, "MODEL_CARD.md"} <= artifacts
    assert "metrics.json" in {Path(a.path).name for a in client.list_artifacts(run_id, report)}


def test_a_report_on_an_untracked_folder_or_a_gone_store_logs_nothing(tmp_path):
    assert tracking.log_report(tmp_path, "eval-x", {"roc_auc": 0.9}) is None  # no mlflow_run.json
    RunFolder(tmp_path).mlflow_run.write_text(json.dumps(
        {"run_id": "abc", "tracking_uri": f"sqlite:///{tmp_path / 'gone' / 'mlflow.db'}"}))
    assert tracking.log_report(tmp_path, "eval-x", {"roc_auc": 0.9}) is None
    assert not (tmp_path / "gone").exists()  # not recreated empty


@pytest.mark.slow
def test_a_tune_search_is_one_parent_run_with_its_trials_nested(tiny_records, tmp_path):
    import yaml

    from fakeface_tf.training.tune import tune

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"model.dropout": {"choices": [0.1, 0.4]}}))
    cfg = tiny_config(tiny_records, "training.tracking=on", "training.epochs=1")
    trials = tune(cfg, space, 2, tmp_path / "runs", progress=False)
    runs = _runs(tmp_path / "runs")
    parents = runs[runs["tags.kind"] == "tune search"]
    assert len(parents) == 1 and len(runs) == 3
    parent = parents.iloc[0]
    children = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"]]
    assert sorted(children["tags.run_folder"]) == sorted(str(t.resolve()) for t in trials)
    assert parent["params.space.model.dropout"] == str({"choices": [0.1, 0.4]})
    best = max(json.loads((t / "metrics.json").read_text())["auc"] for t in trials)
    assert parent["metrics.best_trial.val_auc"] == pytest.approx(best)
    assert parent["status"] == "FINISHED"
