"""What the JSON API answers: a verdict with its pictures, and which model gives them."""

from __future__ import annotations

import base64

from fakeface_tf.models import model_version
from fakeface_tf.serving.drawing import to_png
from fakeface_tf.serving.inference import Detector, Prediction

DISPLAY_SIDE = 1024  # images sent back to the page are shrunk to this longer side


def _b64(png: bytes | None) -> str | None:
    return None if png is None else base64.b64encode(png).decode("ascii")


def payload(result: Prediction, with_images: bool = True) -> dict:
    """The JSON answer for one verdict, with base64 PNGs for the page unless told not to."""
    answer = result.to_dict()
    if with_images:
        heat = result.heatmap_rgba(max_side=DISPLAY_SIDE)
        blended = result.overlay(max_side=DISPLAY_SIDE)
        answer["images"] = {
            "boxed": _b64(to_png(result.boxed(DISPLAY_SIDE))),
            "heatmap": _b64(None if heat is None else to_png(heat)),
            "overlay": _b64(None if blended is None else to_png(blended)),
        }
    return answer


def model_identity(detector: Detector) -> dict:
    """The loaded model's name, architecture and version (its registry version, else its
    weights' content hash): what it is, not where it lives."""
    model = detector.model
    weights = model_version.content_hash(model.path)  # hashed once: a large model takes a while
    return {"name": model.root.name, "architecture": model.config.model.name if model.config else None,
            "version": model_version.version(model.root, weights), "content_hash": weights}
