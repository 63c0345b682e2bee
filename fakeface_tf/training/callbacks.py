"""The Keras callbacks of a training run: checkpoints, history, TensorBoard and state.json.

Both training loops (Keras `fit` in fitting.py, the multi-worker loop) hand them the same epoch
logs, so a run folder holds the same files whichever loop wrote it.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import keras

from fakeface_tf.core.config import TrainingConfig
from fakeface_tf.core.files import save_model_atomic, write_text_atomic
from fakeface_tf.core.logs import Progress
from fakeface_tf.core.run_folder import RunFolder
from fakeface_tf.training import runtime

log = logging.getLogger(__name__)


class EachEpoch(keras.callbacks.Callback):
    """Calls `call(epoch, logs)` after each finished epoch (the MLflow mirror's hook)."""

    def __init__(self, call):
        super().__init__()
        self.call = call

    def on_epoch_end(self, epoch, logs=None):
        self.call(epoch, dict(logs or {}))


class LogProgress(keras.callbacks.Callback):
    """Training progress as log lines, where no terminal redraws Keras' bar (a notebook cell,
    a log file): an epoch's steps and its validation at most every PROGRESS_SECONDS, then
    the epoch's time and metrics."""

    def on_epoch_begin(self, epoch, logs=None):
        self.name = f"epoch {epoch + 1}/{self.params.get('epochs', '?')}"
        self.started = time.monotonic()
        self.steps = Progress(self.name, self.params.get("steps"), unit="steps", announce=False)

    def on_train_batch_end(self, batch, logs=None):
        self.steps.update(1)

    def on_test_begin(self, logs=None):
        if hasattr(self, "name"):  # validation inside fit (not a separate evaluate)
            self.steps = Progress(f"{self.name} validation", None, unit="steps", announce=False)

    def on_test_batch_end(self, batch, logs=None):
        if hasattr(self, "name"):
            self.steps.update(1)

    def on_epoch_end(self, epoch, logs=None):
        figures = ", ".join(f"{k} {v:.4g}" for k, v in (logs or {}).items()
                            if isinstance(v, (int, float)))
        log.info(f"{self.name}: {time.monotonic() - self.started:.0f} s, {figures}")


def progress_callbacks(progress: bool) -> list:
    """LogProgress wherever Keras shows no bar of its own (`runtime.verbosity`: off a
    terminal); nothing with progress off."""
    return [LogProgress()] if progress and not runtime.verbosity(progress) else []


class LogLearningRate(keras.callbacks.Callback):
    """Adds the current learning rate to the epoch logs (history.csv column `lr`)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class SaveState(keras.callbacks.Callback):
    """Writes state.json after every epoch: epochs done, best val AUC so far, training time."""

    def __init__(self, path: Path, best: keras.callbacks.ModelCheckpoint, seconds_before: float,
                 started: float | None = None):
        super().__init__()
        self.path, self.best = path, best
        self.started, self.seconds_before = started or time.time(), seconds_before

    def on_epoch_end(self, epoch, logs=None):
        state = {
            "epochs_done": epoch + 1,
            "best_val_auc": None if self.best.best is None else float(self.best.best),
            "train_seconds": round(self.seconds_before + time.time() - self.started, 1),
            "finished": False,
        }
        write_text_atomic(self.path, json.dumps(state, indent=2))


class Checkpoint(keras.callbacks.ModelCheckpoint):
    """A ModelCheckpoint that always saves the whole model, also while Keras fits only its
    trainable rest (`training.cache_frozen`), and saves it atomically."""

    def __init__(self, path: Path, whole: keras.Model, **kwargs):
        super().__init__(path, **kwargs)
        self.whole = whole

    def set_model(self, model):
        super().set_model(self.whole)

    def _save_model(self, epoch, batch, logs):
        """Keras' decision, then a temp file renamed into place: a kill mid-save leaves the
        previous checkpoint whole instead of half a new one."""
        path = self._get_file_path(epoch, batch, logs)
        if self._should_save_model(epoch, batch, logs, path):
            save_model_atomic(self.model, path)


def training_callbacks(run: RunFolder, training: TrainingConfig, state: dict,
                       model: keras.Model, started: float | None = None) -> list:
    """The callbacks of one `fit` in `run`, continuing from `state` (state.json). `started`
    (time.time()) is when this session's work began, before the data and the frozen pass,
    so state.json's train_seconds is the wall time spent, not only Keras' epochs."""
    run.checkpoints.mkdir(exist_ok=True)
    best = Checkpoint(run.best_checkpoint, model, monitor="val_auc", mode="max",
                      save_best_only=True, initial_value_threshold=state.get("best_val_auc"))
    callbacks = [
        LogLearningRate(),
        best,
        Checkpoint(run.last_checkpoint, model),
        keras.callbacks.CSVLogger(run.history, append=True),
        keras.callbacks.TensorBoard(run.tensorboard, write_graph=False, profile_batch=0),
        SaveState(run.state, best, state.get("train_seconds", 0.0), started),
    ]
    if training.early_stopping > 0:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_auc", mode="max", patience=training.early_stopping))
    return callbacks
