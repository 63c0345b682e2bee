"""Hostile uploads made on the spot (no large files): shared by tests/serving/test_serve_hostile.py and
benchmarks/serve_load.py --hostile."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def png(mode: str, size: tuple[int, int]) -> bytes:
    """A blank PNG: a few hundred KB at most, whatever its size in pixels."""
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


def tall_thin_png(rows: int = 40_000_000) -> bytes:
    """A 1 px wide PNG of `rows` rows (under the pixel cap): 80 KB, while Pillow's decoder
    keeps a pointer per row (320 MB) and takes seconds."""
    return png("L", (1, rows))


def progressive_bomb(side: int = 13000) -> bytes:
    """A 64 px progressive JPEG whose header claims side x side: libjpeg wants the whole
    coefficient buffer (~side^2 x 3 x 2 bytes) even for a 1/8-scale decode; 4 KB."""
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", progressive=True)
    data = bytearray(buffer.getvalue())
    at = data.index(b"\xff\xc2") + 5  # SOF2: length (2), precision (1), then height, width
    data[at:at + 4] = side.to_bytes(2, "big") * 2
    return bytes(data)


def many_faces(faces_folder: Path, side: int = 2048, tile: int = 48) -> bytes:
    """A JPEG photo of (side / tile)^2 small faces tiled from the JPEGs in `faces_folder`."""
    faces = [np.asarray(Image.open(p).convert("RGB").resize((tile, tile), Image.Resampling.BOX))
             for p in sorted(faces_folder.glob("*.jpg"))[:16]]
    n = side // tile
    rows = [np.hstack([faces[(i * n + j) % len(faces)] for j in range(n)]) for i in range(n)]
    buffer = io.BytesIO()
    Image.fromarray(np.vstack(rows)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
