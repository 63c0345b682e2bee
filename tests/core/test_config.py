"""Shipped configs load; YAML -> Config -> YAML is lossless; --set errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fakeface_tf.core.config import REPO_ROOT, apply_overrides, from_dict, load_config
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.models.registry import MODELS, check_model_config

CONFIGS = sorted(p for p in (REPO_ROOT / "configs").glob("*.yaml") if not p.stem.startswith("space"))


def test_every_registry_model_ships_a_config():
    assert {p.stem for p in CONFIGS} >= set(MODELS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_round_trips_and_names_a_buildable_model(path: Path, tmp_path):
    cfg = load_config(path)
    check_model_config(cfg)
    assert cfg.data.path.startswith("data/records") and cfg.name == path.stem
    cfg.save(tmp_path / "again.yaml")
    again = load_config(tmp_path / "again.yaml")
    assert again == cfg and again.to_yaml() == cfg.to_yaml()
    assert from_dict(yaml.safe_load(cfg.to_yaml())).digest() == cfg.digest()


def test_overrides_are_typed_and_change_the_digest():
    base = load_config(REPO_ROOT / "configs" / "fast.yaml")
    cfg = apply_overrides(base, ["model.dropout=0.1", "optimizer.lr=1e-4", "training.epochs=3",
                                 "model.freq_branch=false"])
    assert (cfg.model.dropout, cfg.optimizer.lr, cfg.training.epochs) == (0.1, 1e-4, 3)
    assert cfg.model.freq_branch is False and cfg.digest() != base.digest()


@pytest.mark.parametrize("override, message", [
    ("model.nope=1", "unknown config key 'model.nope'"),
    ("training.batch_size=big", "config key 'training.batch_size' expects int"),
    ("training.epochs=0", "training.epochs must be >= 1"),
    ("no_equals_sign", "--set expects key=value"),
    ("data.train_fraction=0", "data.train_fraction must be in (0, 1]"),
    ("model.trainable_blocks=15", "model.trainable_blocks must be in 0..14"),
    ("optimizer.name=adamm", "optimizer.name must be one of adam, adamw, sgd, rmsprop, got 'adamm'"),
    ("optimizer.schedule=linear", "optimizer.schedule must be one of constant, cosine, got 'linear'"),
    ("augment.jpeg_quality=95", "augment.jpeg_quality must be 0 (off) or in 1..94"),
    ("augment.rotation=-0.1", "augment.rotation must be in [0, 0.5]"),
    ("augment.blur=2", "augment.blur must be in [0, 1]"),
    ("training.seed=-1", "training.seed must be in 0..2**32-1"),
    ("data.fairness_weight=1.5", "data.fairness_weight must be a whole number >= 1"),
    ("data.view=body", "data.view must be face or image"),
])
def test_bad_override_is_one_clear_line(override, message):
    with pytest.raises(FakefaceError) as info:
        apply_overrides(load_config(REPO_ROOT / "configs" / "fast.yaml"), [override])
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("override, suggestion", [
    ("training.epoch=1", "training.epochs"),
    ("model.droput=0.1", "model.dropout"),
    ("trainng.epochs=1", "training.epochs"),
    ("epochs=1", "training.epochs"),  # the right key in the wrong section
])
def test_unknown_key_suggests_the_nearest_known_one(override, suggestion):
    key = override.split("=")[0]
    with pytest.raises(FakefaceError) as info:
        apply_overrides(load_config(REPO_ROOT / "configs" / "fast.yaml"), [override])
    assert str(info.value) == f"unknown config key '{key}'; did you mean '{suggestion}'?"


def test_unknown_key_without_a_near_one_suggests_nothing():
    with pytest.raises(FakefaceError) as info:
        apply_overrides(load_config(REPO_ROOT / "configs" / "fast.yaml"), ["zzzz=1"])
    assert str(info.value) == "unknown config key 'zzzz'"


def test_unknown_key_in_a_yaml_file_names_the_file_and_the_nearest_key(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("training:\n  epoch: 3\n")
    with pytest.raises(FakefaceError) as info:
        load_config(path, ["training.epochs=2"])  # an override does not hide the file's typo
    assert str(info.value) == (f"{path}: unknown config key 'training.epoch'; "
                               "did you mean 'training.epochs'?")


@pytest.mark.parametrize("value", ["1e999", "inf", "nan", "-inf"])
def test_a_float_setting_that_is_not_finite_is_refused(value):
    with pytest.raises(FakefaceError, match="optimizer.lr"):
        apply_overrides(from_dict({}), [f"optimizer.lr={value}"])
