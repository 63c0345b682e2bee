"""`fakeface preprocess` cuts the shipped recipe's faces by default (`config.recipe_data`), so its
records train `configs/faceres.yaml` as they are; `--config` cuts what another config asks."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from fakeface_tf import cli
from fakeface_tf.cli.preprocess import face_cut
from fakeface_tf.core.config import REPO_ROOT, load_config, recipe_data
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data.face_cut import CONFIG_FIELDS as CUT_FIELDS, FaceOptions, face_options
REFERENCE = REPO_ROOT / "saved_models" / "reference"


def recipe_cut() -> FaceOptions:
    return face_options(recipe_data())


def _args(*words: str):
    return cli.build_parser("preprocess").parse_args(["preprocess", "SRC", "OUT", *words])


def test_recipe_cut_is_the_reference_models_and_the_faceres_configs():
    recipe = recipe_cut()
    reference = FaceOptions.from_dict(json.loads((REFERENCE / "face_cut.json").read_text()))
    assert recipe.differences(reference, [*CUT_FIELDS, "min_face", "min_confidence"]) == []
    for name in ("faceres.yaml", "faceres_frozen.yaml"):
        config_cut = face_options(load_config(REPO_ROOT / "configs" / name).data)
        assert recipe.differences(config_cut, list(CUT_FIELDS)) == [], name
    assert (recipe.size, recipe.color, recipe.level, recipe.view) == (224, "rgb", False, "image")


def test_command_line_cut_is_the_recipe_unless_a_config_or_an_option_says_otherwise():
    assert face_cut(_args()) == recipe_cut()
    fast = face_cut(_args("--config", str(REPO_ROOT / "configs" / "fast.yaml")))
    assert (fast.size, fast.color, fast.level) == (128, "gray", True)
    assert face_cut(_args("--config", str(REPO_ROOT / "configs" / "fast.yaml"), "--size", "96")).size == 96
    assert face_cut(_args("--level", "--color", "gray")).level is True
    assert face_cut(_args("--no-level")).level is False
    assert face_cut(_args()).view == "image" and face_cut(_args("--view", "face")).view == "face"
    face_config = str(REPO_ROOT / "configs" / "faceres_face.yaml")
    assert face_cut(_args("--config", face_config)) == dataclasses.replace(recipe_cut(), view="face")


@pytest.mark.slow
def test_default_records_are_accepted_by_the_faceres_config_and_refused_by_a_128px_one(
        tmp_path, sample_root):
    from fakeface_tf.training.inputs import training_cut  # loads TensorFlow

    src, out = tmp_path / "src", tmp_path / "out"
    for label in ("real", "fake"):
        (src / label).mkdir(parents=True)
        for path in sorted((sample_root / "faces" / label).glob("*.jpg"))[:2]:
            shutil.copy(path, src / label / path.name)
    assert cli.main(["preprocess", str(src), str(out), "--workers", "1", "--split", "1,0,0",
                     "--no-progress"]) == 0

    faceres = load_config(REPO_ROOT / "configs" / "faceres.yaml", [f"data.path={out}"])
    assert training_cut(faceres).differences(recipe_cut(), list(CUT_FIELDS)) == []
    fast = load_config(REPO_ROOT / "configs" / "fast.yaml", [f"data.path={out}"])
    with pytest.raises(FakefaceError, match="cut differently"):
        training_cut(fast)
    face_view = load_config(REPO_ROOT / "configs" / "faceres_face.yaml", [f"data.path={out}"])
    with pytest.raises(FakefaceError, match="view: 'image' vs 'face'"):
        training_cut(face_view)
