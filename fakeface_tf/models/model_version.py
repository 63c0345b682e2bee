"""Which version of a model this is: its registry version, else a hash of its weights.

`fakeface register` records the model registry's name and version beside the weights
(registered.json, with the weights' hash); `serve` shows that version while the weights are
the ones registered, and the weights' own hash otherwise (a retrained or unregistered model).
"""

from __future__ import annotations

import logging
from pathlib import Path

from fakeface_tf.core.files import read_json_object, sha256
from fakeface_tf.core.run_folder import RunFolder

log = logging.getLogger(__name__)

SAVED_MODEL_PB = "saved_model.pb"  # TensorFlow's own file name inside a SavedModel folder
HASH_DIGITS = 12


def content_hash(model_path: str | Path) -> str:
    """The first 12 hex digits of the SHA-256 of the weights file (model.keras, or a
    SavedModel's saved_model.pb): the same weights give the same hash on any machine."""
    path = Path(model_path)
    return sha256(path if path.is_file() else path / SAVED_MODEL_PB)[:HASH_DIGITS]


def registry_uri(name: str, version: int | str) -> str:
    """MLflow's URI of a registered model version: models:/NAME/VERSION."""
    return f"models:/{name}/{version}"


def version(root: str | Path, weights: str) -> str:
    """The registry version (models:/NAME/VERSION) that registered.json beside the model
    names for the weights whose `content_hash` is `weights`, else that hash."""
    file = RunFolder(root).registered
    record = read_json_object(file) if file.is_file() else None
    if not record or not {"name", "version", "content_hash"} <= record.keys():
        if file.exists():
            log.warning(f"{file} is not a registration (name, version, content_hash): "
                        f"showing the content hash")
        return weights
    if record["content_hash"] != weights:
        log.warning(f"{file} registered other weights ({record['content_hash']}, these are "
                    f"{weights}): showing the content hash; run fakeface register again")
        return weights
    return registry_uri(record["name"], record["version"])
