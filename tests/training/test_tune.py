"""KerasTuner search: trials are ordinary run folders, the space is checked up front."""

from __future__ import annotations

import pytest
import yaml

from fakeface_tf.cli import main
from fakeface_tf.core.config import REPO_ROOT, load_config
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.training.tune import load_space

from conftest import tiny_config


@pytest.mark.slow
def test_one_trial_search_makes_a_run_folder_and_prints_the_table(tiny_records, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    tiny_config(tiny_records, "training.epochs=1").save(config)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"model.dropout": {"choices": [0.1, 0.4]},
                                     "optimizer.lr": {"min": 1e-3, "max": 1e-2, "sampling": "log"}}))
    runs = tmp_path / "runs"
    assert main(["tune", str(config), "--space", str(space), "--trials", "1",
                 "--runs-dir", str(runs)]) == 0
    (run_dir,) = [p for p in runs.iterdir() if (p / "metrics.json").is_file()]
    assert run_dir.name.startswith("tiny-baseline-trial")
    trial_cfg = load_config(run_dir / "config.yaml")
    assert trial_cfg.model.dropout in (0.1, 0.4) and 1e-3 <= trial_cfg.optimizer.lr <= 1e-2
    assert run_dir.name in capsys.readouterr().out


def test_shipped_space_fits_the_fast_config():
    cfg = load_config(REPO_ROOT / "configs" / "fast.yaml")
    hp = load_space(REPO_ROOT / "configs" / "space_fast.yaml", cfg)
    assert set(hp.values) == {"optimizer.lr", "model.filters", "model.dropout", "model.freq_branch"}


@pytest.mark.parametrize("space, message", [
    ({"model.nope": {"choices": [1, 2]}}, "unknown config key 'model.nope'"),
    ({"training.epochs": {"choices": ["many"]}}, "'training.epochs' expects int"),
    ({"optimizer.lr": 0.1}, "needs {choices"),
])
def test_bad_space_is_a_clear_error(tmp_path, space, message):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    with pytest.raises(FakefaceError, match=message.replace("{", r"\{").replace("(", r"\(")):
        load_space(path, load_config(REPO_ROOT / "configs" / "fast.yaml"))
