"""One typed config for the whole pipeline: dataclasses in, YAML out; and where data lives.

A run is described by a single `Config`. It is loaded from `configs/*.yaml`, tweaked
from the command line with `--set section.key=value`, and saved fully resolved in every
run folder, so the same file reproduces the same run. The YAML is read by `yaml_loading`
(bounded, for hostile files) and its keys checked and typed by `config_keys`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs
import yaml

from fakeface_tf.core.config_keys import MOVED_KEYS, build, known_keys, move_old_keys, unknown_key
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.files import write_text_atomic
from fakeface_tf.core.text import short
from fakeface_tf.core.yaml_loading import parse_yaml, read_yaml

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_ROOT.parent  # the checkout in development; site-packages once installed
CONFIGS_DIR = PACKAGE_ROOT / "configs"  # the shipped recipes (package data; configs/ links here)
DATA_ENV = "FAKEFACE_DATA"
CACHE_ENV = "FAKEFACE_CACHE"
MODEL_ENV = "FAKEFACE_MODEL"  # the model `predict`, `serve` and `evaluate` use without --model
APP_NAME = "fakeface_tf"  # names the user cache folder (platformdirs)
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "data"


def _is_checkout(root: Path) -> bool:
    """Whether `root` is this project's source checkout rather than site-packages: its
    pyproject.toml beside the package, and a .git or the data/ folder."""
    return (root / "pyproject.toml").is_file() and ((root / ".git").exists() or (root / "data").is_dir())


CHECKOUT: Path | None = REPO_ROOT if _is_checkout(REPO_ROOT) else None


def work_root() -> Path:
    """Where relative output paths (records, runs) land: the checkout, else the current folder,
    so an installed package never writes into site-packages."""
    return CHECKOUT or Path.cwd()

# The values the training code accepts (models.registry._optimizer builds exactly these).
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine")
COLORS = ("gray", "rgb")
# What the model sees: the face box with its margin, or the photo's largest square around the
# face (the whole of a square photo), which also shows hair, background and the generator's
# traces outside the face (docs/results.md: frozen FaceRes gains on it in every fold).
VIEWS = ("face", "image")
STRATEGIES = ("none", "mirrored", "multiworker")
CACHE_FROZEN = ("auto", "memory", "disk", "off")  # where training.cache_frozen keeps the maps

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


def portable_path(path: str | os.PathLike) -> str:
    """A path as reports show it (the card, the registry), never a machine's absolute path: under the data root
    as `$FAKEFACE_DATA/...`, under the checkout relative to it, else its last part alone."""
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    data = Path(os.environ.get(DATA_ENV) or DEFAULT_DATA_ROOT).expanduser()
    for base, prefix in ((data, f"${DATA_ENV}/"), (REPO_ROOT, "")):
        if path.resolve().is_relative_to(base.resolve()):
            return prefix + path.resolve().relative_to(base.resolve()).as_posix()
    return path.name


def cache_root() -> Path:
    """Where derived files are kept between runs (face crops, converted weights):
    $FAKEFACE_CACHE, else data/cache/ in the checkout, else the user cache folder
    (platformdirs: ~/.cache/fakeface_tf on Linux) of an installed package."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if CHECKOUT is not None:
        return CHECKOUT / "data" / "cache"
    return Path(platformdirs.user_cache_dir(APP_NAME))


def cache_dir(name: str) -> Path:
    """The cache subfolder for one kind of derived file (`faceres`, `fairness`, ...):
    `cache_root()`/name. Not created here."""
    return cache_root() / name


def records_dir(path: str | os.PathLike) -> Path:
    """The records folder `data.path` names, to read records from: `~` expanded, and a relative
    path that is not in the cwd but is in the repository taken from the repository. Whether
    the folder holds records is not checked (`datasets.records_path` checks that)."""
    path = Path(path).expanduser()
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        return REPO_ROOT / path
    return path


