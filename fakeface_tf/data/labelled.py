"""Labelled face sets: read a labels CSV, cut and cache its faces, mix them into training.

A labels CSV (`file,label,age,gender,race[,pair_id]`, label real|fake; or FairFace's layout)
names face images with their demographic attributes. `load_labels` reads and checks one,
`split_labels` cuts it into a training part and an assessment part by a fixed-seed split
stratified by race x gender x age (real/fake pairs sharing a `pair_id` stay together), so the
fairness audit (`fairness.py`) never sees a face the model trained on. `face_crops` cuts the
faces with a model's face options and caches them, and `training_dataset` is the training
part that `train.py` mixes in (`data.fairness_labels`).

This is the data layer: it imports nothing from training, analysis or serving.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fakeface_tf.core.config import Config, cache_dir, data_root
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.files import replacing
from fakeface_tf.data.face_cut import FaceOptions, face_options
from fakeface_tf.data.faces import crop_files
from fakeface_tf.data.records import LABELS

log = logging.getLogger(__name__)

AGE_BINS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")
UNKNOWN = "unknown"  # an attribute value nobody recorded: its own group, left out of comparisons
CACHE_NAME = "fairness"  # face crops are kept in $FAKEFACE_CACHE/fairness (config.cache_dir)
REQUIRED = ("file", "label", "age", "gender", "race")
SPLIT_SEED = 0  # fixed, so training and every later assessment agree on the split
TEST_FRACTION = 0.5


# ------------------------------------------------------------------------------ labels


@dataclass(frozen=True)
class ColumnMapping:
    """How a foreign labels CSV maps onto ours: renamed columns, recoded values, a fixed label."""

    columns: dict = field(default_factory=dict)  # their column -> ours
    values: dict = field(default_factory=dict)  # our column -> {their value: ours}
    label: str = ""  # every row's label when the CSV has no label column


# FairFace's CSVs (fairface_label_{train,val}.csv) have `file,age,gender,race,service_test`,
# `file` relative to the CSV's folder (train/1.jpg). Every image is a real photograph, its age
# bins are ours except the last, spelled "more than 70", and race keeps its 7 groups.
FAIRFACE = ColumnMapping(values={"age": {"more than 70": "70+"}}, label="real")
FORMATS = {"utk": ColumnMapping(), "fairface": FAIRFACE}


def _detect_format(columns) -> str:
    return "fairface" if "service_test" in columns and "label" not in columns else "utk"


def _resolve_image(folder: Path, name: str) -> Path | None:
    """The image a `file` cell names: beside the CSV, or in its images/ subfolder."""
    for candidate in (folder / name, folder / "images" / name):
        if candidate.is_file():
            return candidate
    return None


def _row_problems(row, line: int, folder: Path, seen: dict) -> list[str]:
    problems = []
    where = f"line {line}"
    if not row.file:
        problems.append(f"{where}, field 'file': empty")
    elif row.file in seen:
        problems.append(f"{where}, field 'file': {row.file} repeats line {seen[row.file]}")
    elif _resolve_image(folder, row.file) is None:
        problems.append(f"{where}, field 'file': image not found: {folder / row.file} "
                        f"(nor in {folder / 'images'})")
    if row.label not in LABELS:
        problems.append(f"{where}, field 'label': unknown value {row.label!r} (expected real or fake)")
    if row.age not in AGE_BINS + (UNKNOWN,):
        problems.append(f"{where}, field 'age': unknown value {row.age!r} "
                        f"(expected one of {', '.join(AGE_BINS)} or {UNKNOWN})")
    for name in ("gender", "race"):
        if not getattr(row, name):
            problems.append(f"{where}, field '{name}': empty (write {UNKNOWN} if not recorded)")
    return problems


def load_labels(csv_path: str | Path, mapping: ColumnMapping | str | None = None) -> pd.DataFrame:
    """Read and check a labels CSV: `file,label,age,gender,race[,pair_id]`, label real|fake.

    `mapping` is a ColumnMapping, a format name ("utk", "fairface") or None to detect it
    from the header. Every bad row is a FakefaceError naming its line and field. The frame
    gains `path` (the resolved image) and `line` (its line in the CSV).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FakefaceError(f"labels CSV not found: {csv_path}")
    try:
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise FakefaceError(f"{csv_path}: not a readable CSV ({exc})") from exc
    df.columns = [c.strip() for c in df.columns]
    if mapping is None or isinstance(mapping, str):
        name = mapping or _detect_format(df.columns)
        if name not in FORMATS:
            raise FakefaceError(f"unknown labels format {name!r}; expected one of {', '.join(FORMATS)}")
        mapping = FORMATS[name]
    df = df.rename(columns=mapping.columns)
    if "label" not in df.columns and mapping.label:
        df["label"] = mapping.label
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise FakefaceError(f"{csv_path}: line 1 (header): missing column(s) {', '.join(missing)} "
                            f"(expected {','.join(REQUIRED)}[,pair_id])")
    df = df[list(REQUIRED) + (["pair_id"] if "pair_id" in df.columns else [])].copy()
    for column in df.columns:
        df[column] = df[column].str.strip()
        df[column] = df[column].replace(mapping.values.get(column, {}))
    df["line"] = np.arange(len(df)) + 2  # the header is line 1
    df = df[(df[list(REQUIRED)] != "").any(axis=1)]  # blank lines
    folder = csv_path.parent
    problems, seen = [], {}
    for row in df.itertuples(index=False):
        problems += _row_problems(row, row.line, folder, seen)
        seen.setdefault(row.file, row.line)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise FakefaceError(f"{csv_path}: " + "; ".join(problems[:5]) + more)
    if df.empty:
        raise FakefaceError(f"{csv_path}: no rows")
    df["path"] = [str(_resolve_image(folder, f)) for f in df["file"]]
    return df.reset_index(drop=True)


