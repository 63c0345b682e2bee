"""One typed config for the whole pipeline: dataclasses in, YAML out.

A run is described by a single `Config`. It is loaded from `configs/*.yaml`, tweaked
from the command line with `--set section.key=value`, and saved fully resolved in every
run folder, so the same file reproduces the same run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from fakeface_tf.errors import FakefaceError
from fakeface_tf.files import write_text_atomic

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_ENV = "FAKEFACE_DATA"
CACHE_ENV = "FAKEFACE_CACHE"
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "data"

DOWNLOAD_HINT = (
    "Download the Kaggle '140k Real and Fake Faces' set (layout real-vs-fake/{train,valid,test}/"
    "{real,fake}/) and, for fairness, FairFace (images + its labels CSV), then point "
    f"{DATA_ENV}=/path/to/data (or the config key data.root) at the folder holding them."
)


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where the raw images live: `root` if given, else $FAKEFACE_DATA, else ../shared/data."""
    chosen = root or os.environ.get(DATA_ENV) or DEFAULT_DATA_ROOT
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise FakefaceError(f"no data at {path}. {DOWNLOAD_HINT}")
    return path


def cache_root() -> Path:
    """Where derived files are kept between runs (face crops, converted weights):
    $FAKEFACE_CACHE, else data/cache/ in the repository."""
    return Path(os.environ.get(CACHE_ENV) or REPO_ROOT / "data" / "cache")


@dataclass
class DataConfig:
    """Where the data is and how faces are cut out of it."""

    root: str = ""  # raw image data; "" means $FAKEFACE_DATA or ../shared/data
    path: str = "data/records"  # the TFRecords folder written by `fakeface preprocess`
    image_size: int = 128
    color: str = "gray"  # gray | rgb
    margin: float = 0.2  # extra border around the face box, as a fraction of its size
    level: bool = True  # rotate faces so the eyes are level (False: plain pixel-exact cut)
    fairness_labels: str = ""  # labels CSV whose training part is mixed into training
    fairness_weight: float = 1.0  # how many copies of each fairness face to mix in
    train_fraction: float = 1.0  # train on this share of the training split (learning curves)

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3


@dataclass
class ModelConfig:
    """Which registry model to build, and its hyperparameters."""

    name: str = "fast"
    filters: int = 32  # width of the first conv block; later blocks scale from it
    dense_units: int = 128
    dropout: float = 0.3
    weights: str = ""  # Keras Applications: "" (random init) or a local weights file
    freq_branch: bool = False  # add a log-magnitude FFT branch (fast model)
    # Pretrained backbones (faceres): how many of the last blocks train (0 = frozen; 14 =
    # all, stem included), and the blocks whose mean + spatial std feed the linear head.
    trainable_blocks: int = 0
    feature_blocks: str = "9,11,13"


@dataclass
class OptimizerConfig:
    name: str = "adam"  # adam | adamw | sgd | rmsprop
    lr: float = 1e-3
    schedule: str = "constant"  # constant | cosine
    weight_decay: float = 0.0


@dataclass
class TrainingConfig:
    epochs: int = 10
    batch_size: int = 32
    seed: int = 42
    early_stopping: int = 0  # patience in epochs on val AUC; 0 turns it off
    deterministic: bool = True  # TF op determinism: same seed, same numbers
    steps_per_epoch: int = 0  # 0 = the whole training split each epoch
    label_smoothing: float = 0.0
    # Frozen layers of a pretrained backbone: run them once over the data and train only the
    # rest (flips are precomputed; other augmentations need the full model each step).
    cache_frozen: bool = False
    # Start the linear head from a logistic-regression probe on the frozen features (the
    # head's warm-up), its regularisation picked on validation AUC.
    probe_init: bool = False


