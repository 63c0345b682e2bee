"""Find, level and crop the face in an image: the one face function of the project.

Preprocessing, evaluation, fairness and inference all call `extract_face` (or its batched
twin `extract_faces`), so a model always sees crops made the same way. MTCNN finds the
faces; the largest confident one is kept, rotated so its eye line is level, cut as a
square centred on the face box with `margin` on every side, and resized with area
interpolation. A cut of view "image" keeps instead the photo's largest square that holds the
face's centre (all of a square photo), unlevelled: what the model sees beyond the face. Where the square runs past the image edge, the edge pixels are replicated
(no hard black borders a classifier could learn from). MTCNN misses faces that fill the
frame (tight crops, often of small children): cuts of `retry` 1 look again (`_second_try`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from tqdm.auto import tqdm

from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data.face_cut import FaceOptions, check_options
from fakeface_tf.data.images import ImageError, load_image

STATUSES = ("ok", "no_face", "too_small", "low_confidence", "unreadable")
DETECT_MAX_SIDE = 1024  # larger images are shrunk for detection only; crops use full resolution
MIN_DETECT_SIDE = 12  # MTCNN's smallest input (its PNet window)
DETECT_BATCH_PIXELS = 4_000_000  # pixels per MTCNN call: 64 faces of 256 px, 4 of 1024 px
# MTCNN's later work is bounded too, whatever a photo shows: the caps are in mtcnn_bounded.py.
RETRY_PAD = 0.5  # retry 1: edge pixels replicated this fraction of the longer side on every side
RETRY_MIN_FILL = 0.5  # retry 1 keeps a face only if it spans this much of the shorter image side


@dataclass
class FaceCrop:
    """A face crop, or the reason there is none (`status` != "ok")."""

    status: str
    reason: str = ""
    image: np.ndarray | None = None  # uint8 size x size x C when ok
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # x, y, w, h in the original
    angle: float = 0.0  # eye-line angle in degrees that was levelled
    confidence: float = 0.0
    keypoints: dict = field(default_factory=dict)  # MTCNN keypoints in original coords
    transform: np.ndarray | None = None  # 2x3 affine: original coords -> crop coords

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# --------------------------------------------------------------------------- detection


@functools.lru_cache(maxsize=1)
def mtcnn_detector():
    """The process-wide MTCNN (weights ship in the mtcnn wheel; built once per process), its
    stages bounded so memory does not grow with the faces in a photo (mtcnn_bounded.py)."""
    # Imported here, not at the top: mtcnn (and mtcnn_bounded) load TensorFlow, seconds, and
    # this module is imported where nothing is detected yet and TensorFlow must not load:
    # serving.predict checks its inputs first (tests/serving/test_predict.py), preprocess plans shards.
    from mtcnn import MTCNN

    from fakeface_tf.data.mtcnn_bounded import BoundedONet, BoundedPNet, BoundedRNet

    return MTCNN(stages=[BoundedPNet, BoundedRNet, BoundedONet])


def _detection_input(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The image MTCNN sees (longest side <= DETECT_MAX_SIDE) and its scale factor."""
    scale = min(1.0, DETECT_MAX_SIDE / max(image.shape[:2]))
    if scale == 1.0:
        return image, 1.0
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return small, scale


KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")  # MTCNN row order


def _parse_row(row: np.ndarray) -> dict:
    """One MTCNN numpy row (id, x, y, w, h, conf, 5 xs, 5 ys) at full float precision.

    MTCNN's JSON output rounds keypoints to whole pixels, which costs ~1 degree of eye
    angle on a 256 px face; the numpy output keeps the fractions.
    """
    xs, ys = row[6:11], row[11:16]
    return {
        "box": tuple(float(v) for v in row[1:5]),
        "confidence": float(row[5]),
        "keypoints": {k: (float(x), float(y)) for k, x, y in zip(KEYPOINTS, xs, ys)},
    }


