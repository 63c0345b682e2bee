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
CALIBRATION_FILE = "calibration.json"  # the raw -> calibrated P(fake) map (models/calibration.py)
FACE_CUT_FILE = "face_cut.json"  # the face cut the model was trained on
ENV_FILE = "env.json"  # versions and machine the model was trained with
PROBE_FILE = "probe.json"  # the linear probe that initialised the head (FaceRes)
TENSORBOARD_DIR = "tensorboard"  # TensorBoard event files of the run
REGISTERED_FILE = "registered.json"  # the model registry's name and version for these weights
MLFLOW_RUN_FILE = "mlflow_run.json"  # the MLflow run mirroring this one: a resume continues it
MLFLOW_DB_FILE = "mlflow.db"  # the local MLflow store, beside the run folders
MLFLOW_ARTIFACTS_DIR = "mlartifacts"  # the local store's artifacts, beside it
CARD_FILE = "MODEL_CARD.md"
# `fakeface crossval` output folder (training/crossval.py)
CV_FILE = "cv.csv"  # one row per recipe and fold: accuracy, AUC, the C picked
CV_SUMMARY_FILE = "cv_summary.csv"  # per recipe: mean, sd, paired gain over baselines
CV_FOLDS_FILE = "cv_folds.csv"  # each face's identity group and fold
CV_PLOT_FILE = "cv.png"
# `fakeface fairness-indist` report folder beside the model (analysis/fairness_indist.py)
FAIRNESS_INDIST_DIR = "fairness-indist"
FAIRNESS_INDIST_FILE = "fairness_indist.json"  # counts, estimator checks, both tables
FPR_GROUPS_FILE = "fpr_by_group.csv"  # held-out reals, Face API groups
FNR_GROUPS_FILE = "fnr_by_group.csv"  # held-out and extra fakes, GEAR groups
INDIST_SCORES_FILE = "scores.csv"  # one row per face scored or missed

# Everything beside the model that decides a verdict: a published model folder carries them
# all, so it answers as its run folder does (training/finalise.py copies this list).
VERDICT_FILES = (FACE_CUT_FILE, THRESHOLD_FILE, CONFORMAL_FILE, CALIBRATION_FILE)


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
    def calibration(self) -> Path:
        return self.path / CALIBRATION_FILE

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

    @property
    def mlflow_run(self) -> Path:
        return self.path / MLFLOW_RUN_FILE

    @property
    def registered(self) -> Path:
        return self.path / REGISTERED_FILE

    def is_run(self) -> bool:
        """A training run (its config and per-epoch history), not just an exported model."""
        return self.config.is_file() and self.history.is_file()
