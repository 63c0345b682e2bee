"""Train a model from a config into an isolated, reproducible, resumable run folder.

`runs/<name>-<config digest>-<YYYYmmdd-HHMMSS>/` holds the resolved `config.yaml`, `env.json`,
`history.csv` (Keras CSVLogger: `epoch` counts from 0), `tensorboard/`,
`checkpoints/{best,last}.keras`, `metrics.json` (validation metrics of the best checkpoint),
`model.keras` and `saved_model/` (serving signature: uint8 NxHxWxC -> {"prob": (N, 1)}).
The exported files are copied to `saved_models/<run id>/`. `state.json` records finished
epochs, so `fakeface train --resume RUN_DIR` picks up after the last completed epoch with
the optimizer state of `checkpoints/last.keras`. The state, checkpoints, config, metrics and
`model.keras` are written atomically (`files.py`): a kill leaves the old file or the new one.
`--resume` refuses a torn state.json or checkpoint (one copied in half, say) in one line.
TensorFlow, Keras and the modules built on them are imported when a training starts, so
`fakeface train --help` answers at once.
"""

from __future__ import annotations

import logging
import argparse
import contextlib
import json
import math
import shutil
import sys
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from fakeface_tf.config import Config, load_config
from fakeface_tf.errors import FakefaceError
from fakeface_tf.faces import FaceOptions, face_options, read_cut, save_cut
from fakeface_tf.files import save_model_atomic, write_text_atomic

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

log = logging.getLogger(__name__)

EXPORTED = ("config.yaml", "face_cut.json", "env.json", "history.csv", "metrics.json", "model.keras",
            "saved_model")


def _new_run_dir(cfg: Config, runs_dir: Path) -> Path:
    """Create `<name>-<digest>-<timestamp>`; a same-second clash waits for the next second."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    while True:
        run_dir = runs_dir / f"{cfg.name}-{cfg.digest()}-{time.strftime('%Y%m%d-%H%M%S')}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            time.sleep(0.25)


def _strategy(cfg: Config) -> tf.distribute.Strategy:
    import tensorflow as tf

    if cfg.distribute == "mirrored":
        return tf.distribute.MirroredStrategy()
    if cfg.distribute == "multiworker":  # workers and their roles come from $TF_CONFIG
        from fakeface_tf import multiworker

        return multiworker.strategy()
    return tf.distribute.get_strategy()


def training_cut(cfg: Config) -> FaceOptions:
    """The face cut of the run's records (their preprocess.json), refused when it is not the
    cut the config asks for; the config's own cut for records without preprocess.json."""
    from fakeface_tf.data import records_path

    path = records_path(cfg)
    wanted, cut = face_options(cfg.data), read_cut(path)
    if cut is None:
        return wanted
    differences = cut.differences(wanted, ["size", "color", "margin", "level"])
    if differences:
        raise FakefaceError(f"data.path {path} was cut differently from what the config asks "
                            f"(records vs config: {'; '.join(differences)}); preprocess again or "
                            "change data.* in the config")
    return cut


def _datasets(cfg: Config, strategy: tf.distribute.Strategy):
    """(train, valid, steps per epoch) for `cfg`, fairness faces mixed in when configured."""
    import tensorflow as tf

    from fakeface_tf import data

    path = data.records_path(cfg)
    expected = (cfg.data.image_size, cfg.data.image_size, cfg.data.channels)
    found = tuple(data.image_shape(path))
    if found != expected:
        raise FakefaceError(
            f"data.path {path} holds {found} images but the config asks for {expected} "
            "(data.image_size, data.color); preprocess again or change the config"
        )
    batch, seed = cfg.training.batch_size, cfg.training.seed
    fraction = cfg.data.train_fraction
    examples, known_length = _count(path, "train", fraction), True
    train_ds = data.make_dataset(path, "train", batch_size=batch, training=True, augment=cfg.augment,
                                 seed=seed, cache=_small(path, "train", fraction), fraction=fraction)
    if cfg.data.fairness_labels:
        extra = _fairness_faces(cfg)
        n_extra = int(extra.cardinality())  # negative when tf.data cannot tell
        examples, known_length = examples + max(n_extra, 0), n_extra >= 0
        train_ds = (train_ds.unbatch().concatenate(extra)
                    .shuffle(8192, seed=seed).batch(batch).prefetch(tf.data.AUTOTUNE))
    steps = cfg.training.steps_per_epoch or math.ceil(examples / batch)
    if cfg.training.steps_per_epoch:
        train_ds = train_ds.repeat()
    elif known_length:  # a known length spares Keras guessing where an epoch ends
        train_ds = train_ds.apply(tf.data.experimental.assert_cardinality(steps))
    valid_ds = data.make_dataset(path, "valid", batch_size=batch, cache=_small(path, "valid")).apply(
        tf.data.experimental.assert_cardinality(math.ceil(_count(path, "valid") / batch)))
    if strategy.num_replicas_in_sync > 1 or cfg.distribute == "multiworker":
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        train_ds, valid_ds = train_ds.with_options(options), valid_ds.with_options(options)
    return train_ds, valid_ds, steps, (cfg.training.steps_per_epoch or None)


