"""KerasTuner random search over config keys; every trial is an ordinary run folder.

SPACE.yaml maps config keys to ranges:

    optimizer.lr: {min: 0.0003, max: 0.01, sampling: log}
    model.filters: {choices: [16, 24, 32]}
    model.dropout: {min: 0.1, max: 0.5, step: 0.1}

The oracle is seeded with `training.seed`, and each search gets a fresh project folder
(`RUNS_DIR/tuner/<name>-<timestamp>`, overwrite=True), so an old search is never reloaded.
KerasTuner, TensorFlow and pandas are imported when a search starts, not for `--help`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fakeface_tf.config import Config, apply_overrides, load_config, read_yaml
from fakeface_tf.errors import FakefaceError

if TYPE_CHECKING:
    import keras_tuner as kt


def load_space(path: str | Path, cfg: Config) -> kt.HyperParameters:
    """HyperParameters from SPACE.yaml; each key must be a config key (checked on `cfg`)."""
    import keras_tuner as kt

    path = Path(path)
    if not path.is_file():
        raise FakefaceError(f"search space file not found: {path}")
    space = read_yaml(path) or {}
    if not isinstance(space, dict) or not space:
        raise FakefaceError(f"{path}: expected a mapping of config keys to ranges")
    hp = kt.HyperParameters()
    for key, spec in space.items():
        if not isinstance(spec, dict):
            raise FakefaceError(f"{path}: '{key}' needs {{choices: [...]}} or {{min: .., max: ..}}")
        if "choices" in spec:
            hp.Choice(key, list(spec["choices"]))
            sample = spec["choices"][0]
        elif "min" in spec and "max" in spec:
            lo, hi = spec["min"], spec["max"]
            sampling = spec.get("sampling", "linear")
            if all(isinstance(v, int) for v in (lo, hi, spec.get("step", 1))):
                hp.Int(key, lo, hi, step=spec.get("step", 1), sampling=sampling)
            else:
                hp.Float(key, float(lo), float(hi), step=spec.get("step"), sampling=sampling)
            sample = lo
        else:
            raise FakefaceError(f"{path}: '{key}' needs {{choices: [...]}} or {{min: .., max: ..}}")
        apply_overrides(cfg, [f"{key}={sample}"])  # unknown key or wrong type: clear error now
    return hp


def tune(cfg: Config, space: str | Path, trials: int, runs_dir: str | Path = "runs",
         progress: bool = True) -> list[Path]:
    """Run `trials` random-search trials and return their run folders."""
    import keras_tuner as kt

    from fakeface_tf.tuner import RunTuner

    if trials < 1:
        raise FakefaceError("--trials must be >= 1")
    runs_dir = Path(runs_dir)
    tuner = RunTuner(
        cfg, runs_dir, progress,
        hyperparameters=load_space(space, cfg),
        tune_new_entries=False,
        objective=kt.Objective("val_auc", direction="max"),
        max_trials=trials,
        seed=cfg.training.seed,
        directory=str(runs_dir / "tuner"),
        project_name=f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}",
        overwrite=True,
    )
    tuner.search()
    return tuner.run_dirs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="base YAML config, e.g. configs/fast.yaml")
    parser.add_argument("--space", required=True, help="search space YAML, e.g. configs/space_fast.yaml")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override base config values")
    parser.add_argument("--runs-dir", default="runs")


def run(args: argparse.Namespace) -> int:
    from fakeface_tf.runs import compare_runs, format_table

    run_dirs = tune(load_config(args.config, args.set), args.space, args.trials, args.runs_dir)
    print(format_table(compare_runs(run_dirs).sort_values("val_auc", ascending=False)))
    return 0
