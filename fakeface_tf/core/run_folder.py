"""A run folder and the model folder published from it: the one definition of their file names.

Training writes these files, and evaluation, serving, the model card and run comparison read
them (keras-hub keeps its artifact names as constants the same way, in preset_utils).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CONFIG_FILE = "config.yaml"  # the typed Config the run was trained from
HISTORY_FILE = "history.csv"  # one row per finished epoch (Keras CSVLogger)
METRICS_FILE = "metrics.json"  # the best checkpoint's validation figures
STATE_FILE = "state.json"  # resume state: epochs done, best score, seconds spent
MODEL_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"  # the TF SavedModel export
CHECKPOINTS_DIR = "checkpoints"
THRESHOLD_FILE = "threshold.json"  # the decision threshold chosen for this model
CONFORMAL_FILE = "conformal.json"  # the "uncertain" band of P(fake) (models/uncertainty.py)
FACE_CUT_FILE = "face_cut.json"  # the face cut the model was trained on
ENV_FILE = "env.json"  # versions and machine the model was trained with
PROBE_FILE = "probe.json"  # the linear probe that initialised the head (FaceRes)
TENSORBOARD_DIR = "tensorboard"  # TensorBoard event files of the run


@dataclass(frozen=True)
class RunFolder:
    """A folder written by `fakeface train` (or `ensemble`), or a model folder published from one."""

    path: Path

    def __init__(self, path: str | os.PathLike) -> None:
        object.__setattr__(self, "path", Path(path))

    @property
    def config(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def history(self) -> Path:
        return self.path / HISTORY_FILE

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def state(self) -> Path:
        return self.path / STATE_FILE

    @property
    def model(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def saved_model(self) -> Path:
        return self.path / SAVED_MODEL_DIR

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.keras"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.keras"

    @property
    def threshold(self) -> Path:
        return self.path / THRESHOLD_FILE

    @property
    def conformal(self) -> Path:
        return self.path / CONFORMAL_FILE

    @property
    def face_cut(self) -> Path:
        return self.path / FACE_CUT_FILE

    @property
    def env(self) -> Path:
        return self.path / ENV_FILE

    @property
    def probe(self) -> Path:
        return self.path / PROBE_FILE

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD_DIR

    def is_run(self) -> bool:
        """A training run (its config and per-epoch history), not just an exported model."""
        return self.config.is_file() and self.history.is_file()
