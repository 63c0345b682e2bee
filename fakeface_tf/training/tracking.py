"""MLflow tracking: a searchable mirror of each run folder (parameters, curves, metrics, plots).

The run folder stays the source of truth; MLflow mirrors it. On by default when mlflow (the
`[track]` extra) is installed, off with `training.tracking: off`. The store is
$MLFLOW_TRACKING_URI, else `sqlite:///<runs dir>/mlflow.db` beside the run folders (MLflow 3
refuses a plain folder store); the experiment is the config's name. The MLflow run id is kept in
the run folder (`mlflow_run.json`), so `--resume` continues the same MLflow run, and
`import_runs` mirrors run folders trained without tracking. We use `MlflowClient`, not the
global `mlflow.start_run`, so nothing leaks between runs (tune trials, tests).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import time
from pathlib import Path

import pandas as pd

from fakeface_tf.core.config import Config, load_config
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.files import read_json_object, write_text_atomic
from fakeface_tf.core.run_folder import CARD_FILE, MLFLOW_ARTIFACTS_DIR, MLFLOW_DB_FILE, RunFolder
from fakeface_tf.core.text import flat_config

log = logging.getLogger(__name__)

URI_ENV = "MLFLOW_TRACKING_URI"
INSTALL_HINT = "pip install 'fakeface_tf[track]'"
MAX_BATCH = 100  # MLflow's log_batch takes at most 100 parameters at a time
# metrics.json's figures of the best checkpoint are logged as best_<name> (best_auc), apart from
# the per-epoch curves Keras names the same (auc is the training AUC of each epoch); these
# figures of the whole run keep their names.
BEST_PREFIX = "best_"
RUN_FIGURES = ("epochs", "train_seconds", "threshold")
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag: the UI nests a tune search's trials


SQLITE = "sqlite:///"  # a local store's URI: this prefix, then the database file's path


def tracking_uri(runs_dir: Path) -> str:
    """$MLFLOW_TRACKING_URI (a team server), else the SQLite store beside the run folders."""
    return os.environ.get(URI_ENV) or f"{SQLITE}{(Path(runs_dir) / MLFLOW_DB_FILE).resolve()}"


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a local SQLite store's URI; None for any other store."""
    return Path(uri[len(SQLITE):]) if uri.startswith(SQLITE) else None


def shown(uri: str, base: Path | None = None) -> str:
    """A store's URI as a person reads it: a local SQLite file under `base` (default: the
    working folder) by its relative path (sqlite:///runs/mlflow.db), so logs, notebooks and
    registered.json name no machine's folders."""
    path, base = _sqlite_file(uri), (base or Path.cwd()).resolve()
    return f"{SQLITE}{path.relative_to(base)}" if path and path.is_relative_to(base) else uri


def _artifacts(runs_dir: Path) -> str | None:
    """Where a new experiment keeps its files: beside the local store (MLflow's default is
    ./mlruns in whatever folder training started from); a server's own default otherwise."""
    if os.environ.get(URI_ENV):
        return None
    return (Path(runs_dir) / MLFLOW_ARTIFACTS_DIR).resolve().as_uri()


def flat(values: dict) -> dict[str, str]:
    """A nested config mapping as {"section.key": "value"}: MLflow parameters are flat strings."""
    return {k: str(v) for k, v in flat_config(values).items()}


def run_tags(cfg: Config, run: RunFolder) -> dict[str, str]:
    """Git commit and dirty flag, the records' hash and face cut, package versions (env.json)
    and the run folder's path: what names the code, data and machine behind the run."""
    env = read_json_object(run.env) or {}
    git, data = env.get("git") or {}, env.get("data") or {}
    cut = read_json_object(run.face_cut) or {}
    tags = {"git.commit": git.get("commit"), "git.dirty": git.get("dirty"),
            "data.path": cfg.data.path,
            # env.json's, taken when the run started: the records may have changed since
            "data.hash": data.get("hash"),
            "run_folder": str(run.path.resolve())}
    tags.update({f"face_cut.{k}": v for k, v in cut.items()})
    tags.update({f"version.{k}": v for k, v in (env.get("packages") or {}).items()})
    return {k: str(v) for k, v in tags.items() if v is not None}


def _experiment(client, name: str, runs_dir: Path) -> str:
    """The id of experiment `name`, created (files beside the local store) if new."""
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(
        name, _artifacts(runs_dir))


def mlflow_client(uri: str):
    """An MlflowClient on `uri`."""
    # Imported here: mlflow is an optional extra ([track]) and takes seconds to import.
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def installed() -> bool:
    """Whether the optional `[track]` extra is there (without importing it: that takes seconds)."""
    return importlib.util.find_spec("mlflow") is not None


