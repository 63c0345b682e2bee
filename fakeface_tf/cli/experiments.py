"""`fakeface ensemble`, `tune` and `runs`: experiments across run folders.

`runs` reads run folders with pandas only. `ensemble` and `tune` load TensorFlow (and
KerasTuner), so their library modules are imported inside the command, after the inputs are
checked: `--help` and a missing input answer at once, without TensorFlow.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from fakeface_tf.cli.options import add_progress_option, progress
from fakeface_tf.core.config import load_config, records_dir
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.run_folder import RunFolder
from fakeface_tf.models.artifacts import find_model
from fakeface_tf.training.runs import compare_runs, find_runs, plot_curves


def format_table(table: pd.DataFrame) -> str:
    """The runs table as plain text, four significant digits."""
    return table.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def add_ensemble_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="run folders (or model folders) to average, at least two")
    parser.add_argument("--out", required=True, help="folder to write the ensemble to")


def run_ensemble(args: argparse.Namespace) -> int:
    for run in args.runs:  # every path checked before TensorFlow loads
        find_model(run)
    from fakeface_tf.training.ensemble import build_from_runs  # loads TensorFlow: see the docstring

    out = build_from_runs(args.runs, args.out)
    metrics = json.loads(RunFolder(out).metrics.read_text())
    members = ", ".join(f"{metrics[f'member{i}_auc']:.4f}" for i in range(metrics["members"]))
    print(f"ensemble of {metrics['members']}: valid AUC {metrics['auc']:.4f} "
          f"(members {members}), accuracy {metrics['accuracy']:.4f}\nwritten to {out}")
    return 0


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="base YAML config, e.g. configs/fast.yaml")
    parser.add_argument("--space", required=True, help="search space YAML, e.g. configs/space_fast.yaml")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override base config values")
    parser.add_argument("--runs-dir", default="runs")
    add_progress_option(parser)


def run_tune(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.set)
    from fakeface_tf.training.tune import tune  # loads KerasTuner and TensorFlow: see the docstring

    run_dirs = tune(cfg, args.space, args.trials, args.runs_dir, progress=progress(args))
    print(format_table(compare_runs(run_dirs).sort_values("val_auc", ascending=False)))
    return 0


def add_runs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs_dir", nargs="?", default="runs", help="folder of run folders")
    parser.add_argument("--match", default="", help="only runs whose id contains this text")
    parser.add_argument("--where", default=None,
                        help="only runs matching this MLflow search, e.g. \"metrics.best_auc > 0.95 "
                             "and params.model.name = 'faceres'\" (needs the store beside the runs)")
    parser.add_argument("--out", default=None, help="CSV path (default: RUNS_DIR/runs.csv)")
    parser.add_argument("--plot", action="store_true",
                        help="also save learning curves of the listed runs beside the CSV")


def run_runs(args: argparse.Namespace) -> int:
    runs = [r for r in find_runs(args.runs_dir) if args.match in r.name]
    if args.where:
        from fakeface_tf.training import tracking  # pulls in Keras and mlflow

        found = tracking.search_folders(args.runs_dir, args.where)
        runs = [r for r in runs if r.resolve() in found]
    if not runs:
        filters = [f"{k} {v!r}" for k, v in (("--match", args.match), ("--where", args.where)) if v]
        raise FakefaceError(f"no run in {args.runs_dir}"
                            + (f" matches {' and '.join(filters)}" if filters else ""))
    table = compare_runs(runs)
    print(format_table(table))
    out = Path(args.out) if args.out else Path(args.runs_dir) / "runs.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(f"\ntable: {out}")
    if args.plot:
        print(f"learning curves: {plot_curves(runs, out.with_name(out.stem + '_curves.png'))}")
    return 0


def add_track_import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="run folders to mirror into MLflow (trained without tracking, or "
                             "tracked ones whose plots or card came later)")


def run_track_import(args: argparse.Namespace) -> int:
    for run_dir in args.run_dirs:  # refused before Keras and mlflow load
        if not RunFolder(run_dir).is_run():
            raise FakefaceError(f"{run_dir}: not a run folder (no config.yaml and history.csv)")
    from fakeface_tf.training import tracking  # pulls in Keras and mlflow

    for run_dir, run_id in zip(args.run_dirs, tracking.import_runs(args.run_dirs)):
        print(f"{run_dir}: MLflow run {run_id}")
    return 0


def add_register_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL_DIR",
                        help="the model folder to register (saved_models/reference)")
    parser.add_argument("--name", default=None,
                        help="registered model name (default: the folder's name)")
    parser.add_argument("--runs-dir", default="runs",
                        help="the store is RUNS_DIR/mlflow.db (default runs), or $MLFLOW_TRACKING_URI")


def run_register(args: argparse.Namespace) -> int:
    from fakeface_tf.models.artifacts import find_model  # no TensorFlow

    find_model(args.model)  # a missing model is refused before mlflow loads
    from fakeface_tf.training.model_registry import register  # mlflow

    record = register(args.model, args.name, args.runs_dir)
    print(f"{args.model}: models:/{record['name']}/{record['version']} in {record['store']} "
          f"(weights {record['content_hash']}, data {record['data_hash']})")
    return 0


def add_crossval_arguments(parser: argparse.ArgumentParser) -> None:
    from fakeface_tf.training.crossval import RECIPES  # sklearn only, no TensorFlow

    parser.add_argument("records", help="records folder (its train and valid faces are cross-validated)")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES),
                        metavar="RECIPE", help=f"recipes to compare (default: all of {', '.join(RECIPES)})")
    parser.add_argument("--baseline", nargs="+", default=["faceres"], choices=list(RECIPES),
                        metavar="RECIPE", help="recipes every other one is compared with, fold by fold")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", metavar="CONFIG", help="also train this config on each fold "
                        "(its epoch picked on a tenth of the other folds) and score it the same way")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides for --train's config")
    parser.add_argument("--out", default="runs/crossval", help="folder for cv.csv, cv_summary.csv, cv.png")
    add_progress_option(parser)


def run_crossval(args: argparse.Namespace) -> int:
    records = records_dir(args.records)
    if not records.is_dir():
        raise FakefaceError(f"records folder not found: {args.records}")
    # loads TensorFlow and the backbones (features are extracted once, then cached)
    from fakeface_tf.training.crossval import run as crossval

    trained = None
    if args.train:
        from fakeface_tf.training.crossval import check_recipes
        from fakeface_tf.training.crossval_train import crossvalidate as train_folds

        cfg = load_config(args.train, args.set)
        check_recipes(args.recipes, args.baseline, [cfg.name])  # before hours of training
        trained = train_folds(cfg, records, Path(args.out), args.folds, args.seed, progress(args))
    written = crossval(records, args.out, args.recipes, args.folds, args.seed, args.baseline,
                       progress=progress(args), trained=trained)
    summary = pd.read_csv(written["summary"])
    print(format_table(summary))
    print("\n" + "\n".join(f"{what}: {path}" for what, path in written.items()))
    return 0
