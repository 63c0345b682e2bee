"""Train a model from a config into an isolated, reproducible, resumable run folder.

`runs/<name>-<config digest>-<YYYYmmdd-HHMMSS>/` holds the resolved `config.yaml`, `env.json`,
`history.csv` (Keras CSVLogger: `epoch` counts from 0), `tensorboard/`,
`checkpoints/{best,last}.keras`, `metrics.json` (validation metrics of the best checkpoint),
`model.keras` and `saved_model/` (serving signature: uint8 NxHxWxC -> {"prob": (N, 1)}).
The exported files are copied to `saved_models/<run id>/`. `state.json` records finished
epochs, so `fakeface train --resume RUN_DIR` picks up after the last completed epoch with
the optimizer state of `checkpoints/last.keras`. The state, checkpoints, config, metrics and
`model.keras` are written atomically (`core/files.py`): a kill leaves the old file or the new
one. `--resume` refuses a torn state.json or checkpoint (one copied in half, say) in one line.

This module picks the loop, then finalises: Keras `fit` on one machine (fitting.py) or the
multi-worker loop (multiworker.py), then evaluation, export and publishing (finalise.py).
The file names of a run folder are `core/run_folder.py`'s.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from fakeface_tf.core.config import Config, load_config
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.run_folder import CONFIG_FILE, RunFolder
from fakeface_tf.data.face_cut import save_cut
from fakeface_tf.models.export import save_environment
from fakeface_tf.models.registry import check_model_config
from fakeface_tf.training import finalise, fitting, inputs, multiworker, runtime, tracking
from fakeface_tf.training.hparams import write_hparams

log = logging.getLogger(__name__)


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


def _fit(cfg: Config, run: RunFolder | None, progress: bool, saved_models_dir: Path,
         extra_callbacks: list | None, parent: tracking.Tracker | None = None) -> Path | None:
    """Train (or continue, per state.json) with the loop `cfg.distribute` asks for, then
    evaluate, export and publish the best model. None on a multi-worker run's workers other
    than the chief (which start with no run folder): the chief alone finalises."""
    loop = multiworker.fit if cfg.distribute == "multiworker" else fitting.fit
    tracker = tracking.start(cfg, run, parent) if run is not None else None  # the MLflow mirror
    if run is not None:
        write_hparams(cfg, run)  # TensorBoard's HParams view of the same settings
    # the mirror first: an extra callback that stops the fit still finds the epoch logged
    callbacks = ([tracker.callback()] if tracker else []) + list(extra_callbacks or [])
    with runtime.precision(cfg.training):
        fitted = loop(cfg, run, progress, callbacks)
        if fitted is None:
            return None
        finished = finalise.finish(cfg, run, fitted.scope, fitted.valid, saved_models_dir)
    tracking.finish(tracker, run)
    return finished


def _saved_models_dir(runs_dir: Path, saved_models_dir) -> Path:
    """`saved_models/` beside the runs folder unless given (tests keep it in tmp)."""
    return Path(saved_models_dir) if saved_models_dir else runs_dir.resolve().parent / "saved_models"


def train(cfg: Config, runs_dir: str | Path = "runs", progress: bool = True,
          saved_models_dir: str | Path | None = None, callbacks: list | None = None,
          tracking_parent: tracking.Tracker | None = None) -> Path | None:
    """Train `cfg` into a new run folder under `runs_dir` and return that folder (None on a
    multi-worker run's workers other than the chief, which writes the folder).

    `callbacks` are extra Keras callbacks; `saved_models_dir` defaults to `saved_models/`
    beside `runs_dir`; `tracking_parent` nests the MLflow run under a tune search's.
    """
    cfg.validate()
    runs_dir = Path(runs_dir)
    check_model_config(cfg)  # fail before creating an empty run folder
    cut = inputs.training_cut(cfg)
    published = _saved_models_dir(runs_dir, saved_models_dir)
    if (cfg.distribute == "multiworker"
            and not runtime.strategy(cfg.distribute).extended.should_checkpoint):
        # another worker of a multi-worker run: the chief alone writes the run folder
        return _fit(cfg, None, progress, published, callbacks)
    run = RunFolder(_new_run_dir(cfg, runs_dir))
    cfg.save(run.config)
    save_cut(run.path, cut)
    save_environment(run.path, cfg)
    log.info(f"run folder: {run.path}")
    return _fit(cfg, run, progress, published, callbacks, tracking_parent)


def resume(run_dir: str | Path, progress: bool = True, saved_models_dir: str | Path | None = None,
           callbacks: list | None = None) -> Path | None:
    """Continue an interrupted run after its last completed epoch (or just finish its export);
    None on a multi-worker run's workers other than the chief."""
    run = RunFolder(run_dir)
    # Its config is all a run needs to go on: a run killed before its first epoch ended has
    # no history.csv yet, so `RunFolder.is_run()` would refuse it.
    if not run.config.is_file():
        raise FakefaceError(f"--resume: {run.path} is not a run folder (no {CONFIG_FILE})")
    cfg = load_config(run.config)
    return _fit(cfg, run, progress, _saved_models_dir(run.path.parent, saved_models_dir),
                callbacks)
