"""The one set-up cell of the guided-tour notebooks (01-05): where the data and outputs are,
whether this is CI's fast mode, and figures small enough to store in the notebook."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fakeface_tf import logs
from fakeface_tf.config import REPO_ROOT, data_root

FAST_ENV = "FAKEFACE_NB_FAST"  # CI sets it to 1: small data, short runs


@dataclass(frozen=True)
class Tour:
    fast: bool
    data: Path  # the raw images ($FAKEFACE_DATA, default ../shared/data)
    out: Path  # outputs/notebooks/ in the repository
    limit: int | None  # faces per class and split folder to preprocess (None: all)


def setup() -> Tour:
    """Read fast mode and the data folder, shrink stored figures, and say what was chosen
    (paths relative to the repository, so stored outputs name no machine's folders)."""
    import matplotlib.pyplot as plt

    logs.show()  # what library functions report appears under the cell
    fast = os.environ.get(FAST_ENV) == "1"
    tour = Tour(fast=fast, data=data_root(), out=REPO_ROOT / "outputs" / "notebooks",
                limit=40 if fast else None)
    plt.rcParams["figure.dpi"] = 72  # keep the stored notebook small
    print(f"data: {relative(tour.data)}\nfast mode: {fast}")
    return tour


def relative(path: str | os.PathLike) -> str:
    """A path as the notebooks print it: relative to the repository root."""
    return os.path.relpath(Path(path).resolve(), REPO_ROOT)
