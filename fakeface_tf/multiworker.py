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

The chief (`strategy.extended.should_checkpoint`) writes the run folder; the other workers write
their copies to a scratch folder deleted at the end (TensorFlow's advice: every worker saves,
so a save that reads synchronised variables cannot hang). `--resume RUN_DIR` on every worker
continues from the chief's state.json and checkpoints/last.keras, so RUN_DIR must be readable
by all workers (a shared disk). `training.cache_frozen` and `training.probe_init` are
single-machine features (Config.validate refuses them with this strategy).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from fakeface_tf import train as training
from fakeface_tf.config import Config
from fakeface_tf.errors import FakefaceError

log = logging.getLogger(__name__)


@functools.cache
def strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    """The process's one MultiWorkerMirroredStrategy. Made before TensorFlow runs anything else
    (its collective ops are configured at start-up); without $TF_CONFIG it is a cluster of one."""
    raw = os.environ.get("TF_CONFIG", "")
    try:
        spec = json.loads(raw) if raw.strip() else {}
    except ValueError:
        spec = None
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster", {}), dict):
        raise FakefaceError(f"TF_CONFIG is not a JSON object with 'cluster' and 'task': "
                            f"{raw[:200]!r}")
    return tf.distribute.MultiWorkerMirroredStrategy()


def fit(cfg: Config, run_dir: Path | None, progress: bool, saved_models_dir: Path,
        extra_callbacks: list | None) -> Path | None:
    """Train `cfg` on this worker (continuing `run_dir` per its state.json); the chief then
    evaluates, exports and publishes `run_dir` (train._finish) and returns it, another worker
    returns None. `run_dir` is None on a worker other than the chief starting afresh."""
    from fakeface_tf.callbacks import training_callbacks
    from fakeface_tf.models import build_model, compile_model

    dist = training._strategy(cfg)
    chief = dist.extended.should_checkpoint
    state = training._read_state(run_dir) if run_dir else {}
    epochs_done = state.get("epochs_done", 0)
    out = run_dir if chief else Path(tempfile.mkdtemp(prefix="fakeface-worker-"))
    try:
        with training._precision(cfg):
            train_ds, valid_ds, steps, fixed_steps = training._datasets(cfg, dist)
            with dist.scope():
                if epochs_done:
                    model = training._load_checkpoint(run_dir / "checkpoints" / "last.keras",
                                                      run_dir)
                else:
                    model = compile_model(build_model(cfg), cfg, steps * cfg.training.epochs)
            if chief:
                training._truncate_history(out / "history.csv", epochs_done)
            if epochs_done < cfg.training.epochs and not state.get("stopped_early"):
                callbacks = training_callbacks(out, cfg, state, model) + list(extra_callbacks or [])
                try:
                    custom_fit(model, cfg, dist, train_ds, valid_ds, steps, bool(fixed_steps),
                               callbacks, epochs_done, progress and chief)
                except KeyboardInterrupt:
                    where = run_dir if chief else "RUN_DIR (the chief's run folder)"
                    log.warning(f"\ninterrupted; continue with: fakeface train --resume {where} "
                                "on every worker")
                    raise
            if not chief:
                return None
            # The chief alone evaluates and exports, outside the strategy: no collective ops
            # that the other workers, finished by now, would have to join.
            return training._finish(cfg, run_dir, contextlib.nullcontext(), valid_ds,
                                    saved_models_dir)
    finally:
        if not chief:
            shutil.rmtree(out, ignore_errors=True)


def custom_fit(model: keras.Model, cfg: Config, dist: tf.distribute.Strategy, train_ds, valid_ds,
               steps: int, keep_iterator: bool, callbacks: list, initial_epoch: int,
               progress: bool) -> None:
    """`model.fit` for `cfg.training.epochs` epochs as a loop over `dist.run`, any strategy:
    `steps` batches of `train_ds` an epoch (one iterator for all epochs with `keep_iterator`,
    a repeated dataset, else a fresh pass each epoch), all of `valid_ds` after each, the epoch
    logs (loss, accuracy, auc, precision, recall and their val_ twins) handed to `callbacks`."""
    from fakeface_tf.models import compile_metrics

    optimizer, loss_fn = model.optimizer, model.loss
    with dist.scope():
        if not optimizer.built:  # its variables must exist before the step is traced
            optimizer.build(model.trainable_variables)
        seen = [keras.metrics.Mean(name="loss"), *compile_metrics(cfg)]
        held_out = [keras.metrics.Mean(name="loss"), *compile_metrics(cfg)]

    def update(metrics, labels, probs, losses):
        metrics[0].update_state(losses)
        for metric in metrics[1:]:
            metric.update_state(labels, probs)

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
        update(seen, labels, probs, losses)

    def valid_replica(images, labels):
        probs = model(images, training=False)
        update(held_out, labels, probs, loss_fn.call(labels, probs))

    @tf.function
    def train_step(iterator):
        dist.run(train_replica, args=next(iterator))

    @tf.function
    def valid_step(iterator):
        dist.run(valid_replica, args=next(iterator))

    train_batches = dist.experimental_distribute_dataset(train_ds)
    valid_batches = dist.experimental_distribute_dataset(valid_ds)
    valid_steps = int(valid_ds.cardinality())  # train._datasets asserts it; else count once
    valid_steps = valid_steps if valid_steps >= 0 else sum(1 for _ in valid_ds)
    iterator = iter(train_batches) if keep_iterator else None
    hooks = keras.callbacks.CallbackList(callbacks, add_progbar=progress, model=model,
                                         verbose=training._verbosity(progress),
                                         epochs=cfg.training.epochs, steps=steps)
    model.stop_training = False
    hooks.on_train_begin()
    logs = {}
    for epoch in range(initial_epoch, cfg.training.epochs):
        for metric in seen + held_out:
            metric.reset_state()
        hooks.on_epoch_begin(epoch)
        batches = iterator or iter(train_batches)
        for step in range(steps):
            hooks.on_train_batch_begin(step)
            train_step(batches)
            hooks.on_train_batch_end(step)
        held = iter(valid_batches)
        for _ in range(valid_steps):
            valid_step(held)
        # Reading a metric sums its replicas' counts across the workers (the same on each).
        logs = {m.name: float(m.result()) for m in seen}
        logs.update({f"val_{m.name}": float(m.result()) for m in held_out})
        log.info(f"epoch {epoch + 1}: {int(seen[0].count.numpy())} training examples over "
                 f"{dist.num_replicas_in_sync} replicas")  # each once: the data is split
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    hooks.on_train_end(logs)
