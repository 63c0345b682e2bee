"""A wheel installed outside the checkout works on its own: `fakeface --version` and a predict
on one sample face, with the cache outside site-packages and nothing written inside it.

The wheel goes into a fresh venv whose only link to the project's is a plain .pth line naming
the project venv's site-packages (for TensorFlow and the pins, no network): a plain path line
runs no .pth inside it, so the project's editable-install hook cannot shadow the wheel.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from fakeface_tf.core.config import REPO_ROOT, data_root

pytestmark = pytest.mark.slow
REFERENCE = REPO_ROOT / "saved_models" / "reference"


def _run(args: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs)


def _build_wheel(out: Path) -> Path:
    """The wheel pip builds from a copy of the package's sources (a build in the checkout would
    leave build/ there and could pack stale files from it); in this venv when its setuptools is
    new enough for pyproject.toml, else in pip's isolated build environment."""
    source = out / "source"
    shutil.copytree(REPO_ROOT / "fakeface_tf", source / "fakeface_tf",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO_ROOT / name, source / name)
    setuptools = int(importlib.metadata.version("setuptools").split(".")[0])
    isolation = ["--no-build-isolation"] if setuptools >= 77 else []
    done = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", out, source])
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = out.glob("fakeface_tf-*.whl")
    return wheel


def _venv(path: Path, wheel: Path) -> Path:
    """A fresh venv holding the wheel, seeing the project venv's packages; returns its python."""
    assert _run([sys.executable, "-m", "venv", "--without-pip", path]).returncode == 0
    python = path / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "project_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel])
    assert done.returncode == 0, done.stderr[-2000:]
    return python


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if "__pycache__" not in p.parts}


def test_a_wheel_install_predicts_outside_the_checkout_and_writes_nothing_into_site_packages(tmp_path):
    if not (REFERENCE / "saved_model.pb").exists() and not any(REFERENCE.glob("*.keras")):
        pytest.skip("no saved_models/reference in this checkout")
    face = sorted((data_root() / "faces" / "real").glob("*.*"))[0]
    python = _venv(tmp_path / "venv", _build_wheel(tmp_path / "wheel"))
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir(), home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("FAKEFACE_CACHE", "FAKEFACE_MODEL", "PYTHONPATH", "XDG_CACHE_HOME")}
    env |= {"HOME": str(home), "PATH": f"{python.parent}{os.pathsep}{env.get('PATH', '')}"}

    where = _run([python, "-c", "import fakeface_tf.core.config as c; print(c.__file__, c.CHECKOUT, "
                  "c.cache_root(), c.config_file('configs/faceres.yaml').is_file())"], cwd=cwd, env=env)
    module, checkout, cache, config = where.stdout.split()
    assert Path(module).is_relative_to(site) and checkout == "None" and config == "True", where.stdout
    assert Path(cache).is_relative_to(home)  # platformdirs' user cache folder, not site-packages

    before = _files(site)
    version = _run([python.parent / "fakeface", "--version"], cwd=cwd, env=env)
    assert version.stdout.strip() == f"fakeface {importlib.metadata.version('fakeface_tf')}", version.stderr
    missing = _run([python.parent / "fakeface", "predict", face], cwd=cwd, env=env)
    assert missing.returncode == 2 and "--model" in missing.stderr and "FAKEFACE_MODEL" in missing.stderr
    done = _run([python.parent / "fakeface", "predict", face, "--model", REFERENCE], cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(f"{face}: real face (P(fake)=0.004, threshold 0.387)"), done.stdout
    assert _files(site) == before
    assert not list(cwd.iterdir())  # predict without --out writes nothing