def _detect(images: list[np.ndarray], detector) -> list[list[dict]]:
    """MTCNN detections per image, in each image's own coordinates.

    Images are batched together only with others of the same shape (MTCNN pads a mixed
    batch to its largest member, which would waste work), DETECT_BATCH_PIXELS at a time.
    """
    results: list[list[dict]] = [[] for _ in images]
    by_shape: dict[tuple, list[int]] = {}
    for i, img in enumerate(images):
        by_shape.setdefault(img.shape, []).append(i)
    for shape, same in by_shape.items():
        step = max(1, DETECT_BATCH_PIXELS // (shape[0] * shape[1]))  # bounds MTCNN's memory
        for start in range(0, len(same), step):
            indices = same[start:start + step]
            batch = [images[i].astype(np.float32) for i in indices]
            rows = detector.detect_faces(batch, output_type="numpy")
            for row in np.asarray(rows).reshape(-1, 16):
                results[indices[int(row[0])]].append(_parse_row(row))
    return results


# ---------------------------------------------------------------------------- cropping


def _largest(faces: list[dict], min_confidence: float) -> tuple[dict | None, dict | None]:
    """(largest face at or above min_confidence, most confident face overall)."""
    confident = [f for f in faces if f["confidence"] >= min_confidence]
    area = lambda f: f["box"][2] * f["box"][3]  # noqa: E731
    best = max(confident, key=area) if confident else None
    top = max(faces, key=lambda f: f["confidence"]) if faces else None
    return best, top


def _scaled(face: dict, scale: float, pad: float = 0.0) -> dict:
    """A detection mapped from the detection image back to the original, less a `pad` border."""
    inv = 1.0 / scale
    x, y, w, h = (float(v) * inv for v in face["box"])
    return {
        "box": (x - pad, y - pad, w, h),
        "confidence": float(face["confidence"]),
        "keypoints": {k: (float(x) * inv - pad, float(y) * inv - pad)
                      for k, (x, y) in face["keypoints"].items()},
    }


def eye_angle(keypoints: dict) -> float:
    """Angle of the line from the left eye to the right eye, in degrees (image y points down)."""
    (lx, ly), (rx, ry) = keypoints["left_eye"], keypoints["right_eye"]
    if lx > rx:  # make the angle independent of which eye MTCNN calls left
        (lx, ly), (rx, ry) = (rx, ry), (lx, ly)
    return math.degrees(math.atan2(ry - ly, rx - lx))


def crop_transform(box, angle: float, margin: float, size: int) -> tuple[np.ndarray, float]:
    """2x3 affine from original coords to crop coords, and the crop side in original px.

    Rotates by `angle` around the box centre (levelling the eyes), then maps the square of
    side max(w, h) * (1 + 2 * margin) centred on the box onto [0, size) x [0, size).
    """
    x, y, w, h = box
    cx, cy = x + w / 2.0, y + h / 2.0
    side = max(w, h) * (1.0 + 2.0 * margin)
    left, top = cx - side / 2.0, cy - side / 2.0
    if not angle:  # a plain cut: snap to whole pixels so no pixel gets interpolated
        side = float(round(side))
        left, top = float(round(left)), float(round(top))
    matrix = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    matrix[:, 2] -= (left, top)
    return matrix * (size / side), side


def image_square(shape: tuple, box) -> tuple[float, float, float, float]:
    """View "image": the largest square of an image of `shape` centred as near the face box's
    centre as the image allows (all of a square image), as a box x, y, side, side."""
    height, width = shape[:2]
    side = min(height, width)
    x, y, w, h = box
    left = min(max(x + w / 2.0 - side / 2.0, 0.0), width - side)
    top = min(max(y + h / 2.0 - side / 2.0, 0.0), height - side)
    return left, top, float(side), float(side)


def _crop(image: np.ndarray, face: dict, options: FaceOptions) -> FaceCrop:
    """Level, cut and resize the face (or its image square, view "image"); status too_small
    when its box is under min_face."""
    x, y, w, h = face["box"]
    common = dict(box=(x, y, w, h), confidence=face["confidence"], keypoints=face["keypoints"])
    angle = eye_angle(face["keypoints"]) if options.level and options.view == "face" else 0.0
    if min(w, h) < options.min_face:
        return FaceCrop("too_small", f"largest face is {w:.0f}x{h:.0f} px, below min_face "
                        f"{options.min_face} px", angle=angle, **common)
    if options.view == "image":
        transform, side = crop_transform(image_square(image.shape, face["box"]), 0.0, 0.0, options.size)
    else:
        transform, side = crop_transform(face["box"], angle, options.margin, options.size)
    # Warp at native resolution, then area-resize: no aliasing when shrinking big faces.
    native_side = max(int(round(side)), options.size)
    native = transform * (native_side / options.size)
    crop = cv2.warpAffine(image, native, (native_side, native_side), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    if native_side != options.size:
        crop = cv2.resize(crop, (options.size, options.size), interpolation=cv2.INTER_AREA)
    if options.color == "gray":
        crop = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)[..., None]
    return FaceCrop("ok", "", np.ascontiguousarray(crop), angle=angle, transform=transform, **common)


def _padded(small: np.ndarray) -> tuple[np.ndarray, int, float]:
    """The detection image padded by RETRY_PAD of its longer side (edges replicated), shrunk."""
    pad = int(round(RETRY_PAD * max(small.shape[:2])))
    shown, scale = _detection_input(cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_REPLICATE))
    return shown, pad, scale


