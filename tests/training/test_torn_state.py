"""Hostile stops: atomic writes, one-line errors for torn run files, no orphan shard writers."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from fakeface_tf.cli import main
from fakeface_tf.core import files
from fakeface_tf.data import records
from fakeface_tf.training.train import train

from conftest import crash_after_first_epoch, tiny_config


@pytest.fixture(scope="module")
def interrupted_run(tiny_records, tmp_path_factory) -> Path:
    """A run folder stopped after its first of two epochs (state.json says 1 epoch done)."""
    runs = tmp_path_factory.mktemp("interrupted") / "runs"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_config(tiny_records), runs, progress=False,
              callbacks=[crash_after_first_epoch()])
    (run_dir,) = runs.iterdir()
    return run_dir


@pytest.fixture
def run_copy(interrupted_run, tmp_path) -> Path:
    """A private copy of `interrupted_run` to damage."""
    return Path(shutil.copytree(interrupted_run, tmp_path / "runs" / interrupted_run.name))


def _one_line_error(capsys) -> str:
    """The CLI's error line, checked to be the only thing it reported."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("fakeface: error:")]
    assert len(lines) == 1 and err.rstrip().endswith(lines[0])
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("text", ["", '{"epochs_done": 1, "best_val', "[]", '{"epochs_done": "1"}'])
def test_resume_on_a_torn_state_file_is_a_one_line_error(run_copy, capsys, text):
    (run_copy / "state.json").write_text(text)
    assert main(["train", "--resume", str(run_copy), "--quiet"]) == 2
    line = _one_line_error(capsys)
    assert f"{run_copy / 'state.json'} is missing, empty or corrupt" in line
    assert "restart the run from epoch 0" in line and "train again" in line


@pytest.mark.slow
def test_resume_on_a_truncated_checkpoint_is_a_one_line_error_and_its_advice_works(run_copy,
                                                                                    capsys):
    last = run_copy / "checkpoints" / "last.keras"
    whole = last.read_bytes()
    last.write_bytes(whole[: len(whole) // 2])
    assert main(["train", "--resume", str(run_copy), "--quiet"]) == 2
    line = _one_line_error(capsys)
    assert f"{last} is missing, empty or corrupt" in line

    (run_copy / "state.json").unlink()  # the way on the message names
    assert main(["train", "--resume", str(run_copy), "--quiet"]) == 0
    assert json.loads((run_copy / "metrics.json").read_text())["epochs"] == 2
    keras.models.load_model(last)  # whole again


def test_resume_without_the_last_checkpoint_is_a_one_line_error(run_copy, capsys):
    (run_copy / "checkpoints" / "last.keras").unlink()
    assert main(["train", "--resume", str(run_copy), "--quiet"]) == 2
    assert "last.keras is missing, empty or corrupt" in _one_line_error(capsys)


def test_checkpoints_and_state_leave_no_temp_files(interrupted_run):
    assert not [p for p in interrupted_run.rglob("*") if ".tmp" in p.name]


def test_failed_rename_keeps_the_old_file_and_removes_the_temp(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    target.write_text('{"epochs_done": 3}')

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        files.write_text_atomic(target, '{"epochs_done": 4}')
    assert target.read_text() == '{"epochs_done": 3}'
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_save_failing_half_way_keeps_the_old_model_and_removes_the_temp(tmp_path):
    target = tmp_path / "last.keras"
    target.write_bytes(b"old model")

    class HalfSave:
        def save(self, path):
            assert str(path).endswith(".keras")  # Keras insists on the suffix
            Path(path).write_bytes(b"half a ")
            raise KeyboardInterrupt  # a Ctrl-C mid-save

    with pytest.raises(KeyboardInterrupt):
        files.save_model_atomic(HalfSave(), target)
    assert target.read_bytes() == b"old model"
    assert [p.name for p in tmp_path.iterdir()] == ["last.keras"]


def test_shard_failing_half_way_leaves_no_shard_and_no_temp(tmp_path):
    def examples():
        yield records.serialize(np.zeros((4, 4), np.uint8), 0)
        raise RuntimeError("crop failed")

    with pytest.raises(RuntimeError, match="crop failed"):
        records.write(tmp_path / records.shard_name("train", 0, 1), examples())
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ killed preprocessing


def _pool_workers(parent: int) -> list[int]:
    """Pids of the multiprocessing workers `parent` started (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and b"--multiprocessing-fork" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie no parent reaped counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _listing(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_preprocess_leaves_no_writers_and_a_rerun_ends_clean(tmp_path, sample_root, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    for label in ("real", "fake"):
        (src / label).mkdir(parents=True)
        for path in sorted((sample_root / "faces" / label).glob("*.jpg"))[:15]:
            shutil.copy(path, src / label / path.name)
    args = ["preprocess", str(src), str(out), "--size", "64", "--shard-size", "4", "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "fakeface_tf.cli", *args, "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        workers, deadline = [], time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            workers = _pool_workers(proc.pid) or workers
            if workers and list(out.glob("*.tfrecord")):
                break
            time.sleep(0.05)
        assert proc.poll() is None and workers, "preprocess ended or never started a pool"
        proc.send_signal(signal.SIGKILL)  # a worker is mid-shard now: ~1 s from writing it
    finally:
        proc.kill()
        proc.wait()
    before = _listing(out)
    time.sleep(3)
    assert _listing(out) == before, "something went on writing after the kill"
    assert not any(_alive(pid) for pid in workers), "pool workers outlived their killed parent"

    assert main([*args, "--workers", "1"]) == 0
    assert "preprocess: 30 files" in capsys.readouterr().out
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    ok = sum(row["status"] == "ok" for row in rows)
    stored = sum(1 for _ in tf.data.TFRecordDataset(records.shard_files(out)))
    summary = json.loads((out / "preprocess.json").read_text())
    assert len(rows) == 30 and ok == stored == sum(summary["records"].values()) > 0
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