def _units(df: pd.DataFrame) -> pd.Series:
    """What must stay together in a split or subsample: a real/fake pair, else one file."""
    if "pair_id" not in df.columns:
        return df["file"]
    return df["pair_id"].where(df["pair_id"] != "", df["file"])


def keyed_rng(seed: int, *key) -> np.random.Generator:
    """A generator for one named piece of work: same seed and key, same numbers, in any order."""
    return np.random.default_rng([int(seed), zlib.crc32("|".join(map(str, key)).encode())])


def _unit_strata(df: pd.DataFrame) -> pd.DataFrame:
    units = _units(df)
    table = df.assign(unit=units).groupby("unit", sort=True)[["race", "gender", "age"]].first()
    return table.assign(rows=units.value_counts())


def split_labels(df: pd.DataFrame, seed: int = SPLIT_SEED,
                 test_fraction: float = TEST_FRACTION) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training part, assessment part): a seeded split stratified by race x gender x age.

    Pairs sharing a `pair_id` land on the same side. A stratum with one face goes to the
    assessment part; larger strata give each part at least one.
    """
    if not 0 < test_fraction < 1:
        raise FakefaceError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    assess_units = []
    for key, stratum in _unit_strata(df).groupby(["race", "gender", "age"], sort=True):
        names = stratum.index.to_numpy()
        n = len(names)
        k = 1 if n == 1 else min(n - 1, max(1, round(n * test_fraction)))
        assess_units.extend(names[keyed_rng(seed, *key).permutation(n)[:k]])
    in_assess = _units(df).isin(set(assess_units))
    return df[~in_assess].reset_index(drop=True), df[in_assess].reset_index(drop=True)


def stratified_sample(df: pd.DataFrame, limit: int, seed: int = 0) -> pd.DataFrame:
    """About `limit` rows keeping each race x gender x age stratum's share (each stratum's
    first face before any stratum's second), pairs kept whole."""
    if limit < 1:
        raise FakefaceError(f"--limit must be >= 1, got {limit}")
    if limit >= len(df):
        return df
    strata = _unit_strata(df)
    strata = strata.iloc[keyed_rng(seed, "limit").permutation(len(strata))]
    grouped = strata.groupby(["race", "gender", "age"], sort=False)
    strata = strata.assign(order=grouped.cumcount() / grouped["rows"].transform("size"),
                           shuffled=np.arange(len(strata)))
    strata = strata.sort_values(["order", "shuffled"])
    keep = strata.index[(strata["rows"].cumsum() <= limit).to_numpy() | (np.arange(len(strata)) == 0)]
    return df[_units(df).isin(set(keep))].reset_index(drop=True)