class Tracker:
    """One MLflow run mirroring one run folder."""

    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id

    @classmethod
    def open(cls, cfg: Config, run: RunFolder, parent: "Tracker | None" = None) -> "Tracker":
        """The MLflow run of `run` (its mlflow_run.json), or a new one with the config as
        parameters and the tags of `run_tags`, recorded in the run folder. Under `parent` (a
        tune search) it is a nested run in the parent's experiment."""
        known = read_json_object(run.mlflow_run) if run.mlflow_run.is_file() else None
        if known:
            client = mlflow_client(known["tracking_uri"])
            client.update_run(known["run_id"], status="RUNNING")
            return cls(client, known["run_id"])
        tags = run_tags(cfg, run)
        if parent is not None:
            client, experiment_id = parent.client, parent.experiment_id()
            tags[PARENT_TAG] = parent.run_id
        else:
            client = mlflow_client(tracking_uri(run.path.parent))
            experiment_id = _experiment(client, cfg.name, run.path.parent)
        created = client.create_run(experiment_id, run_name=run.path.name, tags=tags)
        tracker = cls(client, created.info.run_id)
        tracker.log_params(flat(cfg.to_dict()))
        write_text_atomic(run.mlflow_run, json.dumps(
            {"run_id": tracker.run_id, "tracking_uri": client.tracking_uri,
             "experiment": client.get_experiment(experiment_id).name}, indent=2))
        return tracker

    def experiment_id(self) -> str:
        return self.client.get_run(self.run_id).info.experiment_id

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param  # optional extra (see mlflow_client)

        items = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), MAX_BATCH):
            self.client.log_batch(self.run_id, params=items[start:start + MAX_BATCH])

    def log_metrics(self, values: dict, step: int) -> None:
        """The finite numbers of `values` at `step` (an epoch; 0 for final figures)."""
        from mlflow.entities import Metric  # optional extra (see mlflow_client)

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in values.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)
                   and math.isfinite(float(v))]
        for start in range(0, len(metrics), MAX_BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[start:start + MAX_BATCH])

    def callback(self):
        """A Keras callback logging each epoch's logs (loss, auc, val_auc, lr ...) at its epoch."""
        from fakeface_tf.training.callbacks import EachEpoch  # Keras: only once training

        return EachEpoch(lambda epoch, logs: _safely(self.log_metrics, logs, step=epoch))

    def finish(self, run: RunFolder) -> None:
        """Log the final metrics (metrics.json: best_auc ...), the plots and card as artifacts;
        end the run."""
        final = read_json_object(run.metrics) or {}
        self.log_metrics({k if k in RUN_FIGURES else f"{BEST_PREFIX}{k}": v
                          for k, v in final.items()}, step=0)
        for path in sorted(run.path.glob("*.png")) + [run.path / CARD_FILE]:
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status="FINISHED")


