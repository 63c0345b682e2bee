"""The one set-up cell of the guided-tour notebooks (01-05): where the data, outputs and model
are, whether this is CI's fast mode, and figures small enough to store in the notebook.

`scripts/notebooks.sh` re-executes them in full mode, as committed; CI runs them in fast mode."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt

from fakeface_tf.core import logs
from fakeface_tf.core.config import data_root, work_root
from fakeface_tf.models.artifacts import default_model_path

log = logging.getLogger(__name__)

FAST_ENV = "FAKEFACE_NB_FAST"  # CI sets it to 1: small data, short runs


@dataclass(frozen=True)
class Tour:
    """What every notebook needs; paths are relative to the repository root, which setup()
    makes the working directory, so stored outputs name no machine's folders."""

    fast: bool
    data: Path  # the raw images ($FAKEFACE_DATA, default ../shared/data)
    out: Path  # outputs/notebooks/ (fast mode: outputs/notebooks-fast/)
    model: Path  # the shipped detector (saved_models/reference)
    limit: int | None  # faces per class and split folder to preprocess (None: all)


def setup() -> Tour:
    """Read fast mode and the data folder, work from the repository root, shrink stored
    figures, and say what was chosen."""
    logs.show()  # what library functions report appears under the cell
    fast = os.environ.get(FAST_ENV) == "1"
    data, model = data_root(), default_model_path()  # resolved before the working folder moves
    os.chdir(work_root())  # the checkout (else where the notebook was started)
    out = Path("outputs", "notebooks-fast" if fast else "notebooks")  # records never mix
    tour = Tour(fast=fast, data=relative(data), out=out,
                model=relative(model), limit=40 if fast else None)
    plt.rcParams["figure.dpi"] = 72  # keep the stored notebook small
    log.info("data: %s\nmodel: %s\nfast mode: %s", tour.data, tour.model, fast)
    return tour


def relative(path: str | os.PathLike) -> Path:
    """A path relative to the working root, the checkout (how the notebooks name every file)."""
    return Path(os.path.relpath(Path(path).resolve(), work_root()))
