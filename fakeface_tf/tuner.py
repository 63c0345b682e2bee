"""The KerasTuner tuner of `fakeface tune`: a random search whose trial is one `train()` run.

Its own module because it subclasses a KerasTuner class when imported; `tune.py` imports it
only when a search starts, so `fakeface tune --help` does not load TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import keras_tuner as kt

from fakeface_tf.config import Config, apply_overrides
from fakeface_tf.runs import compare_runs
from fakeface_tf.train import train


class RunTuner(kt.RandomSearch):
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
