"""Compare run folders side by side: one table and optional learning curves.

Only the hyperparameters that differ between the compared runs become columns, so the table
shows what was varied next to what it achieved.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from fakeface_tf.core import plots
from fakeface_tf.core.config import load_config
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.run_folder import CONFIG_FILE, HISTORY_FILE, RunFolder


def find_runs(source: str | os.PathLike | list) -> list[Path]:
    """Run folders in `source`: a folder of runs, one run folder, or a list of run folders."""
    if isinstance(source, (list, tuple)):
        runs = [Path(p) for p in source]
        bad = [p for p in runs if not RunFolder(p).is_run()]
        if bad:
            raise FakefaceError(f"{bad[0]} is not a run folder (needs {CONFIG_FILE} and {HISTORY_FILE})")
        return runs
    folder = Path(source)
    if not folder.is_dir():
        raise FakefaceError(f"runs folder not found: {folder}")
    if RunFolder(folder).is_run():
        return [folder]
    runs = sorted(p for p in folder.iterdir() if p.is_dir() and RunFolder(p).is_run())
    if not runs:
        raise FakefaceError(f"no run folders in {folder} (run `fakeface train CONFIG` first)")
    return runs


def _flatten_keys(values: dict, prefix: str = "") -> dict:
    """{"model": {"name": x}} -> {"model.name": x}, the dotted keys `--set` takes."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten_keys(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def run_results(run_dir: str | os.PathLike) -> dict:
    """Results of one run: the best checkpoint's metrics.json, else the history's best epoch
    (a run stopped before it finished has no metrics.json)."""
    folder = RunFolder(run_dir)
    history = pd.read_csv(folder.history)
    if folder.metrics.is_file():
        metrics = json.loads(folder.metrics.read_text())
        return {"epochs": len(history), "val_accuracy": metrics["accuracy"],
                "val_auc": metrics["auc"], "val_f1": metrics["f1"],
                "train_seconds": metrics.get("train_seconds")}
    state = json.loads(folder.state.read_text()) if folder.state.is_file() else {}
    best = history.loc[history["val_auc"].idxmax()] if len(history) else {}
    return {"epochs": len(history), "val_accuracy": best.get("val_accuracy"),
            "val_auc": best.get("val_auc"), "val_f1": None,
            "train_seconds": state.get("train_seconds")}


def compare_runs(source: str | os.PathLike | list) -> pd.DataFrame:
    """One row per run: id, model, the hyperparameters that differ, epochs, validation results."""
    runs = find_runs(source)
    # Resolved through Config, so a key a run's YAML predates shows as its default value.
    configs = [_flatten_keys(load_config(RunFolder(r).config).to_dict()) for r in runs]
    params = pd.DataFrame(configs)
    varied = [c for c in params.columns
              if c not in ("name", "model.name") and params[c].astype(str).nunique() > 1]
    table = pd.DataFrame({"run": [r.name for r in runs],
                          "model": params["model.name"].tolist()})
    table = pd.concat([table, params[varied].reset_index(drop=True),
                       pd.DataFrame([run_results(r) for r in runs])], axis=1)
    table.attrs["run_dirs"] = [str(r) for r in runs]
    return table


def plot_curves(run_dirs: list, path: Path) -> Path:
    """Training/validation loss and validation AUC per epoch of each run, in one PNG."""
    return plots.run_curves({Path(r).name: pd.read_csv(RunFolder(r).history) for r in run_dirs}, path)
