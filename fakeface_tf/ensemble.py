"""Average the logits of independently trained runs into one Keras model.

Models trained with different seeds on a small data set make partly different mistakes, so
their average scores better than any one of them. The ensemble is a single flat functional
graph (member i's layers renamed `m<i>_<name>`), so it saves as `.keras` and SavedModel, loads
in plain Keras, and explanations can reach every member's feature maps.
"""

from __future__ import annotations

import logging
import argparse
import dataclasses
import json
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from fakeface_tf.artifacts import MEMBER_PREFIX
from fakeface_tf.errors import FakefaceError
from fakeface_tf.faces import save_cut
from fakeface_tf.files import save_model_atomic, write_text_atomic

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)


def ensemble(members: list[keras.Model], name: str = "ensemble") -> keras.Model:
    """One model whose `logit` is the mean of the members' `logit` layers (same input shape)."""
    import keras
    from keras import layers

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


def build_from_runs(run_dirs: list, out: str | Path, batch_size: int = 64) -> Path:
    """Ensemble the best models of `run_dirs` (same crops), score it on their validation split
    and write a model folder like a run's: model.keras, saved_model/, config.yaml, metrics.json."""
    from fakeface_tf import artifacts

    for run in run_dirs:  # every path checked before TensorFlow loads
        artifacts.find_model(run)
    from fakeface_tf import data
    from fakeface_tf.export import (export_saved_model, exportable, save_environment,
                                    validation_metrics)

    loaded = [artifacts.load_model(run) for run in run_dirs]
    for run, model in zip(run_dirs, loaded):
        if model.keras_model is None or model.config is None:
            raise FakefaceError(f"{run}: an ensemble member needs model.keras and config.yaml")
        if model.face_options != loaded[0].face_options or model.config.data.path != loaded[0].config.data.path:
            raise FakefaceError(f"{run}: cut from other records or with other face settings "
                                f"than {run_dirs[0]}; members must score the same crops")
    out = Path(out)
    cfg = dataclasses.replace(loaded[0].config, name=out.name)
    model = exportable(ensemble([m.keras_model for m in loaded], name=out.name), cfg)
    valid = data.make_dataset(data.records_path(cfg), "valid", batch_size=batch_size)
    metrics = validation_metrics(model, valid)
    metrics.update(split="valid", threshold=0.5, members=len(loaded))
    for i, member in enumerate(loaded):
        member_metrics = json.loads((member.root / "metrics.json").read_text())
        metrics[f"member{i}_auc"] = member_metrics.get("auc")
        metrics[f"member{i}_run"] = member.root.name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    cfg.save(out / "config.yaml")
    save_cut(out, loaded[0].face_options)
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    save_environment(out, cfg)
    save_model_atomic(model, out / "model.keras")
    export_saved_model(model, out / "saved_model")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="run folders (or model folders) to average, at least two")
    parser.add_argument("--out", required=True, help="folder to write the ensemble to")


def run(args: argparse.Namespace) -> int:
    out = build_from_runs(args.runs, args.out)
    metrics = json.loads((out / "metrics.json").read_text())
    members = ", ".join(f"{metrics[f'member{i}_auc']:.4f}" for i in range(metrics["members"]))
    log.info(f"ensemble of {metrics['members']}: valid AUC {metrics['auc']:.4f} "
          f"(members {members}), accuracy {metrics['accuracy']:.4f}\nwritten to {out}")
    return 0
