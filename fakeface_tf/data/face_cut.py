"""The face cut: one definition of how faces are cut (size, colour, margin, levelling, view,
what counts as a face, the detector), written by preprocess into preprocess.json, checked by
train against its config, saved beside every model as face_cut.json and read back by whoever
serves it. `faces.py` does the cutting."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from fakeface_tf.core.config import VIEWS, color_channels
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.files import write_text_atomic
from fakeface_tf.core.run_folder import FACE_CUT_FILE as CUT_FILE
from fakeface_tf.data.records import SUMMARY_FILE

RETRY = 1  # the second try of new cuts; 0 = none (every cut saved before it existed)


def detector_version() -> str:
    """The face detector and its version, part of the cut: another MTCNN finds other boxes."""
    return f"mtcnn {metadata.version('mtcnn')}"


@dataclass
class FaceOptions:
    """The face cut: output size and colour, margin, levelling, what counts as a face, and the
    detector. One definition, written by preprocess into preprocess.json, checked by train,
    saved with every model (face_cut.json) and used by the Detector that serves it."""

    size: int = 128
    color: str = "gray"  # gray | rgb
    margin: float = 0.2  # border on each side, as a fraction of the face box's longer side
    min_face: int = 24  # px, shorter box side in the original image
    min_confidence: float = 0.90
    level: bool = True  # rotate so the eyes are level; False cuts whole pixels, no resampling
    # The face detector's name and version ("mtcnn 1.0.0"), not a detector object. The field
    # name is part of the stored format (face_cut.json, preprocess.json): keep it.
    detector: str = field(default_factory=detector_version)
    # No confident face at first: 0 stops (cuts stored without the field), 1 tries `_second_try`.
    retry: int = RETRY
    view: str = "face"  # face | image (config.VIEWS); margin and level apply to "face" only

    @property
    def channels(self) -> int:
        return color_channels(self.color)

    @classmethod
    def from_dict(cls, values: dict, source: str = "face cut") -> "FaceOptions":
        """The cut stored as JSON; an unknown field is an error naming it and the source."""
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise FakefaceError(f"{source}: unknown face-cut field(s) {', '.join(sorted(unknown))}")
        return cls(**{"detector": "unknown", "retry": 0, "view": "face", **values})

    def differences(self, other: "FaceOptions", fields=None) -> list[str]:
        """'field: mine vs theirs' for each field (of `fields`, default all) that differs."""
        names = fields or [f.name for f in dataclasses.fields(self)]
        return [f"{n}: {getattr(self, n)!r} vs {getattr(other, n)!r}" for n in names
                if getattr(self, n) != getattr(other, n)]


def describe_view(options: FaceOptions) -> str:
    """What the model is shown, in words (the card's, the page's)."""
    if options.view == "image":
        return "square of the photo around the face (all of a square photo), not rotated"
    return f"face crop (the face box with a {options.margin:g} margin{', eyes levelled' if options.level else ''})"


def save_cut(folder: str | Path, options: FaceOptions) -> Path:
    """Write the face cut beside a model, so whoever serves the model cuts faces the same way."""
    return write_text_atomic(Path(folder) / CUT_FILE, json.dumps(dataclasses.asdict(options), indent=2))


def _records_cut(summary: dict) -> dict:
    """preprocess.json's cut; records made before the detector was part of it name it from
    the versions they recorded."""
    cut = summary["settings"]["face"]
    mtcnn = summary.get("versions", {}).get("mtcnn")
    return cut if "detector" in cut or not mtcnn else {**cut, "detector": f"mtcnn {mtcnn}"}


def read_cut(folder: str | Path) -> FaceOptions | None:
    """The face cut saved in a model folder (face_cut.json) or a records folder
    (preprocess.json); None when the folder holds neither."""
    folder = Path(folder)
    for name, pick in ((CUT_FILE, lambda d: d), (SUMMARY_FILE, _records_cut)):
        path = folder / name
        if path.is_file():
            try:
                return FaceOptions.from_dict(pick(json.loads(path.read_text())), str(path))
            except (ValueError, KeyError, TypeError) as exc:
                raise FakefaceError(f"{path}: unreadable face cut ({exc})") from None
    return None


CONFIG_FIELDS = ("size", "color", "margin", "level", "view")  # the cut a training config sets


def face_options(data) -> FaceOptions:
    """The FaceOptions a `config.DataConfig` asks for (size, colour, margin, levelling)."""
    return FaceOptions(size=data.image_size, color=data.color, margin=data.margin, level=data.level,
                       view=data.view)

def check_options(options: FaceOptions) -> None:
    """Refuse face options that would fail later, with a message naming the field."""
    if options.color not in ("gray", "rgb"):
        raise FakefaceError(f"face color must be gray or rgb, got {options.color!r}")
    if options.size < 8 or options.margin < 0:
        raise FakefaceError(f"face size must be >= 8 and margin >= 0, got {options}")
    if options.view not in VIEWS:
        raise FakefaceError(f"face view must be {' or '.join(VIEWS)}, got {options.view!r}")
    if options.retry not in (0, 1):
        raise FakefaceError(f"face retry must be 0 or 1 (a newer cut?), got {options.retry!r}")
