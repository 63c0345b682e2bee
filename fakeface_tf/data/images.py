"""Decode an uploaded or listed image into RGB uint8: the one decode function of the project.

Preprocessing, `fakeface predict` and `fakeface serve` all call `load_image`, so a face is cut
from the same pixels wherever it comes from, and a bad file fails the same way everywhere:
- only the formats in FORMATS are opened (anything else: NotAnImageError, HTTP 415);
- any decoder failure is a CorruptImageError naming the file (422), never a raw exception;
- memory is bounded by design: the header is checked against `max_pixels` before any pixel
  is decoded, JPEGs are decoded at a reduced DCT scale, and every image is shrunk to at most
  WORK_SIDE px on its longer side right after decoding;
- what a decode will hold is worked out from the header before any pixel is decoded
  (`decode_memory.decode_cost`: the mode's bytes per pixel and its copies, per-row overhead,
  PNG row buffers, TIFF tile and strip buffers, a progressive JPEG's whole-frame
  coefficients) and a file that would need more than `decode_bytes_bound` is refused, as is a
  JPEG of more than MAX_JPEG_SCANS scans (each scan is a pass over the whole frame);
- a file is read only when it is at most MAX_FILE_BYTES long.
The error types live in `image_errors` and are imported from here by callers.
"""

from __future__ import annotations

import io
import math
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fakeface_tf.core import files
from fakeface_tf.data.decode_memory import MAX_JPEG_SCANS, Layout, decode_cost, layout
from fakeface_tf.data.image_errors import (
    CorruptImageError,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
)

# The Pillow plugins that may open an image (JPEG's also opens MPO, the multi-picture JPEG
# many cameras write). No other decoder ever sees the bytes.
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
ACCEPTED = "JPEG, PNG, WebP, BMP, GIF (first frame) or TIFF"
# Header cap. JPEGs above it are decoded at a reduced DCT scale instead of refused; any image
# is also refused when its decode would hold more than decode_bytes_bound(max_pixels).
MAX_PIXELS = 50_000_000
# Longer side kept after decoding. Detection runs at <= 1024 px and crops are <= 256 px, so a
# 2048 px image still gives any face bigger than 1/10 of the picture at full crop resolution,
# and a decoded image never holds more than 12.6 MB however large the upload was.
WORK_SIDE = 2048
# Files longer than this are refused before a byte is read: a 50 MP uncompressed RGB TIFF or
# BMP (150 MB) fits, a 3 GB sparse file named .jpg does not.
MAX_FILE_BYTES = 256 * 2**20


def decode_bytes_bound(max_pixels: int = MAX_PIXELS) -> int:
    """The most memory one `load_image` call may hold: what a square 8-bit RGB image of
    `max_pixels` costs (`decode_cost`). Costlier headers (alpha, 16-bit, WebP, a tall strip,
    TIFF tiles, progressive JPEG buffers) are refused above it, so this bounds every decode."""
    side = math.isqrt(max_pixels)
    return decode_cost("RGB", (side, side), Layout(buffer_bytes=2 * (3 * side + 1)), side=WORK_SIDE)


# Pillow warns about the corrupt data it skips; load_image reports what matters as an error.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


def is_image_file(path: str | Path) -> bool:
    """True for a file whose extension is one of the accepted formats'."""
    return Path(path).suffix.lower() in EXTENSIONS


def list_images(folder: str | Path) -> tuple[list, list]:
    """(image files, other files) anywhere under `folder`, each sorted by path; hidden files
    (names starting with ".") are in neither. Images are told by extension (`is_image_file`),
    the rule `fakeface preprocess` lists class folders by. Paths for a local folder; URLs
    for a URL (gs://..., read through Beam's file systems: see files.py)."""
    images, others = [], []
    for path in files.walk(folder):
        if Path(path).name.startswith("."):
            continue
        (images if is_image_file(path) else others).append(path)
    return images, others


def describe(source) -> str:
    """How error messages name the source: its path, or "image bytes"."""
    return str(source) if isinstance(source, (str, Path)) else "image bytes"


def _too_long(name: str, size: int, limit: int) -> ImageTooLargeError:
    return ImageTooLargeError(f"{name}: the file is {size / 2**20:.0f} MB, above the "
                              f"{limit / 2**20:.0f} MB limit")


def _check_file(path, limit: int) -> None:
    """Refuse a local file longer than `limit`, or one that is not a regular file (a device or
    a pipe never ends), from its metadata; a missing path is left to the read to report."""
    try:
        info = os.stat(path)
    except OSError:
        return
    if stat.S_ISDIR(info.st_mode):
        return
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(f"{path}: not a regular file")
    if info.st_size > limit:
        raise _too_long(str(path), info.st_size, limit)


def read_bytes(source: str | Path | bytes, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a path, a URL or a byte string; a missing or empty file, or one longer than
    `limit` (a local file is measured before it is read), raises ImageError."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:  # a path, or a URL (gs://...) read through Beam's file systems: files.read_bytes
        if not files.scheme(source):
            _check_file(source, limit)
        try:
            data = files.read_bytes(source)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ImageError(f"{source}: file not found") from None
    if not data:
        raise EmptyImageError(f"{describe(source)}: empty file (0 bytes)")
    if len(data) > limit:
        raise _too_long(describe(source), len(data), limit)
    return data


def _unaccepted_reason(data: bytes) -> str:
    """Why bytes that no accepted format opens are refused: another format, text, or nothing."""
    try:  # name the format, from its header only, so the user knows what to convert
        other = Image.open(io.BytesIO(data)).format
    except Exception:  # noqa: BLE001 - any plugin may fail on hostile bytes; it only names
        other = None
    if other:
        return f"{other} images are not accepted; send {ACCEPTED}"
    try:
        data[:512].decode("utf-8")
        return "not an image: the file holds text"
    except UnicodeDecodeError:
        return f"not an image: unrecognised format (send {ACCEPTED})"


def _open(data: bytes, name: str) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=list(FORMATS))
    except UnidentifiedImageError:
        if _kind(data) != "image":  # an accepted format's signature, then garbage
            raise CorruptImageError(f"{name}: cannot read the {_kind(data)} header") from None
        raise NotAnImageError(f"{name}: {_unaccepted_reason(data)}") from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name}: too large to decode safely ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - a header parser may raise anything on bad bytes
        raise CorruptImageError(f"{name}: cannot read the {_kind(data)} header ({_why(exc)})") from None


