"""Fitting on one machine: Keras `fit` under the configured strategy (none or mirrored).

A fit continues a run folder from its state.json (run_state.py). With
`training.cache_frozen`, Keras fits only the trainable rest on the frozen part's stored
outputs (frozen.py); with `training.probe_init`, a new model's head first starts from a
logistic-regression probe (probe.py), kept as epoch 0. Finalising the run (evaluate, export,
publish) is finalise.py's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass

import keras
import tensorflow as tf

from fakeface_tf.core.config import Config
from fakeface_tf.core.files import save_model_atomic, write_text_atomic
from fakeface_tf.core.run_folder import RunFolder
from fakeface_tf.models.registry import compile_metrics, frozen_outputs
from fakeface_tf.training import frozen, inputs, probe, runtime
from fakeface_tf.training.callbacks import progress_callbacks, training_callbacks
from fakeface_tf.training.inputs import TrainingData
from fakeface_tf.training.run_state import read_state, starting_model, truncate_history

log = logging.getLogger(__name__)


@dataclass
class Fitted:
    """What finalising needs from a fit: the scope to load the best checkpoint in (a
    strategy's, or none) and the validation batches to evaluate it on."""

    scope: contextlib.AbstractContextManager
    valid: tf.data.Dataset


def fit(cfg: Config, run: RunFolder, progress: bool, extra_callbacks: list | None) -> Fitted:
    """Train `cfg` in `run` (or continue it, per its state.json) until `training.epochs` or an
    early stop; call inside `runtime.precision`."""
    started = time.time()  # train_seconds counts the input pipeline and frozen pass too
    state = read_state(run)
    epochs_done = state.get("epochs_done", 0)
    strategy = runtime.strategy(cfg.distribute)
    data = inputs.training_data(cfg, strategy)
    model = starting_model(cfg, run, strategy, epochs_done, data.steps * cfg.training.epochs)
    truncate_history(run.history, epochs_done)
    if epochs_done < cfg.training.epochs and not state.get("stopped_early"):
        _fit_epochs(model, cfg, run, state, data, progress, extra_callbacks, started)
    return Fitted(strategy.scope(), data.valid)


def _fit_epochs(model: keras.Model, cfg: Config, run: RunFolder, state: dict, data: TrainingData,
                progress: bool, extra_callbacks: list | None, started: float) -> None:
    """Keras `fit` from the epoch after state.json's to `training.epochs`, on images or on
    the frozen part's stored outputs; a Ctrl-C logs how to resume, then stops."""
    epochs_done = state.get("epochs_done", 0)
    fit_model, fit_train, fit_valid, head = trainable_part(model, cfg, data.train, data.valid,
                                                           fresh=not epochs_done)
    if head:  # the warmed-up model is epoch 0: fine-tuning must beat it to replace it
        _keep_probe(run, model, head, state)
    try:
        fit_model.fit(fit_train, validation_data=fit_valid, epochs=cfg.training.epochs,
                      initial_epoch=epochs_done,
                      steps_per_epoch=None if fit_model is not model else data.fixed_steps,
                      callbacks=training_callbacks(run, cfg.training, state, model, started)
                      + progress_callbacks(progress) + list(extra_callbacks or []),
                      shuffle=False, verbose=runtime.verbosity(progress))
    except KeyboardInterrupt:
        log.warning(f"\ninterrupted; continue with: fakeface train --resume {run.path}")
        raise


def _keep_probe(run: RunFolder, model: keras.Model, head: dict, state: dict) -> None:
    """Write probe.json, save the warmed-up model as the best checkpoint so far and note its
    validation AUC in `state` (the threshold the best checkpoint must beat)."""
    write_text_atomic(run.probe, json.dumps(head, indent=2))
    log.info(f"probe (head warm-up): C {head['C']}, validation AUC {head['val_auc']:.4f}, "
             f"accuracy {head['val_accuracy']:.4f}")
    run.checkpoints.mkdir(exist_ok=True)
    save_model_atomic(model, run.best_checkpoint)
    state["best_val_auc"] = head["val_auc"]


def trainable_part(model: keras.Model, cfg: Config, train_ds, valid_ds, fresh: bool):
    """What Keras fits: the whole model on images or, with `training.cache_frozen`, its
    trainable rest on the frozen part's stored outputs. With `training.probe_init`, a new
    model's head is first fitted as a logistic-regression probe. Returns the model to fit,
    its training and validation data, and the probe's figures (empty without one)."""
    head, seed = {}, cfg.training.seed
    if not cfg.training.caches_frozen:
        if cfg.training.probe_init and fresh:
            head = probe.probe(model, inputs.plain_training_images(cfg), valid_ds, seed=seed)
        return model, train_ds, valid_ds, head
    with model.distribute_strategy.scope():  # the rest trains under the model's strategy
        frozen_part, rest = frozen.cut_at_frozen(model, cfg.model)
    train_maps, valid_maps = frozen.cache(frozen_part, cfg, inputs.plain_training_images(cfg),
                                          valid_ds, model.optimizer)
    if cfg.training.probe_init and fresh:
        head = probe.probe(model, train_maps, valid_maps, frozen_outputs(model, cfg.model), seed)
    # The rest shares the whole model's optimizer, so checkpoints of the whole model carry
    # its state and `--resume` continues where it stopped.
    with model.distribute_strategy.scope():
        rest.compile(optimizer=model.optimizer, loss=model.loss, metrics=compile_metrics(cfg))
    return rest, train_maps.data, valid_maps.data, head
