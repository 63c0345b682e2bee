"""One typed config for the whole pipeline: dataclasses in, YAML out.

A run is described by a single `Config`. It is loaded from `configs/*.yaml`, tweaked
from the command line with `--set section.key=value`, and saved fully resolved in every
run folder, so the same file reproduces the same run.
"""

from __future__ import annotations

import dataclasses
import difflib
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

# The values the training code accepts (models._optimizer builds exactly these).
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine")
COLORS = ("gray", "rgb")
STRATEGIES = ("none", "mirrored", "multiworker")

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


def records_dir(path: str | os.PathLike, existing: bool = True) -> Path:
    """The records folder `data.path` names. To read records (`existing`): `~` expanded, and a
    relative path that is not in the cwd but is in the repository taken from the repository.
    To write them (`existing=False`, the end-to-end pipeline): a relative path is always taken
    from the repository. Whether the folder holds records is not checked (`data.records_path`
    checks that)."""
    path = Path(path)
    if not existing:
        return path if path.is_absolute() else REPO_ROOT / path
    path = path.expanduser()
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        return REPO_ROOT / path
    return path


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

    def checks(self) -> list[tuple[bool, str]]:
        """(ok, message) per field: the ranges `data.augmenter` draws from."""
        return [
            (0 <= self.rotation <= 0.5, "augment.rotation must be in [0, 0.5] (a fraction of a turn)"),
            (0 <= self.zoom < 1, "augment.zoom must be in [0, 1)"),
            (0 <= self.shear <= 1, "augment.shear must be in [0, 1]"),
            (0 <= self.brightness <= 1, "augment.brightness must be in [0, 1]"),
            (self.jpeg_quality == 0 or 1 <= self.jpeg_quality <= 94,
             "augment.jpeg_quality must be 0 (off) or in 1..94"),
            (0 <= self.blur <= 1, "augment.blur must be in [0, 1] (a probability)"),
            (0 <= self.shift < 1, "augment.shift must be in [0, 1)"),
            (self.mixup >= 0, "augment.mixup must be >= 0"),
        ]

    def validate(self) -> "AugmentConfig":
        """Raise FakefaceError naming the first field out of range."""
        _raise_first(self.checks())
        return self


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
        """Check every field against what data.py, models.py and train.py accept, naming the
        field, so a bad value fails before a run folder is created (the model name and its
        input size need the registry: models.check_model_config, also run before)."""
        _raise_first(self.checks() + self.augment.checks())
        return self

    def checks(self) -> list[tuple[bool, str]]:
        """(ok, message) per field outside `augment`."""
        data, model, opt, training, augment = (self.data, self.model, self.optimizer,
                                               self.training, self.augment)
        return [
            (bool(self.name) and "/" not in self.name and self.name not in (".", ".."),
             "name must be a plain folder name (it names the run folder)"),
            (bool(data.path), "data.path must name the TFRecords folder"),
            (data.image_size >= 16, "data.image_size must be >= 16"),
            (data.color in COLORS, f"data.color must be {' or '.join(COLORS)}"),
            (data.margin >= 0, "data.margin must be >= 0"),
            (data.fairness_weight >= 1 and float(data.fairness_weight).is_integer(),
             "data.fairness_weight must be a whole number >= 1 (copies of each fairness face)"),
            (0 < data.train_fraction <= 1, "data.train_fraction must be in (0, 1]"),
            (model.filters >= 1, "model.filters must be >= 1"),
            (model.dense_units >= 1, "model.dense_units must be >= 1"),
            (0 <= model.dropout < 1, "model.dropout must be in [0, 1)"),
            (0 <= model.trainable_blocks <= 14, "model.trainable_blocks must be in 0..14"),
            (opt.name in OPTIMIZERS,
             f"optimizer.name must be one of {', '.join(OPTIMIZERS)}, got '{opt.name}'"),
            (opt.lr > 0, "optimizer.lr must be > 0"),
            (opt.schedule in SCHEDULES,
             f"optimizer.schedule must be one of {', '.join(SCHEDULES)}, got '{opt.schedule}'"),
            (opt.weight_decay >= 0, "optimizer.weight_decay must be >= 0"),
            (training.epochs >= 1, "training.epochs must be >= 1"),
            (training.batch_size >= 1, "training.batch_size must be >= 1"),
            (0 <= training.seed < 2**32, "training.seed must be in 0..2**32-1"),
            (training.early_stopping >= 0, "training.early_stopping must be >= 0 (0 = off)"),
            (training.steps_per_epoch >= 0, "training.steps_per_epoch must be >= 0 (0 = whole split)"),
            (0 <= training.label_smoothing < 1, "training.label_smoothing must be in [0, 1)"),
            (self.distribute in STRATEGIES, f"distribute must be {', '.join(STRATEGIES)}"),
            (not training.cache_frozen or not augment.mixup,
             "training.cache_frozen works with flips only: set augment.mixup=0"),
            (not training.cache_frozen or not any(
                (augment.rotation, augment.zoom, augment.shear, augment.shift,
                 augment.brightness, augment.jpeg_quality, augment.blur)),
             "training.cache_frozen works with flips only: set the other augment.* to 0"),
        ]


def _raise_first(checks: list[tuple[bool, str]]) -> None:
    """Raise FakefaceError with the message of the first failed (ok, message) check."""
    for ok, message in checks:
        if not ok:
            raise FakefaceError(message)


def _known_keys(cls=None, prefix: str = "") -> list[str]:
    """Every config key as written in YAML or --set: sections and dotted leaves."""
    cls = cls or Config
    hints, keys = typing.get_type_hints(cls), []
    for f in dataclasses.fields(cls):
        dotted = f"{prefix}{f.name}"
        keys.append(dotted)
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            keys += _known_keys(hint, f"{dotted}.")
    return keys


def unknown_key(dotted: str) -> FakefaceError:
    """The error for an unknown key, suggesting the nearest known one (usually a typo)."""
    keys = _known_keys()
    close = difflib.get_close_matches(dotted, keys, n=1)
    if not close:  # the right key in the wrong section: epochs -> training.epochs
        leaf = dotted.rsplit(".", 1)[-1]
        close = [k for k in keys if k.rsplit(".", 1)[-1] == leaf][:1]
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return FakefaceError(f"unknown config key '{dotted}'{hint}")


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
            raise unknown_key(dotted)
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
    if isinstance(values, dict) and "name" not in values:
        values["name"] = path.stem
    try:
        _build(Config, values, "")  # the file's own keys and types, before any --set
    except FakefaceError as exc:
        raise FakefaceError(f"{path}: {exc}") from None
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
        dotted = dotted.strip()
        if dotted not in _known_keys():
            raise unknown_key(dotted)
        node = values
        parts = dotted.split(".")
        for part in parts[:-1]:
            if node.get(part) is None:  # an empty section in the YAML
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise FakefaceError(f"{part}: expected a mapping, got {node!r}")
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    return from_dict(values)
