"""What people see of a verdict: the heatmap mapped onto the image, coloured and blended, the
face box, and PNG bytes of any of them.

A crop's heatmap is mapped back onto the original image through the inverse of the crop's
affine transform, so the highlight sits on the face where it was found (zero everywhere
outside the cropped square).
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data.faces import as_rgb

COLORMAPS = {
    "jet": cv2.COLORMAP_JET,
    "turbo": cv2.COLORMAP_TURBO,
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "hot": cv2.COLORMAP_HOT,
}


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


def fit(array: np.ndarray, max_side: int | None) -> np.ndarray:
    """Shrink so the longer side is at most max_side (area interpolation); never enlarge."""
    if not max_side or max(array.shape[:2]) <= max_side:
        return array
    scale = max_side / max(array.shape[:2])
    size = (max(1, round(array.shape[1] * scale)), max(1, round(array.shape[0] * scale)))
    return cv2.resize(array, size, interpolation=cv2.INTER_AREA)
