"""Real face / fake face / uncertain / not a face for one image, and which pixels weighed most.

`Detector` loads a model and MTCNN once, cuts the face with `faces.extract_face` (the very
function preprocessing uses), scores it (a face whose P(fake) lies in the model's "uncertain"
band, when it has one, gets no real/fake verdict), and on request explains the score
(`explanations.py`) and maps the heatmap back onto the original image (`drawing.py`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data.faces import FaceCrop, extract_face, extract_faces, mtcnn_detector
from fakeface_tf.data.images import MAX_PIXELS, load_image
from fakeface_tf.models import artifacts
from fakeface_tf.models.uncertainty import UNCERTAIN, Band
from fakeface_tf.serving.drawing import colorize, draw_box, fit, heatmap_to_original, overlay
from fakeface_tf.serving.explanations import EXPLAIN_METHODS, Explainer


def read_image(source: str | Path | bytes | np.ndarray, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """RGB uint8 HxWx3 from a path, bytes or array; bad input raises one of images' ImageErrors."""
    if isinstance(source, np.ndarray):
        return source
    return load_image(source, max_pixels=max_pixels)


# -------------------------------------------------------------------------- prediction


@dataclass
class Prediction:
    """One image's verdict, the face it rests on, and (when asked) where the model looked."""

    verdict: str  # real face | fake face | uncertain | not a face
    probability: float | None  # P(fake); None when there is no face to score
    threshold: float
    face: FaceCrop
    image: np.ndarray = field(repr=False)  # the original RGB image
    band: Band | None = None  # the model's "uncertain" band, when it has one
    explain: str | None = None
    heatmap: np.ndarray | None = field(default=None, repr=False)  # over the crop, [0, 1]
    heatmap_image: np.ndarray | None = field(default=None, repr=False)  # over the original

    @property
    def box(self) -> tuple[float, float, float, float] | None:
        return tuple(float(v) for v in self.face.box) if any(self.face.box) else None

    @property
    def leaning(self) -> str | None:
        """The side of the threshold P(fake) falls on ("fake face" / "real face"), even for an
        uncertain face: what an explanation explains. None without a face."""
        return None if self.probability is None else threshold_verdict(self.probability, self.threshold)

    def to_dict(self) -> dict:
        """JSON-friendly summary (no arrays); "band" only for a model that has one."""
        answer = {
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
        if self.band is not None:
            answer["band"] = band_summary(self.band)
        return answer

    def boxed(self, max_side: int | None = None) -> np.ndarray:
        """The original image (shrunk to max_side) with the face box drawn."""
        small = fit(self.image, max_side)
        scale = small.shape[1] / self.image.shape[1]
        return draw_box(small, [v * scale for v in self.face.box])

    def overlay(self, colormap: str = "jet", opacity: float = 0.6, max_side: int | None = None,
                on_crop: bool = False) -> np.ndarray | None:
        """The heatmap blended onto the original (or onto the face crop); None if not explained."""
        if self.heatmap is None:
            return None
        if on_crop:
            return overlay(self.face.image, self.heatmap, colormap, opacity)
        return overlay(self.boxed(max_side), fit(self.heatmap_image, max_side), colormap, opacity)

    def heatmap_rgba(self, colormap: str = "jet", max_side: int | None = None) -> np.ndarray | None:
        """The heatmap over the original as a transparent RGBA layer (for client-side opacity)."""
        if self.heatmap_image is None:
            return None
        return colorize(fit(self.heatmap_image, max_side), colormap)


def band_summary(band: Band) -> dict:
    """The band as the JSON API and the page show it: its edges and its error rate."""
    return {"low": band.low, "high": band.high, "alpha": band.alpha}


def threshold_verdict(probability: float, threshold: float) -> str:
    """P(fake) >= threshold -> "fake face"; else "real face"."""
    return "fake face" if probability >= threshold else "real face"


def verdict_for(face_ok: bool, probability: float | None, threshold: float, band: Band | None = None) -> str:
    """No face -> "not a face"; P(fake) inside the model's band (when it has one) -> "uncertain";
    else the threshold's verdict."""
    if not face_ok or probability is None:
        return "not a face"
    if band is not None and not band.decides(probability):
        return UNCERTAIN
    return threshold_verdict(probability, threshold)


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
    band: Band | None = None  # P(fake) in it is "uncertain"; from the model's conformal.json
    _explainer: Explainer | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, model_path: str | Path | None = None, max_pixels: int = MAX_PIXELS) -> "Detector":
        """Load the model (default: saved_models/reference), its band if any, and MTCNN, once."""
        model = artifacts.load_model(model_path or artifacts.default_model_path())
        mtcnn_detector()
        return cls(model=model, threshold=model.threshold, max_pixels=max_pixels, band=model.band)

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
            crops = extract_faces(images, self.model.face_options, mtcnn_detector())
            faces = [i for i, crop in enumerate(crops) if crop.ok]
            scores = _predict_padded(self.model.predict, [crops[i].image for i in faces])
        probability = dict(zip(faces, (float(p) for p in scores)))
        return [Prediction(verdict_for(face.ok, probability.get(i), self.threshold, self.band),
                           probability.get(i), self.threshold, face, image, self.band)
                for i, (image, face) in enumerate(zip(images, crops))]

    def explain(self, result: Prediction, method: str | None) -> Prediction:
        """Add the heatmap for `method` to a face's verdict (a no-op for None or no face)."""
        if method is None or not result.face.ok:
            return result
        self.check_explain(method)
        with self._lock:
            if self._explainer is None:
                self._explainer = Explainer(self.model.keras_model)
            heat = self._explainer(method, result.face.image, result.leaning == "fake face")
        result.explain, result.heatmap = method, heat
        result.heatmap_image = heatmap_to_original(heat, result.face.transform, result.image.shape)
        return result