def _filling(faces: list[dict], shape: tuple, min_confidence: float) -> dict | None:
    """The largest confident face centred in the image and spanning RETRY_MIN_FILL of its shorter
    side, box clipped to the image. A smaller face is not what the second try is for: the first
    try saw it as it is, so finding it only on the padded copy would be chance, not a fix."""
    height, width = (float(side) for side in shape[:2])
    kept = []
    for face in faces:
        x, y, w, h = face["box"]
        left, top, right, bottom = max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height)
        if (face["confidence"] >= min_confidence and 0 <= x + w / 2 < width and 0 <= y + h / 2 < height
                and max(right - left, bottom - top) >= RETRY_MIN_FILL * min(height, width)):
            kept.append({**face, "box": (left, top, right - left, bottom - top)})
    return max(kept, key=lambda f: f["box"][2] * f["box"][3], default=None)


def _second_try(images: list[np.ndarray], small: list[tuple[np.ndarray, float]], detector,
                options: FaceOptions) -> list[FaceCrop | None]:
    """Retry 1 for images (with their detection input and its scale) where the first try found
    no confident face: the crop of a frame-filling face found on the padded image, or None
    where there is none (the first try's answer then stands, whatever it was)."""
    tries = [_padded(shown) for shown, _ in small]
    found, out = _detect([shown for shown, _, _ in tries], detector), []
    for image, (_, scale), (_, pad, shrink), faces in zip(images, small, tries, found):
        faces = [_scaled(_scaled(f, shrink, pad), scale) for f in faces]
        face = _filling(faces, image.shape, options.min_confidence)
        crop = _crop(image, face, options) if face is not None else FaceCrop("no_face")
        out.append(dataclasses.replace(crop, reason="found on the second try") if crop.ok else None)
    return out


def as_rgb(image: np.ndarray) -> np.ndarray:
    """An HxWx3 uint8 RGB array of a gray (HxW, HxWx1), RGB or RGBA image (alpha dropped,
    values cast to uint8); any other shape is a FakefaceError. May share memory with `image`."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise FakefaceError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[..., :3], dtype=np.uint8)


def extract_faces(images: list[np.ndarray], options: FaceOptions = FaceOptions(),
                  detector=None) -> list[FaceCrop]:
    """`extract_face` for many RGB images at once (MTCNN batches same-shape images)."""
    check_options(options)
    images = [as_rgb(img) for img in images]
    out: list[FaceCrop | None] = [None] * len(images)
    todo, small = [], []
    for i, img in enumerate(images):
        h, w = img.shape[:2]
        if min(h, w) < max(MIN_DETECT_SIDE, options.min_face):
            out[i] = FaceCrop("too_small", f"image is {w}x{h} px, too small to hold a "
                              f"{options.min_face} px face")
        else:
            todo.append(i)
            small.append(_detection_input(img))
    if todo:
        found = _detect([s for s, _ in small], detector or mtcnn_detector())
        for i, (_, scale), faces in zip(todo, small, found):
            faces = [_scaled(f, scale) for f in faces]
            best, top = _largest(faces, options.min_confidence)
            if best is not None:
                out[i] = _crop(images[i], best, options)
            elif top is not None:
                out[i] = FaceCrop("low_confidence", f"best face confidence {top['confidence']:.2f} "
                                  f"is below {options.min_confidence:.2f}", box=top["box"],
                                  confidence=top["confidence"], keypoints=top["keypoints"])
            else:
                out[i] = FaceCrop("no_face", "MTCNN found no face")
        again = [k for k, i in enumerate(todo) if out[i].status in ("no_face", "low_confidence")]
        retried = _second_try([images[todo[k]] for k in again], [small[k] for k in again],
                              detector or mtcnn_detector(), options) if options.retry else []
        for k, crop in zip(again, retried):
            out[todo[k]] = crop or out[todo[k]]
    return out


def extract_face(image: np.ndarray, options: FaceOptions = FaceOptions(), detector=None) -> FaceCrop:
    """The face in one RGB uint8 image as a levelled square crop, or the reason there is none."""
    return extract_faces([image], options, detector)[0]


def crop_files(paths: list, options: FaceOptions = FaceOptions(), batch_size: int = 16,
               progress: bool = True, detector=None, on_batch=None) -> list[FaceCrop]:
    """Load and crop many files; an unreadable file becomes FaceCrop(status="unreadable").

    `on_batch(n)` is called after every batch of n files (progress from worker processes).
    """
    crops: list[FaceCrop] = []
    bar = tqdm(total=len(paths), desc="faces", unit="img", disable=not progress)
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        loaded, errors = [], {}
        for j, path in enumerate(chunk):
            try:
                loaded.append(load_image(path))
            except ImageError as exc:
                errors[j] = FaceCrop("unreadable", str(exc))
        found = iter(extract_faces(loaded, options, detector) if loaded else [])
        crops.extend(errors[j] if j in errors else next(found) for j in range(len(chunk)))
        bar.update(len(chunk))
        if on_batch:
            on_batch(len(chunk))
    bar.close()
    return crops
