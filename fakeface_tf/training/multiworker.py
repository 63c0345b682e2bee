"""Training across machines: MultiWorkerMirroredStrategy with its own training loop.

Every worker runs the same command (`fakeface train CONFIG --set distribute=multiworker`, or
`fakeface train --resume RUN_DIR`); `$TF_CONFIG`, set by the cluster (Kubeflow's TFJob,
Vertex AI), a Slurm job script or by hand, names the workers and this one's role. Keras 3.15 `fit`
fails under this strategy (keras-team/keras#20585), so the step here is a custom loop:
`strategy.run` over `experimental_distribute_dataset` batches with the model's own Keras layers
and optimizer, the loss summed over each replica's examples and divided by the examples of the
whole (global) batch. The callbacks of `fit` (callbacks.training_callbacks) run around it on
the same epoch logs, so a run folder holds what a single-machine run's does: history.csv,
state.json, checkpoints/{best,last}.keras, tensorboard/, then metrics.json and the export.

The strategy is `runtime.multiworker_strategy()`, one a process; train.py picks this loop and
finalises after it. The chief (`strategy.extended.should_checkpoint`) writes the run folder; the other workers write
their copies to a scratch folder deleted at the end (TensorFlow's advice: every worker saves,
so a save that reads synchronised variables cannot hang). `--resume RUN_DIR` on every worker
continues from the chief's state.json and checkpoints/last.keras, so RUN_DIR must be readable
by all workers (a shared disk). `training.cache_frozen` and `training.probe_init` are
single-machine features (Config.validate refuses them with this strategy).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from dataclasses import dataclass
from typing import Callable

import keras
import tensorflow as tf

from fakeface_tf.core.config import Config
from fakeface_tf.core.run_folder import RunFolder
from fakeface_tf.models.registry import compile_metrics
from fakeface_tf.training import inputs, runtime
from fakeface_tf.training.callbacks import progress_callbacks, training_callbacks
from fakeface_tf.training.fitting import Fitted
from fakeface_tf.training.inputs import TrainingData
from fakeface_tf.training.run_state import read_state, starting_model, truncate_history

log = logging.getLogger(__name__)


def fit(cfg: Config, run: RunFolder | None, progress: bool,
        extra_callbacks: list | None) -> Fitted | None:
    """Train `cfg` on this worker (continuing `run` per its state.json); call inside
    `runtime.precision`. The chief returns what finalising needs, another worker None. `run`
    is None on a worker other than the chief starting afresh."""
    dist = runtime.strategy(cfg.distribute)
    chief = dist.extended.should_checkpoint
    state = read_state(run) if run else {}
    epochs_done = state.get("epochs_done", 0)
    out = run if chief else RunFolder(tempfile.mkdtemp(prefix="fakeface-worker-"))
    try:
        data = inputs.training_data(cfg, dist)
        model = starting_model(cfg, run, dist, epochs_done, data.steps * cfg.training.epochs)
        if chief:
            truncate_history(out.history, epochs_done)
        if epochs_done < cfg.training.epochs and not state.get("stopped_early"):
            callbacks = (training_callbacks(out, cfg.training, state, model)
                         + progress_callbacks(progress and chief) + list(extra_callbacks or []))
            _fit_epochs(model, cfg, dist, data, callbacks, epochs_done, progress and chief,
                        run.path if chief else "RUN_DIR (the chief's run folder)")
        # The chief alone evaluates and exports, outside the strategy: no collective ops
        # that the other workers, finished by now, would have to join.
        return Fitted(contextlib.nullcontext(), data.valid) if chief else None
    finally:
        if not chief:
            shutil.rmtree(out.path, ignore_errors=True)


def _fit_epochs(model: keras.Model, cfg: Config, dist: tf.distribute.Strategy, data: TrainingData,
                callbacks: list, epochs_done: int, progress: bool, where) -> None:
    """`custom_fit` from the epoch after `epochs_done`; a Ctrl-C logs how to resume (`where`:
    the run folder to name), then stops."""
    try:
        custom_fit(model, cfg, dist, data.train, data.valid, data.steps, bool(data.fixed_steps),
                   callbacks, epochs_done, progress)
    except KeyboardInterrupt:
        log.warning(f"\ninterrupted; continue with: fakeface train --resume {where} "
                    "on every worker")
        raise


@dataclass
class ReplicaSteps:
    """One training and one validation step over every replica (tf.functions that take a
    distributed iterator) and the metrics they update, the loss first in each list."""

    train: Callable
    valid: Callable
    seen: list  # training metrics of the epoch
    held_out: list  # validation metrics of the epoch

    def reset(self) -> None:
        for metric in self.seen + self.held_out:
            metric.reset_state()

    def logs(self) -> dict:
        """The epoch logs: loss and metrics, then their val_ twins. Reading a metric sums its
        replicas' counts across the workers (the same on each)."""
        logs = {m.name: float(m.result()) for m in self.seen}
        logs.update({f"val_{m.name}": float(m.result()) for m in self.held_out})
        return logs


