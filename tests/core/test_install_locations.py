"""Where an installed package looks and writes: the cache, the shipped configs, the default
model, and `predict` without --out (tests/core/test_wheel_install.py runs a real wheel)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fakeface_tf.cli import main, package_version
from fakeface_tf.core import config
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.models import artifacts


def test_cache_is_the_env_setting_else_the_checkout_else_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(config.CACHE_ENV, str(tmp_path / "c"))
    assert config.cache_root() == tmp_path / "c"
    monkeypatch.delenv(config.CACHE_ENV)
    assert config.cache_root() == config.REPO_ROOT / "data" / "cache"
    monkeypatch.setattr(config, "CHECKOUT", None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert config.cache_root() == tmp_path / "xdg" / "fakeface_tf"


def test_outside_a_checkout_records_are_written_under_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "CHECKOUT", None)
    monkeypatch.chdir(tmp_path)
    assert config.output_records_dir("data/records") == tmp_path / "data" / "records"


@pytest.mark.parametrize("name", ["faceres", "faceres.yaml", "configs/faceres.yaml"])
def test_a_shipped_recipe_is_found_by_name_from_any_folder(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config.config_file(name) == config.CONFIGS_DIR / "faceres.yaml"
    assert config.load_config(name).name == "faceres"


def test_an_existing_file_wins_over_the_shipped_recipe_and_other_paths_stay_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fast.yaml").write_text("name: mine\n")
    assert config.config_file("fast.yaml") == Path("fast.yaml")
    assert config.config_file("elsewhere/fast.yaml") == Path("elsewhere/fast.yaml")
    with pytest.raises(FakefaceError):
        config.load_config("nosuch.yaml")


def test_the_default_model_is_the_env_setting_else_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts, "REFERENCE", tmp_path / "no_reference")
    monkeypatch.setenv(config.MODEL_ENV, str(tmp_path / "model"))
    assert artifacts.default_model_path() == tmp_path / "model"
    monkeypatch.delenv(config.MODEL_ENV)
    with pytest.raises(FakefaceError, match="pass --model or set FAKEFACE_MODEL"):
        artifacts.default_model_path()


def test_version_comes_from_the_installed_metadata(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"fakeface {package_version()}"


def test_a_command_needing_tensorflow_names_the_extra_when_it_is_missing(tiny_keras_model, sample_root):
    face = sorted((sample_root / "faces" / "real").glob("*.jpg"))[0]
    code = ("import sys; sys.modules['tensorflow'] = None\n"
            "from fakeface_tf.cli import main\n"
            f"sys.exit(main(['predict', {str(face)!r}, '--model', {str(tiny_keras_model)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "fakeface: error: predict needs TensorFlow, which is not installed: "
        "pip install 'fakeface_tf[cpu]' (or 'fakeface_tf[gpu]' for a CUDA GPU)")


def test_predict_without_out_prints_and_writes_nothing(tiny_keras_model, sample_root, tmp_path, monkeypatch, capsys):
    face = sorted((sample_root / "faces" / "real").glob("*.jpg"))[0]
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / face.name).write_bytes(face.read_bytes())
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert main(["predict", str(folder), "--model", str(tiny_keras_model)]) == 0
    assert capsys.readouterr().out.startswith(str(folder / face.name))
    assert not list(cwd.iterdir())
