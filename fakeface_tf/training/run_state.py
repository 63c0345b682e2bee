"""What a fit continues from: state.json, the last checkpoint and the history so far.

Both training loops (fitting.py on one machine, multiworker.py across machines) start from
here, so `--resume` reads a run folder one way whichever loop wrote it. A torn file (a state
or checkpoint copied in half, say) is refused in one line that names the ways on.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras
import tensorflow as tf

from fakeface_tf.core.config import Config
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.files import write_text_atomic
from fakeface_tf.core.run_folder import RunFolder
from fakeface_tf.models.registry import build_model, compile_model


def torn_error(path: Path, run: RunFolder) -> FakefaceError:
    """The one-line error for a run file that a kill cut short, with the ways on."""
    return FakefaceError(f"{path} is missing, empty or corrupt (killed during a write?): delete "
                         f"{run.state} to restart the run from epoch 0, or delete "
                         f"{run.path} and train again")


def read_state(run: RunFolder) -> dict:
    """state.json ({} before the first finished epoch); a torn one is a one-line error."""
    if not run.state.is_file():
        return {}
    try:
        state = json.loads(run.state.read_text())
    except ValueError:  # also undecodable bytes
        state = None
    if not isinstance(state, dict) or not isinstance(state.get("epochs_done", 0), int):
        raise torn_error(run.state, run)
    return state


def load_checkpoint(path: Path, run: RunFolder, **kwargs) -> keras.Model:
    """A `.keras` checkpoint of the run, checked first to be a whole zip archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            whole = archive.testzip() is None
    except (OSError, EOFError, zipfile.BadZipFile):
        whole = False
    if not whole:
        raise torn_error(path, run)
    return keras.models.load_model(path, **kwargs)


def starting_model(cfg: Config, run: RunFolder | None, strategy: tf.distribute.Strategy,
                   epochs_done: int, total_steps: int) -> keras.Model:
    """The model a fit starts from, made in `strategy`'s scope: the last checkpoint with its
    optimizer state after `epochs_done` epochs, else a new compiled model."""
    with strategy.scope():
        if epochs_done:
            return load_checkpoint(run.last_checkpoint, run)
        return compile_model(build_model(cfg), cfg, total_steps)


def truncate_history(path: Path, epochs_done: int) -> None:
    """Drop history rows past the last completed epoch (written just before an interruption)."""
    if path.is_file():
        lines = path.read_text().splitlines(keepends=True)
        write_text_atomic(path, "".join(lines[: epochs_done + 1]))
