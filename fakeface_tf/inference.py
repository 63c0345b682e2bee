"""Real face / fake face / not a face for one image, and which pixels weighed most.

`Detector` loads a model and MTCNN once, cuts the face with `faces.extract_face` (the very
function preprocessing uses), scores it, and on request explains the score with tf-keras-vis
on the model cut at its linear `logit` layer. The crop's heatmap is mapped back onto the
original image through the inverse of the crop's affine transform, so the highlight sits on
the face where it was found (zero everywhere outside the cropped square).

Explanations always explain the verdict that was given: the logit for "fake face" and the
negated logit for "real face", so the bright pixels are those that pushed the model towards
what it said.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

from fakeface_tf import artifacts
from fakeface_tf.errors import FakefaceError
from fakeface_tf.faces import FaceCrop, as_rgb, extract_face, extract_faces, get_detector
from fakeface_tf.images import MAX_PIXELS, load_image

if TYPE_CHECKING:
    import keras

EXPLAIN_METHODS = ("gradcam++", "smoothgrad", "scorecam")
COLORMAPS = {
    "jet": cv2.COLORMAP_JET,
    "turbo": cv2.COLORMAP_TURBO,
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "hot": cv2.COLORMAP_HOT,
}
SMOOTH_SAMPLES = 20  # SmoothGrad noisy copies
SMOOTH_NOISE = 0.2  # their noise sigma, as a fraction of the crop's value range
SCORECAM_MAX_N = 32  # Faster-Score-CAM: only the 32 most varied activation maps are scored


# ------------------------------------------------------------------------------ images


def read_image(source: str | Path | bytes | np.ndarray, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """RGB uint8 HxWx3 from a path, bytes or array; bad input raises one of images' ImageErrors."""
    if isinstance(source, np.ndarray):
        return source
    return load_image(source, max_pixels=max_pixels)


# --------------------------------------------------------------------------- heatmaps


def heatmap_to_original(heatmap: np.ndarray, transform: np.ndarray, shape: tuple) -> np.ndarray:
    """Map a crop heatmap onto the original image (HxW float32), zero outside the crop square.

    `transform` maps original coords to crop coords, which is exactly what WARP_INVERSE_MAP
    expects: each original pixel looks up its value in the crop.
    """
    height, width = shape[:2]
    return cv2.warpAffine(
        np.asarray(heatmap, np.float32), np.asarray(transform, np.float64), (width, height),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0.0,
    )


