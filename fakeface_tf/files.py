"""Atomic file writes: a temp file beside the target, flushed to disk, then renamed over it.

A reader, or a run resumed after a kill or a power cut, finds the old file or the new one,
never half of one. The lowest layer of the package: it imports nothing from it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def temp_path(path: str | os.PathLike, suffix: str = "") -> Path:
    """A hidden name beside `path`, unique to this process (`suffix` for savers that check it)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")


def _fsync(path: Path) -> None:
    """Flush a file's data to disk, so the rename never publishes blocks still in memory."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries so the rename itself survives a crash (POSIX only)."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):  # some file systems refuse fsync on a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def replacing(path: str | os.PathLike, suffix: str = ""):
    """Yield a temp path to write `path`'s new content to; on success it is flushed and renamed
    over `path`, on any failure it is removed and `path` is left as it was."""
    path = Path(path)
    tmp = temp_path(path, suffix)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` all at once or not at all."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` all at once or not at all."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def save_model_atomic(model, path: str | os.PathLike) -> Path:
    """`model.save(path)` all at once or not at all (the temp name keeps the `.keras` suffix)."""
    with replacing(path, suffix=Path(path).suffix) as tmp:
        model.save(tmp)
    return Path(path)