def output_records_dir(path: str | os.PathLike) -> Path:
    """The records folder `data.path` names, to write records into (the end-to-end pipeline):
    a relative path is taken from the checkout whatever the cwd (installed: from the cwd)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else work_root() / path


def config_file(path: str | os.PathLike) -> Path:
    """The YAML file `path` names: the file itself when it exists, else the shipped recipe of
    that name (`faceres`, `faceres.yaml` or `configs/faceres.yaml`), so the recipes work from
    an installed package too; else `path` as given (reading it names it as missing)."""
    path = Path(path).expanduser()
    parts = path.parts
    if path.exists() or not (len(parts) == 1 or (len(parts) == 2 and parts[0] == "configs")):
        return path
    packaged = CONFIGS_DIR / (path.name if path.suffix else f"{path.name}.yaml")
    return packaged if packaged.is_file() else path


def color_channels(color: str) -> int:
    """Channels of a face crop of `color` (one of COLORS): 1 for gray, 3 for rgb."""
    return 1 if color == "gray" else 3


@dataclass
class DataConfig:
    """Where the data is and how faces are cut out of it."""

    root: str = ""  # raw image data; "" means $FAKEFACE_DATA or ../shared/data
    path: str = "data/records"  # the TFRecords folder written by `fakeface preprocess`
    image_size: int = 128
    color: str = "gray"  # gray | rgb
    margin: float = 0.2  # extra border around the face box, as a fraction of its size
    level: bool = True  # rotate faces so the eyes are level (False: plain pixel-exact cut)
    view: str = "face"  # face: the face box and margin | image: the photo's square around the face
    fairness_labels: str = ""  # labels CSV whose training part is mixed into training
    fairness_weight: float = 1.0  # how many copies of each fairness face to mix in
    train_fraction: float = 1.0  # train on this share of the training split (learning curves)

    @property
    def channels(self) -> int:
        return color_channels(self.color)


def recipe_data() -> DataConfig:
    """The face cut of the shipped recipe (configs/faceres.yaml, saved_models/reference): the
    photo's square around the face (view "image"), 224 px RGB, not levelled. `fakeface
    preprocess` cuts it unless told otherwise, so its records train the recipe as they are
    (tests/preprocess/test_default_cut.py: all three agree)."""
    return DataConfig(image_size=224, color="rgb", margin=0.2, level=False, view="image")


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
    # rest (flips are precomputed; other augmentations need the full model each step). Their
    # outputs are kept in memory, on disk under $FAKEFACE_CACHE/frozen (reused by later runs),
    # or auto: in memory while small (frozen.py); off runs the whole model every step.
    cache_frozen: str = "off"  # auto | memory | disk | off (old configs: true = auto)
    # Start the linear head from a logistic-regression probe on the frozen features (the
    # head's warm-up), its regularisation picked on validation AUC.
    probe_init: bool = False
    # float16 compute, float32 weights and sigmoid output (keras mixed_float16): a GPU speed-up.
    mixed_precision: bool = False
    jit_compile: bool = False  # XLA-compile the training step (model.compile's jit_compile)
    # Mirror the run into MLflow (training/tracking.py) when it is installed; `off` turns it
    # off. Not part of the digest: it changes no result.
    tracking: bool = True

    @property
    def caches_frozen(self) -> bool:
        """Whether the frozen layers run once (`cache_frozen` is not off)."""
        return self.cache_frozen != "off"


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
    # >0: CNNDetection's Blur+JPEG(p), for other generators: with this probability each, a
    # Gaussian blur (sigma ~ U[0, 3]) then a JPEG re-compression (quality ~ U{30..100})
    blur_jpeg: float = 0.0

    def checks(self) -> list[tuple[bool, str]]:
        """(ok, message) per field: the ranges `datasets.augmenter` draws from."""
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
            (0 <= self.blur_jpeg <= 1, "augment.blur_jpeg must be in [0, 1] (a probability)"),
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
    distribute: str = "none"  # none | mirrored | multiworker ($TF_CONFIG names the workers)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | os.PathLike) -> None:
        """Write the resolved config as YAML, atomically (a run's config.yaml is never torn)."""
        write_text_atomic(path, self.to_yaml())

    def digest(self) -> str:
        """Short hash of the resolved config: names the run folder."""
        values = self.to_dict()
        values["training"].pop("tracking")  # a mirror, not a hyperparameter
        blob = json.dumps(values, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:8]

    def validate(self) -> "Config":
        """Check every field against what the data, models and training stages accept, naming
        the field, so a bad value fails before a run folder is created (the model name and its
        input size need the registry: registry.check_model_config, also run before)."""
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
            (data.view in VIEWS, f"data.view must be {' or '.join(VIEWS)}"),
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
            (self.distribute != "multiworker"
             or not (training.caches_frozen or training.probe_init),
             "distribute=multiworker trains whole models on images: set training.cache_frozen=off "
             "and training.probe_init=false"),
            (not (training.jit_compile and training.deterministic),
             "training.jit_compile needs training.deterministic=false (XLA refuses op determinism "
             "for some kernels, e.g. MaxPool gradients)"),
            (training.cache_frozen in CACHE_FROZEN,
             f"training.cache_frozen must be one of {', '.join(CACHE_FROZEN)}"),
            (not training.caches_frozen or not augment.mixup,
             "training.cache_frozen works with flips only: set augment.mixup=0"),
            (not training.caches_frozen or not any(
                (augment.rotation, augment.zoom, augment.shear, augment.shift,
                 augment.brightness, augment.jpeg_quality, augment.blur, augment.blur_jpeg)),
             "training.cache_frozen works with flips only: set the other augment.* to 0"),
        ]


def _raise_first(checks: list[tuple[bool, str]]) -> None:
    """Raise FakefaceError with the message of the first failed (ok, message) check."""
    for ok, message in checks:
        if not ok:
            raise FakefaceError(message)


def from_dict(values: dict) -> Config:
    return build(Config, move_old_keys(values)).validate()


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (a path, or a shipped recipe's name: `config_file`) and apply
    `section.key=value` overrides on top."""
    path = config_file(path)
    values = read_yaml(path) or {}
    if isinstance(values, dict) and "name" not in values:
        values["name"] = path.stem
    try:
        values = move_old_keys(values)
        build(Config, values)  # the file's own keys and types, before any --set
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
            raise FakefaceError(f"--set expects key=value, got {short(item)}")
        dotted, raw = item.split("=", 1)
        dotted = MOVED_KEYS.get(dotted.strip(), dotted.strip())
        keys = known_keys(Config)
        if dotted not in keys:
            raise unknown_key(dotted, keys)
        node = values
        parts = dotted.split(".")
        for part in parts[:-1]:
            if node.get(part) is None:  # an empty section in the YAML
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise FakefaceError(f"{part}: expected a mapping, got {short(node)}")
        node[parts[-1]] = parse_yaml(raw, f"--set {dotted}") if raw.strip() else ""
    return from_dict(values)