def _kind(data: bytes) -> str:
    """The accepted format the bytes claim to be, for messages ("image" when unclear)."""
    for magic, kind in ((b"\xff\xd8", "JPEG"), (b"\x89PNG", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
                        (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF")):
        if data.startswith(magic):
            return kind
    return "WebP" if data[8:12] == b"WEBP" else "image"


def _why(exc: Exception) -> str:
    text = " ".join(str(exc).split())[:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_cost(img: Image.Image, data: bytes, name: str, budget: int, side: int = WORK_SIDE,
                header_size: tuple[int, int] | None = None) -> None:
    """Refuse, before any pixel is decoded, a JPEG with too many scans or an image whose decode
    would hold more than `budget` bytes (ImageTooLargeError, naming the limit). `img.size` is
    what will be decoded (a JPEG's draft), `header_size` what its header says."""
    plan = layout(img, data, name)
    if plan.scans > MAX_JPEG_SCANS:
        raise ImageTooLargeError(f"{name}: the JPEG has {plan.scans} scans, above the limit of "
                                 f"{MAX_JPEG_SCANS}")
    transparent = img.mode == "P" and "transparency" in img.info
    cost = decode_cost(img.mode, img.size, plan, transparent, side=side)
    if cost > budget:
        held = f" ({plan.what})" if max(plan.held_bytes, plan.buffer_bytes) > cost / 4 else ""
        width, height = header_size or img.size
        raise ImageTooLargeError(f"{name}: decoding this {width}x{height} {img.mode} "
                                 f"{img.format} would take {cost / 2**20:.0f} MB{held}, above the "
                                 f"{budget / 2**20:.0f} MB limit per image")


def _eight_bit(img: Image.Image) -> Image.Image:
    """The image in an 8-bit mode (L, LA, RGB or RGBA) without float64 copies."""
    if img.mode.startswith("I;16"):  # Pillow's linear point() stays 16-bit; convert then clips
        return img.point(lambda v: v / 256).convert("L")
    if img.mode == "I":  # 32-bit ints hold 16-bit data in practice (TIFF, old PNG readers)
        return img.point(lambda v: v * (255.0 / 65535.0)).convert("L")
    if img.mode == "F":
        return img.convert("L")  # Pillow clips floats to 0..255
    if img.mode in ("L", "LA", "RGB", "RGBA"):
        return img
    if img.mode == "PA" or (img.mode == "P" and "transparency" in img.info):
        return img.convert("RGBA")
    return img.convert("RGB")  # 1, P, CMYK, YCbCr, LAB, HSV


def _shrink(img: Image.Image, side: int) -> Image.Image:
    """Area-resize so the longer side is at most `side` (never enlarges)."""
    scale = side / max(img.size)
    if scale >= 1.0:
        return img
    size = tuple(max(1, round(v * scale)) for v in img.size)
    return img.resize(size, Image.Resampling.BOX, reducing_gap=2.0)


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """RGB uint8 array; transparency is composited onto white."""
    if img.mode in ("RGBA", "LA"):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def load_image(source: str | Path | bytes, max_pixels: int = MAX_PIXELS,
               max_side: int = WORK_SIDE) -> np.ndarray:
    """Decode a file or bytes into RGB uint8 HxWx3, upright per its EXIF orientation, with its
    longer side at most `max_side`. Undecodable input raises an ImageError naming the file."""
    name = describe(source)
    data = read_bytes(source)
    img = _open(data, name)
    width, height = img.size
    if width < 1 or height < 1:
        raise CorruptImageError(f"{name}: the header says the image is {width}x{height} px")
    if width * height > max_pixels and img.format not in ("JPEG", "MPO"):
        raise ImageTooLargeError(f"{name}: {width}x{height} is {width * height / 1e6:.0f} megapixels, "
                                 f"above the {max_pixels / 1e6:.0f} MP limit")
    try:
        if img.format in ("JPEG", "MPO"):  # decode at the smallest DCT scale still >= max_side
            scale = min(1.0, max_side / max(width, height))
            img.draft(img.mode, (math.ceil(width * scale), math.ceil(height * scale)))
        if img.size[0] * img.size[1] > max_pixels:
            raise ImageTooLargeError(f"{name}: {width}x{height} is above the "
                                     f"{max_pixels / 1e6:.0f} MP limit even at 1/8 scale")
        _check_cost(img, data, name, decode_bytes_bound(max_pixels), max_side, (width, height))
        orientation = img.getexif().get(0x0112)  # after the check: a PNG's EXIF may follow its pixels
        img.load()
        img = _shrink(_eight_bit(img), max_side)
        if orientation in _TRANSPOSE:
            img = img.transpose(_TRANSPOSE[orientation])
        return _to_rgb_array(img)
    except ImageError:
        raise
    except MemoryError:
        raise ImageTooLargeError(f"{name}: not enough memory to decode a {width}x{height} image") from None
    except Exception as exc:  # noqa: BLE001 - decoders raise many kinds on hostile data
        raise CorruptImageError(f"{name}: corrupt or truncated {_kind(data)} data ({_why(exc)})") from None
