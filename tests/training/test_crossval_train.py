"""A trained recipe under the probes' folds: each fold's records hold out exactly that fold,
choose the epoch on a grouped tenth of the rest, and the trained run is scored like a probe."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fakeface_tf.core.config import REPO_ROOT
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data import records
from fakeface_tf.training import crossval, crossval_train

from conftest import tiny_config, write_synthetic_records
from test_crossval import _faces


def test_fold_holds_out_its_outer_fold_and_validates_on_a_grouped_tenth_of_the_rest():
    paths, labels = _faces(200)
    outer = crossval.folds(paths, labels, k=5, seed=0)
    for fold in range(5):
        splits = crossval_train.fold_splits(paths, labels, fold, k=5, seed=0)
        assert np.array_equal(splits == "test", outer == fold)
        assert np.array_equal(splits, crossval_train.fold_splits(paths, labels, fold, k=5, seed=0))
        valid = (splits == "valid").sum() / (outer != fold).sum()
        assert 0.07 < valid < 0.13 and {0, 1} <= set(labels[splits == "valid"])
        groups = pd.DataFrame({"group": [crossval.identity(p) for p in paths], "split": splits})
        assert groups.groupby("group")["split"].nunique().max() == 1  # no identity straddles


def test_fold_records_hold_every_face_once_with_its_new_split(tmp_path):
    source = write_synthetic_records(tmp_path / "records", size=16,
                                     per_split={"train": 100, "valid": 30, "test": 10})
    faces = list(crossval_train._raw(source))
    assert len(faces) == 130  # train and valid only: the records' test split is never read
    splits = np.array(["train", "train", "valid", "test", "train"] * 26, dtype=object)
    out = crossval_train.write_fold(source, tmp_path / "fold", splits)
    for split in ("train", "valid", "test"):
        stored = records.read_all(out, split)
        assert sorted(e["path"].decode() for e in stored) == sorted(
            path for (_, path, _), s in zip(faces, splits) if s == split)
        assert {e["split"].decode() for e in stored} == {split}
    assert len(records.shard_files(out, "train")) == 2  # 78 faces, SHARD_FACES = 64 a shard


def test_a_config_is_trained_and_scored_on_every_fold(tmp_path):
    source = write_synthetic_records(tmp_path / "records", per_split={"train": 80, "valid": 20})
    cfg = tiny_config(source, "training.epochs=1")
    rows = crossval_train.crossvalidate(cfg, source, tmp_path / "cv", k=2, seed=0, progress=False)
    assert list(rows["fold"]) == [0, 1] and set(rows["recipe"]) == {cfg.name}
    assert rows["test_faces"].sum() == 100  # every face held out once
    assert (rows["auc"] > 0.85).all()  # measured 0.934 and 0.894 after one epoch on 40 faces
    assert not list((tmp_path / "cv").glob("fold*-records"))  # fold records are removed
    assert len(list((tmp_path / "cv" / "runs").glob(f"{cfg.name}-fold*"))) == 2


def test_a_trained_config_named_like_a_probe_is_refused_before_training(tmp_path):
    with pytest.raises(FakefaceError, match="has a probe recipe's name"):
        crossval.check_recipes(["faceres"], ["faceres"], ["faceres"])
    from fakeface_tf import cli

    config = str(REPO_ROOT / "configs" / "faceres.yaml")  # named faceres, like the probe
    assert cli.main(["crossval", str(tmp_path), "--train", config, "--recipes", "faceres"]) == 2
