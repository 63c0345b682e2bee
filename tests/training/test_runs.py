"""The runs table: one row per run, only the varied hyperparameters, CSV and curves."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fakeface_tf.cli import main
from fakeface_tf.core.config import Config, apply_overrides
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.training.runs import compare_runs


def _fake_run(runs_dir: Path, run_id: str, overrides: list[str], val_auc: list[float],
              metrics: dict | None) -> Path:
    run_dir = runs_dir / run_id
    run_dir.mkdir(parents=True)
    apply_overrides(Config(name=run_id.split("-")[0]), overrides).save(run_dir / "config.yaml")
    epochs = len(val_auc)
    pd.DataFrame({"epoch": range(epochs), "loss": [0.7 - 0.1 * e for e in range(epochs)],
                  "val_loss": [0.75 - 0.1 * e for e in range(epochs)],
                  "val_accuracy": [a - 0.05 for a in val_auc], "val_auc": val_auc}
                 ).to_csv(run_dir / "history.csv", index=False)
    if metrics:
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


@pytest.fixture
def two_runs(tmp_path) -> Path:
    runs = tmp_path / "runs"
    _fake_run(runs, "a-11111111-20240101-000000", ["optimizer.lr=0.001", "model.dropout=0.3"],
              [0.8, 0.9, 0.85], {"accuracy": 0.84, "auc": 0.9, "f1": 0.83, "train_seconds": 61.0})
    _fake_run(runs, "b-22222222-20240102-000000", ["optimizer.lr=0.01", "model.dropout=0.3"],
              [0.7, 0.75], None)  # interrupted: no metrics.json yet
    (runs / "tuner").mkdir()  # not a run folder: ignored
    return runs


def test_table_has_a_row_per_run_and_only_the_varied_hyperparameters(two_runs):
    table = compare_runs(two_runs)
    assert table["run"].tolist() == ["a-11111111-20240101-000000", "b-22222222-20240102-000000"]
    assert "optimizer.lr" in table and "model.dropout" not in table
    first, second = table.iloc[0], table.iloc[1]
    assert (first["epochs"], first["val_auc"], first["val_f1"], first["train_seconds"]) == (3, 0.9, 0.83, 61.0)
    assert second["epochs"] == 2 and second["val_auc"] == 0.75
    assert second["val_accuracy"] == pytest.approx(0.70)


def test_cli_prints_the_table_writes_csv_and_curves(two_runs, tmp_path, capsys):
    out = tmp_path / "report" / "table.csv"
    assert main(["runs", str(two_runs), "--out", str(out), "--plot"]) == 0
    printed = capsys.readouterr().out
    assert "a-11111111-20240101-000000" in printed and "optimizer.lr" in printed
    assert pd.read_csv(out)["run"].tolist()[1] == "b-22222222-20240102-000000"
    assert (out.parent / "table_curves.png").stat().st_size > 1000


def test_match_selects_runs(two_runs, tmp_path, capsys):
    assert main(["runs", str(two_runs), "--match", "b-2", "--out", str(tmp_path / "t.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "t.csv")) == 1


def test_folder_without_runs_is_an_error(tmp_path, capsys):
    with pytest.raises(FakefaceError, match="no run folders"):
        compare_runs(tmp_path)
    assert main(["runs", str(tmp_path / "missing")]) == 2
    assert "runs folder not found" in capsys.readouterr().err
