"""A copy of a .keras model with an "uncertain" band (conformal.json) beside it, for the tests of
the uncertain verdict in the CLI, the JSON API and the page."""

from __future__ import annotations

import shutil
from pathlib import Path

from fakeface_tf.models.uncertainty import Band, write_band


def band_from(low: float, high: float) -> Band:
    return Band(low=low, high=high, alpha=0.05, n_calibration=100, source="test faces")


def model_with_band(model: Path, folder: Path, band: Band | None) -> Path:
    """`model` copied into `folder`, with `band` saved beside it (no band file when None)."""
    folder.mkdir(parents=True, exist_ok=True)
    copy = Path(shutil.copy(model, folder))
    if band is not None:
        write_band(folder, band)
    return copy
