"""Finalising a fitted run: evaluate its best checkpoint, export it, mark the run finished and
publish the exported files to `saved_models/<run id>/`.

A published folder carries every file that decides a verdict (`run_folder.VERDICT_FILES`:
face cut, threshold, uncertain band, calibration), so `fakeface predict --model` answers the
same from the run folder and from its published copy. A file written after training (the
threshold `fakeface main` picks on validation) reaches the copy when the run is published
again (`publish`)."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

from fakeface_tf.core.config import Config
from fakeface_tf.core.files import save_model_atomic, write_text_atomic
from fakeface_tf.core.run_folder import (
    CONFIG_FILE,
    ENV_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MLFLOW_RUN_FILE,
    MODEL_FILE,
    SAVED_MODEL_DIR,
    VERDICT_FILES,
    RunFolder,
)
from fakeface_tf.models.export import export_saved_model, exportable, validation_metrics
from fakeface_tf.training.run_state import load_checkpoint, read_state

# What a published model folder holds: the model, what decides its verdicts, how it was
# trained and how well, and (when tracked) which MLflow run reports on it log to.
EXPORTED = (MODEL_FILE, SAVED_MODEL_DIR, *VERDICT_FILES, CONFIG_FILE, ENV_FILE, HISTORY_FILE,
            METRICS_FILE, MLFLOW_RUN_FILE)


def finish(cfg: Config, run: RunFolder, scope: contextlib.AbstractContextManager, valid_ds,
           saved_models_dir: Path) -> Path:
    """Evaluate the best checkpoint (loaded in `scope`, a strategy's or none) on `valid_ds`,
    write metrics.json, model.keras and saved_model/, mark the run finished and publish it."""
    with scope:
        best = load_checkpoint(run.best_checkpoint, run, compile=False)
        best = exportable(best, cfg)
    metrics = validation_metrics(best, valid_ds)
    state = read_state(run)
    epochs = len(run.history.read_text().splitlines()) - 1
    metrics.update(split="valid", threshold=0.5, epochs=epochs,
                   train_seconds=state.get("train_seconds", 0.0))
    write_text_atomic(run.metrics, json.dumps(metrics, indent=2))
    save_model_atomic(best, run.model)
    export_saved_model(best, run.saved_model)
    state.update(finished=True, stopped_early=epochs < cfg.training.epochs)
    write_text_atomic(run.state, json.dumps(state, indent=2))
    publish(run, saved_models_dir)
    return run.path


def publish(run: RunFolder, saved_models_dir: Path) -> Path:
    """Copy the exported model and its files (`EXPORTED`, those present) to
    `saved_models/<run id>/`, replacing an earlier copy; returns the copy's folder."""
    target = saved_models_dir / run.path.name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in EXPORTED:
        source = run.path / name
        if source.is_dir():
            shutil.copytree(source, target / name)
        elif source.is_file():
            shutil.copy2(source, target / name)
    return target
