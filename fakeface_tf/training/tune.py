"""KerasTuner random search over config keys; every trial is an ordinary run folder.

SPACE.yaml maps config keys to ranges:

    optimizer.lr: {min: 0.0003, max: 0.01, sampling: log}
    model.filters: {choices: [16, 24, 32]}
    model.dropout: {min: 0.1, max: 0.5, step: 0.1}

The oracle is seeded with `training.seed`, and each search gets a fresh project folder
(`RUNS_DIR/tuner/<name>-<timestamp>`, overwrite=True), so an old search is never reloaded.
Importing this module loads KerasTuner and TensorFlow; `fakeface tune` imports it only once
its config has loaded, so `--help` and a missing config answer without them.
"""

from __future__ import annotations

import time
from pathlib import Path

import keras_tuner as kt

from fakeface_tf.core.config import Config, apply_overrides, config_file
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.yaml_loading import read_yaml
from fakeface_tf.training import tracking
from fakeface_tf.training.runs import run_results
from fakeface_tf.training.train import train

_RANGE_HELP = "needs {choices: [...]} or {min: .., max: ..}"


class RunTuner(kt.RandomSearch):
    """RandomSearch whose trial is `train()` of the base config with the trial's values set."""

    def __init__(self, cfg: Config, runs_dir: Path, progress: bool,
                 parent: tracking.Tracker | None = None, **kwargs):
        super().__init__(**kwargs)
        self.cfg, self.runs_dir, self.progress, self.parent = cfg, runs_dir, progress, parent
        self.run_dirs: list[Path] = []

    def run_trial(self, trial, *args, **kwargs):
        values = trial.hyperparameters.values
        cfg = apply_overrides(self.cfg, [f"{k}={v}" for k, v in values.items()])
        cfg.name = f"{self.cfg.name}-trial{trial.trial_id}"
        run_dir = train(cfg, self.runs_dir, progress=self.progress, tracking_parent=self.parent)
        self.run_dirs.append(run_dir)
        return {"val_auc": run_results(run_dir)["val_auc"]}


def _add_range(hp: kt.HyperParameters, key: str, spec: dict, path: Path):
    """Declare `key` on `hp` from its SPACE.yaml entry; return one value it can take."""
    if "choices" in spec:
        hp.Choice(key, list(spec["choices"]))
        return spec["choices"][0]
    if "min" in spec and "max" in spec:
        lo, hi = spec["min"], spec["max"]
        sampling = spec.get("sampling", "linear")
        if all(isinstance(v, int) for v in (lo, hi, spec.get("step", 1))):
            hp.Int(key, lo, hi, step=spec.get("step", 1), sampling=sampling)
        else:
            hp.Float(key, float(lo), float(hi), step=spec.get("step"), sampling=sampling)
        return lo
    raise FakefaceError(f"{path}: '{key}' {_RANGE_HELP}")


def load_space(path: str | Path, cfg: Config) -> kt.HyperParameters:
    """HyperParameters from SPACE.yaml; each key must be a config key (checked on `cfg`)."""
    path = Path(path)
    if not path.is_file():
        raise FakefaceError(f"search space file not found: {path}")
    space = read_yaml(config_file(path)) or {}
    if not isinstance(space, dict) or not space:
        raise FakefaceError(f"{path}: expected a mapping of config keys to ranges")
    hp = kt.HyperParameters()
    for key, spec in space.items():
        if not isinstance(spec, dict):
            raise FakefaceError(f"{path}: '{key}' {_RANGE_HELP}")
        sample = _add_range(hp, key, spec, path)
        apply_overrides(cfg, [f"{key}={sample}"])  # unknown key or wrong type: clear error now
    return hp


def tune(cfg: Config, space: str | Path, trials: int, runs_dir: str | Path = "runs",
         progress: bool = True) -> list[Path]:
    """Run `trials` random-search trials and return their run folders. Tracked, the search
    is one MLflow run with the space as parameters and its trials nested under it."""
    if trials < 1:
        raise FakefaceError("--trials must be >= 1")
    runs_dir = Path(runs_dir)
    hyperparameters = load_space(space, cfg)
    name = f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    parent = tracking.start_search(cfg, runs_dir, f"tune-{name}",
                                   {**read_yaml(config_file(Path(space))), "trials": trials})
    tuner = RunTuner(
        cfg, runs_dir, progress, parent,
        hyperparameters=hyperparameters,
        tune_new_entries=False,
        objective=kt.Objective("val_auc", direction="max"),
        max_trials=trials,
        seed=cfg.training.seed,
        directory=str(runs_dir / "tuner"),
        project_name=name,
        overwrite=True,
    )
    tuner.search()
    tracking.finish_search(parent, _best(tuner.run_dirs))
    return tuner.run_dirs


def _best(run_dirs: list[Path]) -> dict | None:
    """The trial with the highest validation AUC: its figures and run folder."""
    results = [{**run_results(d), "run_folder": str(d)} for d in run_dirs]
    return max(results, key=lambda r: r["val_auc"] or 0.0, default=None)