def colorize(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """RGBA uint8 heatmap: colour from the colormap, alpha = heat (cold pixels transparent)."""
    if colormap not in COLORMAPS:
        raise FakefaceError(f"colormap must be one of {', '.join(COLORMAPS)}, got {colormap!r}")
    heat = np.clip(np.asarray(heatmap, np.float32), 0.0, 1.0)
    levels = np.round(heat * 255).astype(np.uint8)
    rgb = cv2.applyColorMap(levels, COLORMAPS[colormap])[..., ::-1]
    return np.dstack([rgb, levels])


def overlay(image: np.ndarray, heatmap: np.ndarray, colormap: str = "jet",
            opacity: float = 0.6) -> np.ndarray:
    """The image with the heatmap blended in; each pixel's blend weight is opacity * heat."""
    if not 0.0 <= opacity <= 1.0:
        raise FakefaceError(f"opacity must be within [0, 1], got {opacity}")
    rgba = colorize(heatmap, colormap).astype(np.float32)
    alpha = opacity * rgba[..., 3:] / 255.0
    base = as_rgb(image).astype(np.float32)
    return np.round(base * (1.0 - alpha) + rgba[..., :3] * alpha).astype(np.uint8)


def draw_box(image: np.ndarray, box, color=(0, 255, 120)) -> np.ndarray:
    """A copy of the image with the face box drawn, line width scaled to the image."""
    out = as_rgb(image).copy()
    x, y, w, h = box
    if w <= 0 or h <= 0:
        return out
    thickness = max(2, round(max(out.shape[:2]) / 250))
    cv2.rectangle(out, (round(x), round(y)), (round(x + w), round(y + h)), color, thickness,
                  cv2.LINE_AA)
    return out


def to_png(array: np.ndarray) -> bytes:
    """PNG bytes of an RGB, RGBA or gray uint8 array."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def _fit(array: np.ndarray, max_side: int | None) -> np.ndarray:
    """Shrink so the longer side is at most max_side (area interpolation); never enlarge."""
    if not max_side or max(array.shape[:2]) <= max_side:
        return array
    scale = max_side / max(array.shape[:2])
    size = (max(1, round(array.shape[1] * scale)), max(1, round(array.shape[0] * scale)))
    return cv2.resize(array, size, interpolation=cv2.INTER_AREA)


# -------------------------------------------------------------------------- prediction


@dataclass
class Prediction:
    """One image's verdict, the face it rests on, and (when asked) where the model looked."""

    verdict: str  # real face | fake face | not a face
    probability: float | None  # P(fake); None when there is no face to score
    threshold: float
    face: FaceCrop
    image: np.ndarray = field(repr=False)  # the original RGB image
    explain: str | None = None
    heatmap: np.ndarray | None = field(default=None, repr=False)  # over the crop, [0, 1]
    heatmap_image: np.ndarray | None = field(default=None, repr=False)  # over the original

    @property
    def box(self) -> tuple[float, float, float, float] | None:
        return tuple(float(v) for v in self.face.box) if any(self.face.box) else None

    def to_dict(self) -> dict:
        """JSON-friendly summary (no arrays)."""
        return {
            "verdict": self.verdict,
            "probability": None if self.probability is None else round(self.probability, 6),
            "threshold": self.threshold,
            "box": None if self.box is None else [round(v, 2) for v in self.box],
            "angle": round(float(self.face.angle), 3),
            "face_status": self.face.status,
            "face_reason": self.face.reason,
            "face_confidence": round(float(self.face.confidence), 4),
            "explain": self.explain,
        }

    def boxed(self, max_side: int | None = None) -> np.ndarray:
        """The original image (shrunk to max_side) with the face box drawn."""
        small = _fit(self.image, max_side)
        scale = small.shape[1] / self.image.shape[1]
        return draw_box(small, [v * scale for v in self.face.box])

    def overlay(self, colormap: str = "jet", opacity: float = 0.6, max_side: int | None = None,
                on_crop: bool = False) -> np.ndarray | None:
        """The heatmap blended onto the original (or onto the face crop); None if not explained."""
        if self.heatmap is None:
            return None
        if on_crop:
            return overlay(self.face.image, self.heatmap, colormap, opacity)
        return overlay(self.boxed(max_side), _fit(self.heatmap_image, max_side), colormap, opacity)

    def heatmap_rgba(self, colormap: str = "jet", max_side: int | None = None) -> np.ndarray | None:
        """The heatmap over the original as a transparent RGBA layer (for client-side opacity)."""
        if self.heatmap_image is None:
            return None
        return colorize(_fit(self.heatmap_image, max_side), colormap)


def verdict_for(face_ok: bool, probability: float | None, threshold: float) -> str:
    """No face -> "not a face"; P(fake) >= threshold -> "fake face"; else "real face"."""
    if not face_ok or probability is None:
        return "not a face"
    return "fake face" if probability >= threshold else "real face"


# ------------------------------------------------------------------------ explanations


def logit_model(model: keras.Model) -> keras.Model:
    """The classifier cut at its linear `logit` layer (Grad-CAM++ and saliency explain logits)."""
    import keras  # here, not at the top: `fakeface predict --help` must not wait for TensorFlow

    try:
        logit = model.get_layer("logit").output
    except ValueError:
        raise FakefaceError(
            f"model {model.name!r} has no layer named 'logit'; explanations need the "
            "project's Dense(1, name='logit') head"
        ) from None
    return keras.Model(model.inputs, logit, name=f"{model.name}_logit")


def last_spatial_layer(model: keras.Model, prefix: str = "") -> str:
    """Name of the last layer before `<prefix>logit` with a 4D (N, H, W, C) output, H and W > 1;
    only layers whose names start with `prefix` (one member of an ensemble) count."""
    names = [layer.name for layer in model.layers]
    stop = names.index(prefix + "logit") if prefix + "logit" in names else len(names)
    for layer in reversed(model.layers[:stop]):
        if not layer.name.startswith(prefix):
            continue
        try:
            shape = tuple(layer.output.shape)
        except (AttributeError, ValueError):  # a layer called more than once has no one output
            continue
        if len(shape) == 4 and (shape[1] or 2) > 1 and (shape[2] or 2) > 1:
            return layer.name
    raise FakefaceError(f"model {model.name!r} has no convolutional (4D) layer to explain")


class Explainer:
    """tf-keras-vis explainers for one model, built once and reused for every image."""

    def __init__(self, model: keras.Model):
        import keras
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.saliency import Saliency
        from tf_keras_vis.scorecam import Scorecam

        cut = logit_model(model)
        # One layer for a single model; each member's own last maps for an ensemble, whose
        # heatmap is the mean of its members' maps.
        self.penultimates = [last_spatial_layer(model, prefix) for prefix in artifacts.member_prefixes(model)]
        self.gradcam = GradcamPlusPlus(cut, model_modifier=None)
        self.saliency = Saliency(cut, model_modifier=None)
        # Score-CAM softmaxes the model output before scoring, so it gets two columns
        # [0, logit]: their softmax is exactly [P(real), P(fake)].
        logit = cut.outputs[0]
        # A zero column from a layer (not a raw op) so its name cannot clash with the model's.
        zero = keras.layers.Rescaling(0.0, name="zero_logit")(logit)
        pair = keras.layers.Concatenate(name="logit_pair")([zero, logit])
        paired = keras.Model(model.inputs, pair, name=f"{model.name}_logit_pair")
        paired.predict = _quiet_predict(paired)  # Score-CAM calls predict(); no progress bars
        self.scorecam = Scorecam(paired, model_modifier=None)
        self.scorecam_max_n = [min(SCORECAM_MAX_N, paired.get_layer(name).output.shape[-1])
                               for name in self.penultimates]

    def __call__(self, method: str, crop: np.ndarray, fake: bool) -> np.ndarray:
        """A [0, 1] heatmap over the crop for the verdict given (fake: logit, real: -logit)."""
        seed = np.asarray(crop, np.float32)[None]
        sign = 1.0 if fake else -1.0
        if method == "gradcam++":
            cam = np.mean([self.gradcam(lambda out: sign * out[:, 0], seed, penultimate_layer=layer,
                                        seek_penultimate_conv_layer=False, normalize_cam=False)
                           for layer in self.penultimates], axis=0)
        elif method == "smoothgrad":
            cam = self._smoothgrad(seed)
        elif method == "scorecam":
            column = 1 if fake else 0
            cam = np.mean([self.scorecam(lambda out: out[:, column], seed, penultimate_layer=layer,
                                         seek_penultimate_conv_layer=False, max_N=max_n,
                                         normalize_cam=False)
                           for layer, max_n in zip(self.penultimates, self.scorecam_max_n)], axis=0)
        else:
            raise FakefaceError(f"explain must be one of {', '.join(EXPLAIN_METHODS)}, got {method!r}")
        return unit_range(np.asarray(cam, np.float64)[0])

    def _smoothgrad(self, seed: np.ndarray) -> np.ndarray:
        """SmoothGrad with all noisy copies in one batch (one gradient pass instead of
        `smooth_samples` passes); same noise level and averaging as tf-keras-vis's
        smooth_samples: mean |gradient| over samples, then max over channels. The gradient's
        sign is dropped, so the logit serves both verdicts."""
        rng = np.random.default_rng(0)  # the same image always gets the same map
        sigma = SMOOTH_NOISE * (seed.max() - seed.min())
        noisy = seed + rng.normal(0.0, sigma, (SMOOTH_SAMPLES,) + seed.shape[1:])
        grads = self.saliency(lambda out: out[:, 0], noisy.astype(np.float32),
                              keepdims=True, normalize_map=False)
        return np.asarray(grads).mean(axis=0).max(axis=-1)[None]


def unit_range(heat: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the map's own min and max (float32; all zeros when flat).

    tf-keras-vis's normalize adds an epsilon of 1e-7 to the range, which flattens the tiny
    gradients of a barely trained model, so maps are normalised here instead.
    """
    heat = np.nan_to_num(np.asarray(heat, np.float64))
    low, high = heat.min(), heat.max()
    if high <= low:
        return np.zeros(heat.shape, np.float32)
    return ((heat - low) / (high - low)).astype(np.float32)


def _quiet_predict(model: keras.Model):
    predict = model.predict

    def quiet(x, **kwargs):
        kwargs.setdefault("verbose", 0)
        return predict(x, **kwargs)

    return quiet


def _predict_padded(predict, crops: list[np.ndarray]) -> np.ndarray:
    """P(fake) of each crop, the batch padded to a power of two so that a server sees five
    batch shapes instead of sixteen: TensorFlow and oneDNN keep memory per shape they meet."""
    if not crops:
        return np.zeros(0)
    size = 1 << (len(crops) - 1).bit_length()
    batch = np.stack(crops + [crops[-1]] * (size - len(crops)))
    return predict(batch)[: len(crops)]


# ---------------------------------------------------------------------------- detector


@dataclass
class Detector:
    """A loaded model + MTCNN; `predict` is thread-safe (one image at a time through TF)."""

    model: artifacts.LoadedModel
    threshold: float
    max_pixels: int = MAX_PIXELS
    _explainer: Explainer | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, model_path: str | Path | None = None, max_pixels: int = MAX_PIXELS) -> "Detector":
        """Load the model (default: saved_models/reference) and MTCNN, once."""
        model = artifacts.load_model(model_path or artifacts.default_model_path())
        get_detector()
        return cls(model=model, threshold=model.threshold, max_pixels=max_pixels)

    @property
    def explain_methods(self) -> tuple[str, ...]:
        """Methods available for this model (none for a bare SavedModel: no gradients)."""
        return EXPLAIN_METHODS if self.model.keras_model is not None else ()

    def warmup(self, max_batch: int = 1) -> None:
        """Run MTCNN once and the model at every batch size `_predict_padded` uses up to
        `max_batch`, so no first request is the slow one and a server's memory settles at
        start (TensorFlow keeps buffers per batch shape: +330 MB for 1 to 8 with FaceRes)."""
        blank = np.full((160, 160, 3), 128, np.uint8)
        options = self.model.face_options
        with self._lock:
            extract_face(blank, options)
            size = 1
            while True:
                self.model.predict(np.zeros((size, options.size, options.size, options.channels), np.uint8))
                if size >= max_batch:
                    break
                size *= 2

    def predict(self, source: str | Path | bytes | np.ndarray, explain: str | None = None) -> Prediction:
        """Verdict for one image (path, bytes or RGB array), with a heatmap when `explain` is set."""
        self.check_explain(explain)
        return self.predict_images([read_image(source, self.max_pixels)], [explain])[0]

    def check_explain(self, explain: str | None) -> None:
        """Refuse an unknown method, or any method for a model that cannot be explained."""
        if explain is not None and explain not in EXPLAIN_METHODS:
            raise FakefaceError(f"explain must be one of {', '.join(EXPLAIN_METHODS)}, got {explain!r}")
        if explain is not None and not self.explain_methods:
            raise FakefaceError(f"{self.model.path} is a bare SavedModel: explanations need "
                                "a Keras model (.keras file or a run folder)")

    def predict_images(self, images: list[np.ndarray], explains: list[str | None]) -> list[Prediction]:
        """Verdicts for decoded RGB images, scored in one batch, each explained as asked."""
        for explain in set(explains):
            self.check_explain(explain)
        results = self.score_images(images)
        for result, explain in zip(results, explains):
            self.explain(result, explain)
        return results

    def score_images(self, images: list[np.ndarray]) -> list[Prediction]:
        """Verdicts without explanations: MTCNN batches same-shape images and the model
        scores every face found in one batch."""
        with self._lock:
            crops = extract_faces(images, self.model.face_options, get_detector())
            faces = [i for i, crop in enumerate(crops) if crop.ok]
            scores = _predict_padded(self.model.predict, [crops[i].image for i in faces])
        probability = dict(zip(faces, (float(p) for p in scores)))
        return [Prediction(verdict_for(face.ok, probability.get(i), self.threshold),
                           probability.get(i), self.threshold, face, image)
                for i, (image, face) in enumerate(zip(images, crops))]

    def explain(self, result: Prediction, method: str | None) -> Prediction:
        """Add the heatmap for `method` to a face's verdict (a no-op for None or no face)."""
        if method is None or not result.face.ok:
            return result
        self.check_explain(method)
        with self._lock:
            if self._explainer is None:
                self._explainer = Explainer(self.model.keras_model)
            heat = self._explainer(method, result.face.image, result.verdict == "fake face")
        result.explain, result.heatmap = method, heat
        result.heatmap_image = heatmap_to_original(heat, result.face.transform, result.image.shape)
        return result
