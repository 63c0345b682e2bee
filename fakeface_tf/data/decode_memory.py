"""What decoding an image will hold in memory, worked out from its header before any pixel.

`images.load_image` refuses a file whose decode would cost more than its budget. The cost
(`decode_cost`) counts the mode's bytes per pixel and its copies, a pointer per row, Pillow's
resize, and what the decoder buffers besides the image (`layout`): PNG's row buffers, TIFF
tile and strip buffers, a progressive JPEG's whole-frame coefficients, WebP's canvases.
Estimates were within 1-16 % of measured peaks on 27 format/mode cases (tests/data/test_hostile_decode.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from PIL import Image

from fakeface_tf.data.image_errors import ImageTooLargeError

# Scans a JPEG may have: libjpeg makes a pass over the whole frame for each (a progressive
# JPEG has about 10). More is refused: 300 repeated scans of a small file cost 12 s of CPU.
MAX_JPEG_SCANS = 100
ROW_POINTER_BYTES = 8  # Pillow keeps one pointer per row of every image, however narrow
DECODE_OVERHEAD = 4 * 2**20  # Python's and the decoders' own working memory, measured


@dataclass
class Layout:
    """What a header says the decoder will hold besides the image itself (`layout`)."""

    held_bytes: int = 0  # until the image is dropped: WebP's canvases
    buffer_bytes: int = 0  # while decoding only: PNG's row and the one before it, a TIFF tile
    # or strip, the coefficients of a progressive or multi-scan JPEG's whole frame
    scans: int = 1  # JPEG scans
    what: str = ""  # the largest of these, for messages


def _storage(mode: str) -> int:
    """Bytes per pixel Pillow stores `mode` in."""
    return 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4


def _full_size_modes(mode: str, transparent: bool) -> list[str]:
    """The full-size images alive at once between decoding and the shrink, as
    `images._eight_bit` and Pillow's resize make them: the decoded one, its 8-bit conversion,
    and the premultiplied copy Pillow resizes an image with alpha in."""
    if mode.startswith("I;16") or mode == "I":
        return [mode, mode, "L"]  # point() keeps the mode, then convert("L")
    if mode == "F":
        return ["F", "L"]
    if mode in ("RGBA", "LA"):
        return [mode, mode[:-1] + "a"]
    if mode == "PA" or (mode == "P" and transparent):
        return [mode, "RGBA", "RGBa"]
    if mode in ("L", "RGB"):
        return [mode]
    return [mode, "RGB"]


def _resize_bytes(size: tuple[int, int], mode: str, side: int) -> int:
    """Bytes of what Pillow's BOX resize makes shrinking an image of `mode` to `side`: reduce()
    first (reducing_gap=2, which Pillow drops for the premultiplied copy of an image with
    alpha), a row of filter weights per output pixel spanning its input, the horizontal pass
    over all rows, and the result."""
    width, height = size
    scale = side / max(width, height)
    if scale >= 1.0:
        return 0
    bpp = _storage(mode)
    out_w, out_h = (max(1, round(v * scale)) for v in size)
    total = out_w * out_h * bpp + out_h * ROW_POINTER_BYTES
    if mode not in ("RGBa", "La"):
        factor_x, factor_y = max(1, int(width / out_w / 2.0)), max(1, int(height / out_h / 2.0))
        if factor_x > 1 or factor_y > 1:
            width, height = -(-width // factor_x), -(-height // factor_y)
            total += (width * bpp + ROW_POINTER_BYTES) * height
    for source, out in ((width, out_w), (height, out_h)):
        if source != out:
            total += out * (2 * math.ceil(0.5 * source / out) + 1) * 8
    if out_w != width:
        total += (out_w * bpp + ROW_POINTER_BYTES) * height
    return total


def decode_cost(mode: str, size: tuple[int, int], layout: Layout, transparent: bool = False, *,
                side: int) -> int:
    """Bytes `load_image` holds at its peak for an image of this mode and size (a JPEG's after
    its draft) whose decoder holds `layout`, from its header alone: the largest of decoding
    (the decoder's buffers and the image, a pointer per row), the full-size copies and
    Pillow's resize down to `side` (images.WORK_SIDE), and the small images after it."""
    width, height = size
    modes = _full_size_modes(mode, transparent)
    decoded = (width * _storage(mode) + ROW_POINTER_BYTES) * height
    decoding = layout.held_bytes + layout.buffer_bytes + decoded
    copies = sum((width * _storage(m) + ROW_POINTER_BYTES) * height for m in modes)
    shrinking = layout.held_bytes + copies + _resize_bytes(size, modes[-1], side)
    # After the shrink: the image; with alpha, its RGBA copy and that composited onto white;
    # the RGB image, and its bytes twice on the way into the array.
    scale = min(1.0, side / max(width, height))
    final = modes[-1].replace("a", "A")
    per_pixel = _storage(final) + 4 + 2 * 3 + (8 if final in ("RGBA", "LA") else 0)
    finishing = layout.held_bytes + per_pixel * math.ceil(width * scale) * math.ceil(height * scale)
    return DECODE_OVERHEAD + max(decoding, shrinking, finishing)


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}
# The next marker: 0xFF then anything but stuffing (00), a fill byte (FF) or a restart (D0-D7).
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
MAX_JPEG_MARKERS = 10 * MAX_JPEG_SCANS  # segments walked; a real JPEG has a few dozen


