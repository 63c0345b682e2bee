"""Average the logits of independently trained runs into one Keras model.

Models trained with different seeds on a small data set make partly different mistakes, so
their average scores better than any one of them. The ensemble is a single flat functional
graph (member i's layers renamed `m<i>_<name>`), so it saves as `.keras` and SavedModel, loads
in plain Keras, and explanations can reach every member's feature maps.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import keras
from keras import layers

from fakeface_tf.core.config import Config
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.files import save_model_atomic, write_text_atomic
from fakeface_tf.core.run_folder import CONFIG_FILE, MODEL_FILE, RunFolder
from fakeface_tf.data import datasets
from fakeface_tf.data.face_cut import save_cut
from fakeface_tf.models import artifacts
from fakeface_tf.models.artifacts import MEMBER_PREFIX, LoadedModel
from fakeface_tf.models.export import export_saved_model, exportable, save_environment, validation_metrics


def ensemble(members: list[keras.Model], name: str = "ensemble") -> keras.Model:
    """One model whose `logit` is the mean of the members' `logit` layers (same input shape)."""
    if len(members) < 2:
        raise FakefaceError("an ensemble needs at least two models")
    shape = tuple(members[0].input_shape[1:])
    for i, member in enumerate(members):
        if tuple(member.input_shape[1:]) != shape:
            raise FakefaceError(f"ensemble member {i} takes {member.input_shape[1:]}, member 0 takes {shape}")
    # TensorFlow scopes allow letters, digits and _.-/> only (and no leading _ - / >).
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip("_-") or "ensemble"
    inputs = keras.Input(shape, name="image")
    logits = []
    for i, member in enumerate(members):
        prefix = MEMBER_PREFIX.format(i)

        def renamed(layer, prefix=prefix):
            config = layer.get_config()
            config["name"] = prefix + layer.name
            return layer.__class__.from_config(config)

        clone = keras.models.clone_model(member, input_tensors=inputs, clone_function=renamed)
        clone.set_weights(member.get_weights())
        logits.append(clone.get_layer(prefix + "logit").output)
    logit = layers.Average(name="logit")(logits)
    prob = layers.Activation("sigmoid", dtype="float32", name="prob")(logit)
    return keras.Model(inputs, prob, name=name)


def _load_members(run_dirs: list) -> list[LoadedModel]:
    """The best models of `run_dirs`, refused unless each has a .keras model and a config and
    all score the same crops (same records, same face cut). Every path is checked first."""
    for run in run_dirs:
        artifacts.find_model(run)
    members = [artifacts.load_model(run) for run in run_dirs]
    first = members[0]
    for run, member in zip(run_dirs, members):
        if member.keras_model is None or member.config is None:
            raise FakefaceError(f"{run}: an ensemble member needs {MODEL_FILE} and {CONFIG_FILE}")
        if member.face_options != first.face_options or member.config.data.path != first.config.data.path:
            raise FakefaceError(f"{run}: cut from other records or with other face settings "
                                f"than {run_dirs[0]}; members must score the same crops")
    return members


def _scored_metrics(model: keras.Model, cfg: Config, members: list[LoadedModel],
                    batch_size: int) -> dict:
    """The ensemble's figures on the validation split, with each member's recorded AUC."""
    valid = datasets.make_dataset(datasets.records_path(cfg), "valid", batch_size=batch_size)
    metrics = validation_metrics(model, valid)
    metrics.update(split="valid", threshold=0.5, members=len(members))
    for i, member in enumerate(members):
        member_metrics = json.loads(RunFolder(member.root).metrics.read_text())
        metrics[f"member{i}_auc"] = member_metrics.get("auc")
        metrics[f"member{i}_run"] = member.root.name
    return metrics


def build_from_runs(run_dirs: list, out: str | Path, batch_size: int = 64) -> Path:
    """Ensemble the best models of `run_dirs` (same crops), score it on their validation split
    and write a model folder like a run's: model.keras, saved_model/, config.yaml, metrics.json."""
    members = _load_members(run_dirs)
    folder = RunFolder(out)
    cfg = dataclasses.replace(members[0].config, name=folder.path.name)
    model = exportable(ensemble([m.keras_model for m in members], name=folder.path.name), cfg)
    metrics = _scored_metrics(model, cfg, members, batch_size)
    if folder.path.exists():
        shutil.rmtree(folder.path)
    folder.path.mkdir(parents=True)
    cfg.save(folder.config)
    save_cut(folder.path, members[0].face_options)
    write_text_atomic(folder.metrics, json.dumps(metrics, indent=2))
    save_environment(folder.path, cfg)
    save_model_atomic(model, folder.model)
    export_saved_model(model, folder.saved_model)
    return folder.path