def _small(path: Path, split: str, fraction: float = 1.0) -> bool:
    """Whether `split`'s records (the kept `fraction`) fit tf.data's in-memory cache
    (`frozen_cache.RAM_CACHE_BYTES`); larger sets are read from disk every epoch instead."""
    from fakeface_tf import data
    from fakeface_tf.frozen_cache import RAM_CACHE_BYTES

    size = sum(Path(f).stat().st_size for f in data.resolve_files(path, split))
    return size * fraction <= RAM_CACHE_BYTES


def _fairness_faces(cfg: Config):
    """The labelled faces mixed into training (`data.fairness_labels`), unbatched, each
    repeated `data.fairness_weight` times."""
    from fakeface_tf import labelled

    return labelled.training_dataset(cfg).repeat(round(cfg.data.fairness_weight))


def _plain_training_images(cfg: Config):
    """The training images in a fixed order without augmentation (fairness faces appended when
    configured): what the frozen part and the probe see."""
    from fakeface_tf import data

    batch = cfg.training.batch_size
    ds = data.make_dataset(data.records_path(cfg), "train", batch_size=batch,
                           fraction=cfg.data.train_fraction)
    if cfg.data.fairness_labels:
        ds = ds.unbatch().concatenate(_fairness_faces(cfg)).batch(batch)
    return ds


def _trainable_part(model: keras.Model, cfg: Config, train_ds, valid_ds, fresh: bool):
    """What Keras fits: the whole model on images or, with `training.cache_frozen`, its
    trainable rest on the frozen part's stored outputs. With `training.probe_init`, a new
    model's head is first fitted as a logistic-regression probe. Returns the model to fit,
    its training and validation data, and the probe's figures (empty without one)."""
    from fakeface_tf import frozen
    from fakeface_tf.models import compile_metrics, frozen_outputs

    probe, seed = {}, cfg.training.seed
    if not cfg.training.caches_frozen:
        if cfg.training.probe_init and fresh:
            probe = frozen.probe(model, _plain_training_images(cfg), valid_ds, seed=seed)
        return model, train_ds, valid_ds, probe
    with model.distribute_strategy.scope():  # the rest trains under the model's strategy
        frozen_part, rest = frozen.split(model, cfg)
    train_maps, valid_maps = frozen.cache(frozen_part, cfg, _plain_training_images(cfg), valid_ds,
                                          model.optimizer)
    if cfg.training.probe_init and fresh:
        probe = frozen.probe(model, train_maps, valid_maps, frozen_outputs(model, cfg.model), seed)
    # The rest shares the whole model's optimizer, so checkpoints of the whole model carry
    # its state and `--resume` continues where it stopped.
    with model.distribute_strategy.scope():
        rest.compile(optimizer=model.optimizer, loss=model.loss, metrics=compile_metrics(cfg))
    return rest, train_maps.data, valid_maps.data, probe


def _count(path: Path, split: str, fraction: float = 1.0) -> int:
    from fakeface_tf import data

    return sum(data.count_examples(path, split, fraction).values())


def _truncate_history(path: Path, epochs_done: int) -> None:
    """Drop history rows past the last completed epoch (written just before an interruption)."""
    if path.is_file():
        lines = path.read_text().splitlines(keepends=True)
        write_text_atomic(path, "".join(lines[: epochs_done + 1]))


