"""KerasTuner random search over config keys; every trial is an ordinary run folder.

SPACE.yaml maps config keys to ranges:

    optimizer.lr: {min: 0.0003, max: 0.01, sampling: log}
    model.filters: {choices: [16, 24, 32]}
    model.dropout: {min: 0.1, max: 0.5, step: 0.1}

The oracle is seeded with `training.seed`, and each search gets a fresh project folder
(`RUNS_DIR/tuner/<name>-<timestamp>`, overwrite=True), so an old search is never reloaded.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import keras_tuner as kt
import yaml

from fakeface_tf.config import Config, apply_overrides, load_config
from fakeface_tf.errors import FakefaceError
from fakeface_tf.runs import compare_runs, format_table
from fakeface_tf.train import train


def load_space(path: str | Path, cfg: Config) -> kt.HyperParameters:
    """HyperParameters from SPACE.yaml; each key must be a config key (checked on `cfg`)."""
    path = Path(path)
    if not path.is_file():
        raise FakefaceError(f"search space file not found: {path}")
    space = yaml.safe_load(path.read_text()) or {}
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


class _RunTuner(kt.RandomSearch):
    """RandomSearch whose trial is `train()` of the base config with the trial's values set."""

    def __init__(self, cfg: Config, runs_dir: Path, progress: bool, **kwargs):
        super().__init__(**kwargs)
        self.cfg, self.runs_dir, self.progress = cfg, runs_dir, progress
        self.run_dirs: list[Path] = []

    def run_trial(self, trial, *args, **kwargs):
        values = trial.hyperparameters.values
        cfg = apply_overrides(self.cfg, [f"{k}={v}" for k, v in values.items()])
        cfg.name = f"{self.cfg.name}-trial{trial.trial_id}"
        run_dir = train(cfg, self.runs_dir, progress=self.progress)
        self.run_dirs.append(run_dir)
        return {"val_auc": compare_runs([run_dir])["val_auc"].iloc[0]}


def tune(cfg: Config, space: str | Path, trials: int, runs_dir: str | Path = "runs",
         progress: bool = True) -> list[Path]:
    """Run `trials` random-search trials and return their run folders."""
    if trials < 1:
        raise FakefaceError("--trials must be >= 1")
    runs_dir = Path(runs_dir)
    tuner = _RunTuner(
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
    run_dirs = tune(load_config(args.config, args.set), args.space, args.trials, args.runs_dir)
    print(format_table(compare_runs(run_dirs).sort_values("val_auc", ascending=False)))
    return 0