def _safely(call, *args, **kwargs):
    """Run one mirroring call; a failing store (a server down, a locked file) logs a warning
    instead of stopping training: the run folder has every figure anyway."""
    try:
        return call(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any MLflow failure; the mirror is optional
        log.warning(f"MLflow tracking failed ({type(exc).__name__}: {exc}); the run folder is "
                    f"complete, mirror it later with: fakeface track-import RUN_DIR")
        return None


def _wanted(cfg: Config) -> bool:
    """Whether `cfg` is tracked: `training.tracking` on and mlflow installed (else one log
    line why not)."""
    if not cfg.training.tracking:
        log.info("MLflow tracking off (training.tracking: off)")
        return False
    if not installed():
        log.info(f"MLflow tracking off: mlflow is not installed ({INSTALL_HINT})")
        return False
    return True


def start(cfg: Config, run: RunFolder, parent: Tracker | None = None) -> Tracker | None:
    """The tracker of a training run (nested under `parent`, a tune search), or None when
    tracking is off or mlflow is not installed."""
    if not _wanted(cfg):
        return None
    tracker = _safely(Tracker.open, cfg, run, parent)
    if tracker is not None:
        log.info(f"MLflow run {tracker.run_id} in {shown(tracker.client.tracking_uri)}")
    return tracker


def start_search(cfg: Config, runs_dir: Path, name: str, space: dict) -> Tracker | None:
    """The parent MLflow run of a tune search (its trials nest under it), with the search
    space and the base config as parameters; None when tracking is off."""
    if not _wanted(cfg):
        return None

    def open_parent() -> Tracker:
        client = mlflow_client(tracking_uri(runs_dir))
        created = client.create_run(_experiment(client, cfg.name, runs_dir), run_name=name,
                                    tags={"kind": "tune search"})
        tracker = Tracker(client, created.info.run_id)
        tracker.log_params({**flat(cfg.to_dict()),
                            **{f"space.{k}": str(v) for k, v in space.items()}})
        return tracker

    tracker = _safely(open_parent)
    if tracker is not None:
        log.info(f"MLflow search run {tracker.run_id} in {shown(tracker.client.tracking_uri)}")
    return tracker


def finish_search(tracker: Tracker | None, best: dict | None) -> None:
    """End a search's parent run with its best trial's figures and run folder."""
    if tracker is None:
        return

    def end() -> None:
        if best:
            tracker.log_metrics({f"best_trial.{k}": v for k, v in best.items()}, step=0)
            tracker.client.set_tag(tracker.run_id, "best_trial.run_folder",
                                   str(Path(best["run_folder"]).resolve()))
        tracker.client.set_terminated(tracker.run_id, status="FINISHED")

    _safely(end)


def finish(tracker: Tracker | None, run: RunFolder) -> None:
    """End `tracker`'s run after finalising (nothing without one)."""
    if tracker is not None:
        _safely(tracker.finish, run)


def import_run(run_dir: str | os.PathLike) -> str:
    """Mirror one run folder into MLflow (its config, every epoch of history.csv, final
    metrics, plots and card); a folder already tracked gets its final metrics and artifacts
    logged again (say, after its card was written). Returns the MLflow run id."""
    run = RunFolder(run_dir)
    if not run.is_run():
        raise FakefaceError(f"{run.path}: not a run folder (no config.yaml and history.csv)")
    known = run.mlflow_run.is_file()
    tracker = Tracker.open(load_config(run.config), run)
    if not known:
        history = pd.read_csv(run.history)
        for row in history.to_dict("records"):
            epoch = int(row.pop("epoch"))
            tracker.log_metrics(row, step=epoch)
    tracker.finish(run)
    return tracker.run_id


def import_runs(run_dirs) -> list[str]:
    """`import_run` for each of `run_dirs`, in order; the MLflow run ids."""
    return [import_run(d) for d in run_dirs]


def search_folders(runs_dir: str | os.PathLike, where: str) -> set[Path]:
    """The run folders whose MLflow runs match `where`, in MLflow's search syntax
    (`metrics.best_auc > 0.95 and params.model.name = 'faceres'`), from the store beside
    `runs_dir` (or $MLFLOW_TRACKING_URI)."""
    if not installed():
        raise FakefaceError(f"--where searches the MLflow store: {INSTALL_HINT}")
    store = Path(runs_dir) / MLFLOW_DB_FILE
    if not os.environ.get(URI_ENV) and not store.is_file():
        raise FakefaceError(f"--where searches the MLflow store, and {store} does not exist: "
                            f"fakeface track-import {runs_dir}/* mirrors runs made without it")
    from mlflow.exceptions import MlflowException  # the optional [track] extra

    client = mlflow_client(tracking_uri(Path(runs_dir)))
    experiments = [e.experiment_id for e in client.search_experiments()]
    try:
        found = client.search_runs(experiments, filter_string=where) if experiments else []
    except MlflowException as exc:
        raise FakefaceError(f"--where {where!r}: {exc.message.splitlines()[0]}") from None
    return {Path(r.data.tags["run_folder"]) for r in found if "run_folder" in r.data.tags}



def _reachable(uri: str) -> bool:
    """Whether a run's store is still there: a local SQLite file that is gone (a model folder
    copied to another machine) is not recreated empty."""
    path = _sqlite_file(uri)
    return path is None or path.is_file()


def log_report(model_root: str | os.PathLike, report: str, figures: dict,
               out: str | os.PathLike | None = None) -> str | None:
    """Log a report on a tracked run (its folder has mlflow_run.json) to that MLflow run:
    `figures`' numbers, flattened (counts.fake, band.coverage ...), as `<report>.<name>`
    metrics and `out` as artifacts (a folder's files under `<report>/`, a file as itself).
    Nothing for an untracked folder, without mlflow, or when its store is gone; a failing
    store logs a warning. Returns the MLflow run id logged to, else None."""
    known_file = RunFolder(model_root).mlflow_run
    if not known_file.is_file():
        return None
    if not installed():
        log.info(f"{report} not mirrored to MLflow: mlflow is not installed ({INSTALL_HINT})")
        return None
    known = read_json_object(known_file) or {}
    if not _reachable(known.get("tracking_uri", "")):
        log.info(f"{report} not mirrored to MLflow: its store {known.get('tracking_uri')} is gone")
        return None

    def mirror() -> str:
        tracker = Tracker(mlflow_client(known["tracking_uri"]), known["run_id"])
        # log_metrics keeps only the finite numbers of the flattened report
        tracker.log_metrics({f"{report}.{k}": v for k, v in flat_config(figures).items()}, step=0)
        if out is not None and Path(out).is_dir():
            tracker.client.log_artifacts(tracker.run_id, str(out), artifact_path=report)
        elif out is not None and Path(out).is_file():
            tracker.client.log_artifact(tracker.run_id, str(out))
        log.info(f"{report} logged to MLflow run {tracker.run_id}")
        return tracker.run_id

    return _safely(mirror)
