"""Compare run folders side by side: one table (printed, CSV) and optional learning curves.

Only the hyperparameters that differ between the compared runs become columns, so the table
shows what was varied next to what it achieved.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pandas as pd

from fakeface_tf import plots
from fakeface_tf.config import load_config
from fakeface_tf.errors import FakefaceError



def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (path / "history.csv").is_file()


def find_runs(source: str | os.PathLike | list) -> list[Path]:
    """Run folders in `source`: a folder of runs, one run folder, or a list of run folders."""
    if isinstance(source, (list, tuple)):
        runs = [Path(p) for p in source]
        bad = [p for p in runs if not is_run_dir(p)]
        if bad:
            raise FakefaceError(f"{bad[0]} is not a run folder (needs config.yaml and history.csv)")
        return runs
    folder = Path(source)
    if not folder.is_dir():
        raise FakefaceError(f"runs folder not found: {folder}")
    if is_run_dir(folder):
        return [folder]
    runs = sorted(p for p in folder.iterdir() if p.is_dir() and is_run_dir(p))
    if not runs:
        raise FakefaceError(f"no run folders in {folder} (run `fakeface train CONFIG` first)")
    return runs


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _summary(run_dir: Path) -> dict:
    """Results of one run: the best checkpoint's metrics.json, else the history's best epoch."""
    history = pd.read_csv(run_dir / "history.csv")
    metrics_file = run_dir / "metrics.json"
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        return {"epochs": len(history), "val_accuracy": metrics["accuracy"],
                "val_auc": metrics["auc"], "val_f1": metrics["f1"],
                "train_seconds": metrics.get("train_seconds")}
    state_file = run_dir / "state.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    best = history.loc[history["val_auc"].idxmax()] if len(history) else {}
    return {"epochs": len(history), "val_accuracy": best.get("val_accuracy"),
            "val_auc": best.get("val_auc"), "val_f1": None,
            "train_seconds": state.get("train_seconds")}


def compare_runs(source: str | os.PathLike | list) -> pd.DataFrame:
    """One row per run: id, model, the hyperparameters that differ, epochs, validation results."""
    runs = find_runs(source)
    # Resolved through Config, so a key a run's YAML predates shows as its default value.
    configs = [_flatten(load_config(r / "config.yaml").to_dict()) for r in runs]
    params = pd.DataFrame(configs)
    varied = [c for c in params.columns
              if c not in ("name", "model.name") and params[c].astype(str).nunique() > 1]
    table = pd.DataFrame({"run": [r.name for r in runs],
                          "model": params["model.name"].tolist()})
    table = pd.concat([table, params[varied].reset_index(drop=True),
                       pd.DataFrame([_summary(r) for r in runs])], axis=1)
    table.attrs["run_dirs"] = [str(r) for r in runs]
    return table


def plot_curves(run_dirs: list, path: Path) -> Path:
    """Training/validation loss and validation AUC per epoch of each run, in one PNG."""
    return plots.run_curves({Path(r).name: pd.read_csv(Path(r) / "history.csv") for r in run_dirs}, path)


def format_table(table: pd.DataFrame) -> str:
    return table.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs_dir", nargs="?", default="runs", help="folder of run folders")
    parser.add_argument("--match", default="", help="only runs whose id contains this text")
    parser.add_argument("--out", default=None, help="CSV path (default: RUNS_DIR/runs.csv)")
    parser.add_argument("--plot", action="store_true",
                        help="also save learning curves of the listed runs beside the CSV")


def run(args: argparse.Namespace) -> int:
    runs = [r for r in find_runs(args.runs_dir) if args.match in r.name]
    if not runs:
        raise FakefaceError(f"no run in {args.runs_dir} matches '{args.match}'")
    table = compare_runs(runs)
    print(format_table(table))
    out = Path(args.out) if args.out else Path(args.runs_dir) / "runs.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(f"\ntable: {out}")
    if args.plot:
        print(f"learning curves: {plot_curves(runs, out.with_name(out.stem + '_curves.png'))}")
    return 0
