"""Register a shipped model folder in MLflow's model registry (`fakeface register`).

The version carries what names the model: its weights' content hash, the records' hash it
was trained on, the git commit that trained it, its validation metrics (metrics.json) and
every evaluation shipped beside it (`<report>/metrics.json`: test split, other generators).
registered.json beside the weights records the name and version, so `serve` shows
models:/NAME/VERSION. Registering the same weights again returns their version, not a new one.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from fakeface_tf.core.config import load_config, portable_path, records_dir, work_root
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.files import read_json_object, write_text_atomic
from fakeface_tf.core.run_folder import METRICS_FILE, RunFolder
from fakeface_tf.data.records import records_hash
from fakeface_tf.models import model_version
from fakeface_tf.models.artifacts import find_model, model_root
from fakeface_tf.training import tracking

log = logging.getLogger(__name__)

HASH_TAG = "content_hash"
REPORT_FIGURES = ("accuracy", "roc_auc", "recall")  # per shipped evaluation, as version tags


def _data_hash(root: Path, env: dict) -> tuple[str | None, str]:
    """The records' hash from `env` (env.json, taken when training started), else from the
    records the config names if they are on this machine; and where it came from."""
    if (env.get("data") or {}).get("hash"):
        return env["data"]["hash"], "env.json at training"
    config = RunFolder(root).config
    if config.is_file():
        found = records_hash(records_dir(load_config(config).data.path))
        if found:
            return found, "records at registration"
    return None, "unknown: no hash in env.json and the records are not here"


def version_tags(root: Path, weights: Path) -> dict[str, str]:
    """What a registered version records: hashes, commit, metrics of training and reports."""
    env = read_json_object(RunFolder(root).env) or {}
    git = env.get("git") or {}
    data, source = _data_hash(root, env)
    tags = {HASH_TAG: model_version.content_hash(weights), "data.hash": data,
            "data.hash_source": source, "git.commit": git.get("commit"),
            "git.dirty": git.get("dirty"), "model_folder": portable_path(root)}
    validation = read_json_object(RunFolder(root).metrics) or {}
    tags.update({f"validation.{k}": validation.get(k) for k in ("accuracy", "auc", "f1")})
    for report in sorted(root.glob(f"*/{METRICS_FILE}")):
        figures = read_json_object(report) or {}
        tags.update({f"{report.parent.name}.{k}": figures.get(k) for k in REPORT_FIGURES})
    return {k: str(v) for k, v in tags.items() if v is not None}


def _existing(client, name: str, weights_hash: str):
    """The version of `name` that registered these weights, if any."""
    found = client.search_model_versions(f"name = '{name}' and tags.{HASH_TAG} = '{weights_hash}'")
    return max(found, key=lambda v: int(v.version), default=None)


def register(model_dir: str | os.PathLike, name: str | None = None,
             runs_dir: str | os.PathLike = "runs") -> dict:
    """Register the model in `model_dir` as a version of `name` (default: the folder's name)
    in the store beside `runs_dir` (or $MLFLOW_TRACKING_URI); write registered.json beside it
    and return that record."""
    if not tracking.installed():
        raise FakefaceError(f"register needs MLflow: {tracking.INSTALL_HINT}")
    weights, root = find_model(model_dir), model_root(model_dir)
    name = name or root.resolve().name
    tags = version_tags(root, weights)
    client = tracking.mlflow_client(tracking.tracking_uri(Path(runs_dir)))
    version = _existing(client, name, tags[HASH_TAG])
    if version is None:
        if not client.search_registered_models(f"name = '{name}'"):
            client.create_registered_model(name, description="fakeface_tf real-vs-fake detector")
        known = read_json_object(RunFolder(root).mlflow_run) or {}
        run_id = known.get("run_id") if known.get("tracking_uri") == client.tracking_uri else None
        version = client.create_model_version(name, source=root.resolve().as_uri(),
                                              run_id=run_id, tags=tags)
        log.info(f"registered {root} as {model_version.registry_uri(name, version.version)}")
    else:
        log.info(f"{root}: these weights are already "
                 f"{model_version.registry_uri(name, version.version)}")
    record = {"name": name, "version": int(version.version), HASH_TAG: tags[HASH_TAG],
              "data_hash": tags.get("data.hash"),
              "store": tracking.shown(client.tracking_uri, work_root()),
              "registered": time.strftime("%Y-%m-%dT%H:%M:%S",
                                          time.localtime(version.creation_timestamp / 1000))}
    write_text_atomic(RunFolder(root).registered, json.dumps(record, indent=2))
    return record
