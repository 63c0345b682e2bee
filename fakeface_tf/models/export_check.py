"""`fakeface export`: write a model in one format and keep it only if it agrees with Keras.

The export is scored on sample crops (the test split of the model's records, else faces of the
sample data cut with the model's face cut, or `check` given by the user) and compared with the
Keras model under the model's decision rule: an export that changes any verdict is refused and
nothing is left in the output folder. What decides a verdict (VERDICT_FILES) is copied beside it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fakeface_tf.core.config import data_root, records_dir
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.run_folder import VERDICT_FILES
from fakeface_tf.data import records
from fakeface_tf.data.datasets import make_dataset
from fakeface_tf.data.faces import crop_files
from fakeface_tf.data.images import EXTENSIONS
from fakeface_tf.models.artifacts import LoadedModel, load_model
from fakeface_tf.models.decision_rule import DecisionRule
from fakeface_tf.models.export_formats import FORMATS, QUANTIZE, WRITERS

log = logging.getLogger(__name__)

SAMPLE_FACES = 16  # faces cut from the sample data when the model's records are absent


@dataclass(frozen=True)
class ExportReport:
    path: Path
    format: str
    quantize: str
    size_bytes: int
    n_checked: int
    source: str  # where the check crops came from
    max_diff: float  # max |P(fake) export - P(fake) Keras| over the crops
    seconds: float  # writing and checking


def _record_crops(folder: Path, limit: int | None) -> np.ndarray:
    """uint8 crops of the test split of a records folder (the first `limit`)."""
    batches, n = [], 0
    for images, _ in make_dataset(folder, split="test", batch_size=64):
        batches.append(images.numpy().astype(np.uint8))
        n += len(batches[-1])
        if limit is not None and n >= limit:
            break
    return np.concatenate(batches)[:limit]


def _image_crops(files: list[Path], loaded: LoadedModel, progress: bool) -> np.ndarray:
    crops = [c.image for c in crop_files(files, loaded.face_options, progress=progress) if c.ok]
    if not crops:
        raise FakefaceError(f"no face found in the {len(files)} check images")
    return np.stack(crops)


def _has_test_split(folder: Path) -> bool:
    return folder.is_dir() and bool(records.shard_files(folder, "test"))


def check_crops(loaded: LoadedModel, check: str | Path | None, limit: int | None,
                progress: bool = True) -> tuple[np.ndarray, str]:
    """The crops an export is checked on, and where they came from."""
    if check is not None:
        folder = records_dir(check)
        if _has_test_split(folder):
            return _record_crops(folder, limit), f"{folder} [test]"
        if not folder.is_dir():
            raise FakefaceError(f"--check {check}: not a records folder or a folder of images")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS)
        if not files:
            raise FakefaceError(f"--check {check}: no test records and no images in it")
        return _image_crops(files[:limit], loaded, progress), str(folder)
    if loaded.config is not None and _has_test_split(folder := records_dir(loaded.config.data.path)):
        return _record_crops(folder, limit), f"{folder} [test]"
    faces = data_root() / "faces"
    files = [sorted((faces / kind).glob("*"))[:(limit or SAMPLE_FACES) // 2] for kind in ("real", "fake")]
    return _image_crops(files[0] + files[1], loaded, progress), f"{faces} (cut now)"


def _keep(folder: Path, out: Path) -> None:
    """`folder` becomes `out` (absent or empty)."""
    if out.exists():
        out.rmdir()
    folder.rename(out)


def _prepare_out(out: Path) -> Path:
    """A fresh folder beside `out` to write into; `out` must be absent or empty."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FakefaceError(f"--out {out} exists and is not an empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))


def export_model(model: str | Path, fmt: str, out: str | Path, quantize: str = "none",
                 check: str | Path | None = None, limit: int | None = None,
                 progress: bool = True) -> ExportReport:
    """Write `model` as `fmt` into `out`, checked against Keras on sample crops (see module)."""
    if fmt not in FORMATS or quantize not in QUANTIZE:
        raise FakefaceError(f"format must be one of {FORMATS} and quantize one of {QUANTIZE}")
    out, start = Path(out).expanduser(), time.perf_counter()
    loaded = load_model(model)
    if loaded.keras_model is None:
        raise FakefaceError(f"{loaded.path} is a SavedModel: export needs the model's .keras file")
    rule = DecisionRule(loaded.threshold, loaded.band, loaded.calibration)
    crops, source = check_crops(loaded, check, limit, progress)
    expected = loaded.predict(crops.astype(np.float32))
    folder = _prepare_out(out)
    try:
        probability, verdicts = WRITERS[fmt](loaded.keras_model, folder, rule, quantize)(crops)
        max_diff = float(np.max(np.abs(probability - expected)))
        wrong = int(np.sum(verdicts != rule.verdicts(expected)))
        if wrong:
            raise FakefaceError(f"the {fmt} export changes {wrong} of {len(crops)} verdicts on "
                                f"{source} (max |diff| {max_diff:.3g}); nothing written to {out}")
        for name in VERDICT_FILES:
            if (loaded.root / name).is_file():
                shutil.copy2(loaded.root / name, folder / name)
        _keep(folder, out)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    report = ExportReport(out, fmt, quantize, size, len(crops), source, max_diff,
                          time.perf_counter() - start)
    log.debug("exported %s: %s", fmt, report)
    return report