# ------------------------------------------------------------------------------- faces


@dataclass
class Faces:
    """Crops of many files: status per file, and the found faces in file order."""

    status: np.ndarray  # str per file: "ok" or faces.FaceCrop's reason code
    reason: np.ndarray  # str per file
    images: np.ndarray  # uint8 (number ok, H, W, C)

    @property
    def ok(self) -> np.ndarray:
        return self.status == "ok"


def face_crops(paths, options: FaceOptions, progress: bool = True) -> Faces:
    """`faces.crop_files` with its results cached in an .npz keyed by the options and files,
    so repeated assessments and trainings do not run MTCNN again."""
    paths = [str(p) for p in paths]
    stats = [(p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths]
    key = json.dumps({"options": dataclasses.asdict(options), "files": stats})
    file = cache_dir(CACHE_NAME) / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"
    if file.is_file():
        with np.load(file) as stored:
            return Faces(stored["status"], stored["reason"], stored["images"])
    crops = crop_files(paths, options, progress=progress)
    shape = (0, options.size, options.size, options.channels)
    images = [c.image for c in crops if c.ok]
    faces = Faces(np.array([c.status for c in crops], dtype=str),
                  np.array([c.reason for c in crops], dtype=str),
                  np.stack(images) if images else np.zeros(shape, np.uint8))
    file.parent.mkdir(parents=True, exist_ok=True)
    with replacing(file, suffix=".npz") as temp:
        np.savez(temp, status=faces.status, reason=faces.reason, images=faces.images)
    return faces


# ------------------------------------------------------------------------------ paths


def labels_path(path: str, root: str = "") -> Path:
    """A labels CSV as given, else relative to the data root (e.g. fairness/labels.csv)."""
    candidate = Path(path).expanduser()
    if candidate.is_file() or candidate.is_absolute():
        return candidate
    return data_root(root or None) / candidate


# ---------------------------------------------------------------------------- training


def training_dataset(cfg: Config):
    """The training part of `cfg.data.fairness_labels` as an unbatched tf.data.Dataset of
    (image float32 HxWxC in [0, 255], label float32), cut like the model's other faces.

    Faces MTCNN cannot find are left out (and counted). Weighting by
    `cfg.data.fairness_weight` is the caller's (train.py repeats the dataset).
    """
    # Imported here, not at the top: only training needs TensorFlow, and the fairness audit
    # (analysis.fairness) imports this module to read labels and cut faces without it.
    import tensorflow as tf

    labels_csv = labels_path(cfg.data.fairness_labels, cfg.data.root)
    train_df, _ = split_labels(load_labels(labels_csv))
    options = face_options(cfg.data)
    faces = face_crops(train_df["path"], options)
    if not faces.ok.any():
        raise FakefaceError(f"{labels_csv}: no face found in any of its {len(train_df)} "
                            "training-part images")
    labels = train_df["label"].map(LABELS).to_numpy(dtype=np.float32)[faces.ok]
    log.info(f"fairness faces: {len(labels)} of {len(train_df)} training-part images from {labels_csv} "
             f"({(~faces.ok).sum()} without a face)")
    dataset = tf.data.Dataset.from_tensor_slices((faces.images, labels))
    return dataset.map(lambda image, label: (tf.cast(image, tf.float32), label))