@dataclass
class AugmentConfig:
    """Training-time augmentation; every switch is off when its value is 0/False."""

    flip: bool = True
    rotation: float = 0.03  # fraction of a full turn
    zoom: float = 0.05
    shear: float = 0.0
    brightness: float = 0.1  # fraction of the [0, 255] range
    jpeg_quality: int = 0  # >0: random re-compression with quality in [this, 95]
    blur: float = 0.0  # >0: probability of a light Gaussian blur
    shift: float = 0.0  # max translation, fraction of the side; whole pixels, so nothing is resampled
    mixup: float = 0.0  # >0: mixup with mixing weights drawn from Beta(mixup, mixup)


@dataclass
class Config:
    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    distribute: str = "none"  # none | mirrored | multiworker
    mixed_precision: bool = False  # float16 compute; only worth it on a GPU

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | os.PathLike) -> None:
        """Write the resolved config as YAML, atomically (a run's config.yaml is never torn)."""
        write_text_atomic(path, self.to_yaml())

    def digest(self) -> str:
        """Short hash of the resolved config: names the run folder."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:8]

    def validate(self) -> "Config":
        checks = [
            (self.training.epochs >= 1, "training.epochs must be >= 1"),
            (self.training.batch_size >= 1, "training.batch_size must be >= 1"),
            (self.data.image_size >= 16, "data.image_size must be >= 16"),
            (self.data.color in ("gray", "rgb"), "data.color must be gray or rgb"),
            (self.optimizer.lr > 0, "optimizer.lr must be > 0"),
            (0 <= self.model.dropout < 1, "model.dropout must be in [0, 1)"),
            (self.distribute in ("none", "mirrored", "multiworker"),
             "distribute must be none, mirrored or multiworker"),
            (0 < self.data.train_fraction <= 1, "data.train_fraction must be in (0, 1]"),
            (0 <= self.model.trainable_blocks <= 14, "model.trainable_blocks must be in 0..14"),
            (not self.training.cache_frozen or not self.augment.mixup,
             "training.cache_frozen works with flips only: set augment.mixup=0"),
            (not self.training.cache_frozen or not any(
                (self.augment.rotation, self.augment.zoom, self.augment.shear, self.augment.shift,
                 self.augment.brightness, self.augment.jpeg_quality, self.augment.blur)),
             "training.cache_frozen works with flips only: set the other augment.* to 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise FakefaceError(message)
        return self


def _build(cls, values: dict, where: str):
    """Make dataclass `cls` from a dict, naming the first unknown or mistyped key."""
    if not isinstance(values, dict):
        raise FakefaceError(f"{where or 'config'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        dotted = f"{where}.{key}" if where else key
        if key not in names:
            raise FakefaceError(f"unknown config key '{dotted}'")
        kwargs[key] = _coerce(hints[key], value, dotted)
    return cls(**kwargs)


def _coerce(hint, value, dotted: str):
    if dataclasses.is_dataclass(hint):
        return _build(hint, value or {}, dotted)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if value is None:
            return ""
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise FakefaceError(
        f"config key '{dotted}' expects {getattr(hint, '__name__', hint)}, got {value!r}"
    )


def from_dict(values: dict) -> Config:
    return _build(Config, values, "").validate()


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> Config:
    """Read a YAML config and apply `section.key=value` overrides on top."""
    path = Path(path)
    if not path.is_file():
        raise FakefaceError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise FakefaceError(f"{path}: not valid YAML ({exc})") from exc
    if "name" not in values:
        values["name"] = path.stem
    return apply_overrides(values, overrides or [])


def apply_overrides(values: dict | Config, overrides: list[str]) -> Config:
    """Apply `a.b=value` strings (value parsed as YAML) and return a checked Config."""
    if isinstance(values, Config):
        values = values.to_dict()
    values = json.loads(json.dumps(values))  # deep copy
    for item in overrides:
        if "=" not in item:
            raise FakefaceError(f"--set expects key=value, got '{item}'")
        dotted, raw = item.split("=", 1)
        node = values
        parts = dotted.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise FakefaceError(f"unknown config key '{dotted}'")
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    return from_dict(values)