@contextlib.contextmanager
def _precision(cfg: Config):
    """Global seeds, op determinism and the dtype policy for the span of one training (the
    determinism switch is put back after, so a later XLA training in the process can start)."""
    import keras
    from tensorflow.python.framework import config as tf_config  # tf.config lacks the off switch

    keras.utils.set_random_seed(cfg.training.seed)
    deterministic = tf_config.is_op_determinism_enabled()
    switch = {True: tf_config.enable_op_determinism, False: tf_config.disable_op_determinism}
    switch[cfg.training.deterministic]()
    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy("mixed_float16" if cfg.training.mixed_precision else "float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
        switch[deterministic]()


def _verbosity(progress: bool) -> int:
    """Keras progress bar on a terminal, one line per epoch in a log file, nothing if off."""
    return (1 if sys.stdout.isatty() else 2) if progress else 0


def _torn(path: Path, run_dir: Path) -> FakefaceError:
    """The one-line error for a run file that a kill cut short, with the ways on."""
    return FakefaceError(f"{path} is missing, empty or corrupt (killed during a write?): delete "
                         f"{run_dir / 'state.json'} to restart the run from epoch 0, or delete "
                         f"{run_dir} and train again")


def _read_state(run_dir: Path) -> dict:
    """state.json ({} before the first finished epoch); a torn one is a one-line error."""
    path = run_dir / "state.json"
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text())
    except ValueError:  # also undecodable bytes
        state = None
    if not isinstance(state, dict) or not isinstance(state.get("epochs_done", 0), int):
        raise _torn(path, run_dir)
    return state


def _load_checkpoint(path: Path, run_dir: Path, **kwargs) -> keras.Model:
    """A `.keras` checkpoint of the run, checked first to be a whole zip archive."""
    import keras

    try:
        with zipfile.ZipFile(path) as archive:
            whole = archive.testzip() is None
    except (OSError, EOFError, zipfile.BadZipFile):
        whole = False
    if not whole:
        raise _torn(path, run_dir)
    return keras.models.load_model(path, **kwargs)


def _fit(cfg: Config, run_dir: Path | None, progress: bool, saved_models_dir: Path,
         extra_callbacks: list | None) -> Path | None:
    """Train (or continue, per state.json) then evaluate, export and publish the best model.
    Multi-worker training has its own loop (multiworker.fit; None on a worker that is not the
    chief, which starts with no run folder)."""
    from fakeface_tf.callbacks import training_callbacks
    from fakeface_tf.models import build_model, compile_model

    if cfg.distribute == "multiworker":
        from fakeface_tf import multiworker

        return multiworker.fit(cfg, run_dir, progress, saved_models_dir, extra_callbacks)
    state = _read_state(run_dir)
    epochs_done = state.get("epochs_done", 0)
    with _precision(cfg):
        strategy = _strategy(cfg)
        train_ds, valid_ds, steps, fixed_steps = _datasets(cfg, strategy)
        with strategy.scope():
            if epochs_done:
                model = _load_checkpoint(run_dir / "checkpoints" / "last.keras", run_dir)
            else:
                model = compile_model(build_model(cfg), cfg, steps * cfg.training.epochs)
        _truncate_history(run_dir / "history.csv", epochs_done)
        if epochs_done < cfg.training.epochs and not state.get("stopped_early"):
            fit_model, fit_train, fit_valid, probe = _trainable_part(
                model, cfg, train_ds, valid_ds, fresh=not epochs_done)
            if probe:  # the warmed-up model is epoch 0: fine-tuning must beat it to replace it
                write_text_atomic(run_dir / "probe.json", json.dumps(probe, indent=2))
                log.info(f"probe (head warm-up): C {probe['C']}, validation AUC {probe['val_auc']:.4f}, "
                         f"accuracy {probe['val_accuracy']:.4f}")
                (run_dir / "checkpoints").mkdir(exist_ok=True)
                save_model_atomic(model, run_dir / "checkpoints" / "best.keras")
                state["best_val_auc"] = probe["val_auc"]
            try:
                fit_model.fit(fit_train, validation_data=fit_valid, epochs=cfg.training.epochs,
                              initial_epoch=epochs_done,
                              steps_per_epoch=None if fit_model is not model else fixed_steps,
                              callbacks=training_callbacks(run_dir, cfg, state, model)
                              + list(extra_callbacks or []),
                              shuffle=False, verbose=_verbosity(progress))
            except KeyboardInterrupt:
                log.warning(f"\ninterrupted; continue with: fakeface train --resume {run_dir}")
                raise
        return _finish(cfg, run_dir, strategy.scope(), valid_ds, saved_models_dir)