def _update(metrics: list, labels, probs, losses) -> None:
    metrics[0].update_state(losses)
    for metric in metrics[1:]:
        metric.update_state(labels, probs)


def replica_steps(model: keras.Model, cfg: Config, dist: tf.distribute.Strategy) -> ReplicaSteps:
    """The steps of `custom_fit`: the loss summed over each replica's examples and divided by
    the examples of the whole (global) batch, the gradients applied by the model's optimizer."""
    optimizer, loss_fn = model.optimizer, model.loss
    with dist.scope():
        if not optimizer.built:  # its variables must exist before the step is traced
            optimizer.build(model.trainable_variables)
        seen = [keras.metrics.Mean(name="loss"), *compile_metrics(cfg)]
        held_out = [keras.metrics.Mean(name="loss"), *compile_metrics(cfg)]

    @tf.function(jit_compile=cfg.training.jit_compile)
    def gradients(images, labels, examples):
        with tf.GradientTape() as tape:
            probs = model(images, training=True)
            losses = loss_fn.call(labels, probs)  # one value per example
            loss = tf.reduce_sum(losses) / examples
            if model.losses:  # regularisation, summed over the replicas like the gradients
                loss += tf.add_n(model.losses) / dist.num_replicas_in_sync
            scaled = optimizer.scale_loss(loss)  # mixed_float16: Keras' loss scaling
        return tape.gradient(scaled, model.trainable_variables), probs, losses

    def train_replica(images, labels):
        context = tf.distribute.get_replica_context()
        examples = context.all_reduce("sum", tf.cast(tf.shape(labels)[0], tf.float32))
        grads, probs, losses = gradients(images, labels, examples)
        optimizer.apply(grads, model.trainable_variables)  # sums the replicas' gradients
        _update(seen, labels, probs, losses)

    def valid_replica(images, labels):
        probs = model(images, training=False)
        _update(held_out, labels, probs, loss_fn.call(labels, probs))

    @tf.function
    def train_step(iterator):
        dist.run(train_replica, args=next(iterator))

    @tf.function
    def valid_step(iterator):
        dist.run(valid_replica, args=next(iterator))

    return ReplicaSteps(train_step, valid_step, seen, held_out)


def custom_fit(model: keras.Model, cfg: Config, dist: tf.distribute.Strategy, train_ds, valid_ds,
               steps: int, keep_iterator: bool, callbacks: list, initial_epoch: int,
               progress: bool) -> None:
    """`model.fit` for `cfg.training.epochs` epochs as a loop over `dist.run`, any strategy:
    `steps` batches of `train_ds` an epoch (one iterator for all epochs with `keep_iterator`,
    a repeated dataset, else a fresh pass each epoch), all of `valid_ds` after each, the epoch
    logs (loss, accuracy, auc, precision, recall and their val_ twins) handed to `callbacks`."""
    step = replica_steps(model, cfg, dist)
    train_batches = dist.experimental_distribute_dataset(train_ds)
    valid_batches = dist.experimental_distribute_dataset(valid_ds)
    valid_steps = int(valid_ds.cardinality())  # inputs.training_data asserts it; else count once
    valid_steps = valid_steps if valid_steps >= 0 else sum(1 for _ in valid_ds)
    iterator = iter(train_batches) if keep_iterator else None
    hooks = keras.callbacks.CallbackList(callbacks, add_progbar=progress, model=model,
                                         verbose=runtime.verbosity(progress),
                                         epochs=cfg.training.epochs, steps=steps)
    model.stop_training = False
    hooks.on_train_begin()
    logs = {}
    for epoch in range(initial_epoch, cfg.training.epochs):
        step.reset()
        hooks.on_epoch_begin(epoch)
        batches = iterator or iter(train_batches)
        for batch in range(steps):
            hooks.on_train_batch_begin(batch)
            step.train(batches)
            hooks.on_train_batch_end(batch)
        held = iter(valid_batches)
        for _ in range(valid_steps):
            step.valid(held)
        logs = step.logs()
        log.info(f"epoch {epoch + 1}: {int(step.seen[0].count.numpy())} training examples over "
                 f"{dist.num_replicas_in_sync} replicas")  # each once: the data is split
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    hooks.on_train_end(logs)