def _jpeg_frame(data: bytes, name: str) -> tuple[tuple | None, int | None, int]:
    """(frame, components of the first scan, scans) of the first image, from its markers;
    frame is (SOF marker, width, height, [(h, v) sampling per component]) or None."""
    pos, frame, first_scan, scans = 2, None, None, 0
    for _ in range(MAX_JPEG_MARKERS):
        found = _NEXT_MARKER.search(data, pos)
        if found is None or found.end() + 2 > len(data):
            break
        marker = data[found.end() - 1]
        if marker in (0x01, 0xD8):  # no segment follows
            pos = found.end()
            continue
        if marker == 0xD9:  # EOI: later images of an MPO are not decoded
            break
        length = int.from_bytes(data[found.end():found.end() + 2], "big")
        segment = data[found.end() + 2:found.end() + length]
        pos = found.end() + max(length, 2)
        if marker in _SOF and frame is None and len(segment) >= 6:
            sampling = [(b >> 4, b & 15) for b in segment[7:6 + 3 * segment[5]:3]]
            frame = (marker, int.from_bytes(segment[3:5], "big"), int.from_bytes(segment[1:3], "big"),
                     sampling)
        elif marker == 0xDA:
            scans += 1
            if first_scan is None and segment:
                first_scan = segment[0]
    else:
        raise ImageTooLargeError(f"{name}: the JPEG has more than {MAX_JPEG_MARKERS} markers")
    return frame, first_scan, scans


def _jpeg_layout(data: bytes, name: str) -> Layout:
    """The first image's frame and scans, read from its markers: libjpeg keeps every
    coefficient of the whole frame (2 bytes each) when the JPEG is progressive or its first
    scan holds only some components, whatever the DCT scale it outputs at."""
    frame, first_scan, scans = _jpeg_frame(data, name)
    if frame is None or not frame[3] or not any(h * v for h, v in frame[3]):
        return Layout(scans=scans)
    marker, width, height, sampling = frame
    if marker not in _PROGRESSIVE and (first_scan or len(sampling)) >= len(sampling):
        return Layout(scans=scans)  # one interleaved scan: decoded an MCU row at a time
    h_max, v_max = max(h for h, _ in sampling), max(v for _, v in sampling)
    mcu_w, mcu_h = -(-width // (8 * h_max)), -(-height // (8 * v_max))
    size = 128 * sum(mcu_w * h * mcu_h * v for h, v in sampling)
    kind = "progressive" if marker in _PROGRESSIVE else "multi-scan"
    return Layout(buffer_bytes=size, scans=scans, what=f"{size / 2**20:.0f} MB of {kind} JPEG "
                  f"coefficients for the whole {width}x{height} frame, whatever the scale it is read at")


def _tiff_layout(img: Image.Image, data: bytes) -> Layout:
    """libtiff decodes a compressed TIFF a whole tile or strip at a time into a buffer of its
    own (4 bytes a pixel through its RGBA interface for YCbCr or JPEG data), and Pillow hands
    it a copy of the file; a tile may be far larger than the image it belongs to."""
    tags = img.tag_v2
    if tags.get(259, 1) == 1:  # uncompressed: Pillow's own decoder, row by row into the image
        return Layout()
    bits = tags.get(258, (8,))
    bits = max(bits) if isinstance(bits, tuple) else bits
    pixel = int(tags.get(277, 1)) * max(1, -(-int(bits) // 8))
    if tags.get(262) == 6 or tags.get(259) in (6, 7):
        pixel = max(pixel, 4)
    width, height = img.size
    if 322 in tags:
        tile = (int(tags[322]), int(tags.get(323, 0)))
        kind = "tile"
    else:
        tile = (width, min(int(tags.get(278, height)), height))
        kind = "strip"
    size = tile[0] * tile[1] * pixel
    return Layout(buffer_bytes=size + len(data),
                  what=f"a {tile[0]}x{tile[1]} TIFF {kind} of {size / 2**20:.0f} MB")


def layout(img: Image.Image, data: bytes, name: str = "image bytes") -> Layout:
    """What decoding `img` (opened from `data`) buffers besides its pixels, from the header."""
    if img.format in ("JPEG", "MPO"):
        return _jpeg_layout(data, name)
    if img.format == "PNG" and data[12:16] == b"IHDR":
        width, depth, color = int.from_bytes(data[16:20], "big"), data[24], data[25]
        channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color, 4)
        row = 1 + -(-width * channels * depth // 8)
        return Layout(buffer_bytes=2 * row, what=f"two PNG rows of {row / 2**20:.0f} MB each")
    if img.format == "TIFF":
        return _tiff_layout(img, data)
    if img.format == "WEBP":  # libwebp's canvas and previous canvas, and the frame as bytes
        size = 12 * img.size[0] * img.size[1] + len(data)
        return Layout(held_bytes=size, what=f"{size / 2**20:.0f} MB of WebP frame buffers")
    return Layout()