def _finish(cfg: Config, run_dir: Path, scope, valid_ds, saved_models_dir: Path) -> Path:
    """Evaluate the best checkpoint (loaded in `scope`, a strategy's or none) on `valid_ds`,
    write metrics.json, model.keras and saved_model/, mark the run finished and publish it."""
    from fakeface_tf.export import export_saved_model, exportable, validation_metrics

    with scope:
        best = _load_checkpoint(run_dir / "checkpoints" / "best.keras", run_dir, compile=False)
        best = exportable(best, cfg)
    metrics = validation_metrics(best, valid_ds)
    state = _read_state(run_dir)
    epochs = len((run_dir / "history.csv").read_text().splitlines()) - 1
    metrics.update(split="valid", threshold=0.5, epochs=epochs,
                   train_seconds=state.get("train_seconds", 0.0))
    write_text_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    save_model_atomic(best, run_dir / "model.keras")
    export_saved_model(best, run_dir / "saved_model")
    state.update(finished=True, stopped_early=epochs < cfg.training.epochs)
    write_text_atomic(run_dir / "state.json", json.dumps(state, indent=2))
    _publish(run_dir, saved_models_dir)
    return run_dir


def _publish(run_dir: Path, saved_models_dir: Path) -> Path:
    """Copy the exported model and its records to `saved_models/<run id>/`."""
    target = saved_models_dir / run_dir.name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in EXPORTED:
        source = run_dir / name
        if source.is_dir():
            shutil.copytree(source, target / name)
        elif source.is_file():
            shutil.copy2(source, target / name)
    return target


def _saved_models_dir(runs_dir: Path, saved_models_dir) -> Path:
    """`saved_models/` beside the runs folder unless given (tests keep it in tmp)."""
    return Path(saved_models_dir) if saved_models_dir else runs_dir.resolve().parent / "saved_models"


def train(cfg: Config, runs_dir: str | Path = "runs", progress: bool = True,
          saved_models_dir: str | Path | None = None, callbacks: list | None = None) -> Path | None:
    """Train `cfg` into a new run folder under `runs_dir` and return that folder (None on a
    multi-worker run's workers other than the chief, which writes the folder).

    `callbacks` are extra Keras callbacks (tune reports through them); `saved_models_dir`
    defaults to `saved_models/` beside `runs_dir`.
    """
    from fakeface_tf.export import save_environment
    from fakeface_tf.models import check_model_config

    cfg.validate()
    runs_dir = Path(runs_dir)
    check_model_config(cfg)  # fail before creating an empty run folder
    cut = training_cut(cfg)
    if cfg.distribute == "multiworker" and not _strategy(cfg).extended.should_checkpoint:
        # another worker of a multi-worker run: the chief alone writes the run folder
        return _fit(cfg, None, progress, _saved_models_dir(runs_dir, saved_models_dir), callbacks)
    run_dir = _new_run_dir(cfg, runs_dir)
    cfg.save(run_dir / "config.yaml")
    save_cut(run_dir, cut)
    save_environment(run_dir, cfg)
    log.info(f"run folder: {run_dir}")
    return _fit(cfg, run_dir, progress, _saved_models_dir(runs_dir, saved_models_dir), callbacks)


def resume(run_dir: str | Path, progress: bool = True, saved_models_dir: str | Path | None = None,
           callbacks: list | None = None) -> Path | None:
    """Continue an interrupted run after its last completed epoch (or just finish its export);
    None on a multi-worker run's workers other than the chief."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FakefaceError(f"--resume: {run_dir} is not a run folder (no config.yaml)")
    cfg = load_config(run_dir / "config.yaml")
    return _fit(cfg, run_dir, progress, _saved_models_dir(run_dir.parent, saved_models_dir),
                callbacks)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="YAML config, e.g. configs/fast.yaml")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override config values, e.g. --set model.dropout=0.3 optimizer.lr=1e-3")
    parser.add_argument("--runs-dir", default="runs", help="where run folders go (default: runs)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.resume:
        run_dir = resume(args.resume, progress=not args.quiet)
    elif args.config:
        run_dir = train(load_config(args.config, args.set), args.runs_dir, progress=not args.quiet)
    else:
        raise FakefaceError("give a CONFIG file (e.g. configs/fast.yaml) or --resume RUN_DIR")
    if run_dir is None:  # a multi-worker run's other worker
        print("worker done: the chief wrote the run folder")
        return 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    print(f"run folder: {run_dir}")
    print("validation: " + ", ".join(
        f"{k} {metrics[k]:.4f}" for k in ("accuracy", "auc", "f1", "loss")))
    return 0
