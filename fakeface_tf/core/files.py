"""Files on this machine, or behind a URL on one of Apache Beam's file systems; atomic writes.

Every write goes to a temp file beside the target, is flushed to disk, then renamed over it:
a reader, or a run resumed after a kill or a power cut, finds the old file or the new one,
never half of one.

A path is local unless it is a string with a scheme (`gs://bucket/faces`, `s3://...`,
`hdfs://...`): such a URL is read, listed and written through Beam's `FileSystems`, imported
only then (`fakeface preprocess --runner beam`, whose workers share nothing but cloud
storage). Every helper below is one function for both kinds, so callers have one code path.
The lowest layer of the package: it imports nothing from it but the error type.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

from fakeface_tf.core.errors import FakefaceError

# Beam's own rule for a URL (FileSystems.URI_SCHEMA_PATTERN): a scheme, then "://".
URL = re.compile(r"(?P<scheme>[a-zA-Z][-a-zA-Z0-9+.]*)://")
# The extra of the apache-beam package that brings each of Beam's own cloud file systems.
BEAM_EXTRAS = {"gs": "gcp", "s3": "aws", "azfs": "azure", "hdfs": "hadoop"}


# ------------------------------------------------------------------------ URLs (Beam)


def read_json_object(path: str | os.PathLike) -> dict | None:
    """The JSON object in a local file, or None when it is absent, unreadable or not an object
    (for reports that show what they find and skip what they do not)."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_dataclass(path: str | os.PathLike, cls, what: str):
    """The dataclass `cls` from the JSON object in `path` (keys it does not know ignored), or
    None when there is no file; a file that is not one names itself as not a `what` file."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text())
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values})
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise FakefaceError(f"{path} is not a {what} file: {exc}") from exc


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a local file, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def scheme(path) -> str | None:
    """The scheme of a URL ("gs" for gs://bucket/x); None for a local path (os.PathLike or str)."""
    found = URL.match(path) if isinstance(path, str) else None
    return found["scheme"] if found else None


def location(path) -> Path | str:
    """A local path as a Path with ~ expanded; a URL as it is, without trailing slashes (so
    "gs://b/faces/" and "gs://b/faces" are the same folder in settings and joins)."""
    if not scheme(path):
        return Path(path).expanduser()
    head, sep, rest = path.partition("://")
    return head + sep + rest.rstrip("/")


def _beam(url: str):
    """Beam's FileSystems, once it is known to serve `url`'s scheme; else a FakefaceError
    naming the URL and the schemes that are served."""
    try:
        from apache_beam.io.filesystem import FileSystem
        from apache_beam.io.filesystems import FileSystems
    except ImportError as exc:
        raise FakefaceError(f"{url}: {scheme(url)}:// paths are read and written with Apache "
                            f"Beam's file systems ({exc}); install it with: "
                            "pip install -e '.[beam]'") from None
    known = sorted({fs.scheme() for fs in FileSystem.get_all_subclasses()} - {None})
    if scheme(url) not in known:
        extra = BEAM_EXTRAS.get(scheme(url))
        raise FakefaceError(f"{url}: Apache Beam has no file system for {scheme(url)}:// here "
                            f"(it has {', '.join(f'{s}://' for s in known) or 'none'})"
                            + (f"; install it with: pip install 'apache-beam[{extra}]'"
                               if extra else ""))
    return FileSystems


def _uncompressed():
    from apache_beam.io.filesystem import CompressionTypes

    return CompressionTypes.UNCOMPRESSED  # bytes as stored, whatever the file's extension


def _match(url: str, pattern: str, limit: int | None = None) -> list[str]:
    """The files under folder `url` matching `pattern` (Beam's glob: * stays within a folder,
    ** does not), as URLs. Objects whose names end in "/" (folder markers) are left out."""
    if any(char in url for char in "*?["):
        raise FakefaceError(f"{url}: a folder URL may not hold *, ? or [ (Beam reads them as a "
                            "pattern)")
    fs = _beam(url)
    try:
        (found,) = fs.match([fs.join(url, pattern)], [limit])
    except Exception as exc:  # noqa: BLE001 - Beam's BeamIOError wraps the client's error
        raise FakefaceError(f"{url}: cannot list it ({type(exc).__name__}: {exc})") from None
    return [meta.path for meta in found.metadata_list if not meta.path.endswith("/")]


def _rename(fs, temp: str, url: str) -> None:
    """Rename `temp` over `url`. Where the file system will not rename over a file (HDFS), the
    old file is deleted first: a reader in between finds no file, never half of one."""
    try:
        fs.rename([temp], [url])
    except Exception:  # noqa: BLE001 - Beam wraps each file system's own errors differently
        if not fs.exists(url):
            raise
        fs.delete([url])
        fs.rename([temp], [url])


@contextlib.contextmanager
def _replacing_url(url: str):
    """`replacing` for a URL: the content is written to a local temp file (of the same name, so
    savers that check the suffix are content), uploaded to a temp object beside `url` and
    renamed over it. Object stores show an upload only once it is complete, and the rename (on
    GCS and S3 a server-side copy, then a delete) publishes the whole file at once; a failure
    deletes the temp object. A process killed between upload and rename leaves only a
    `.NAME.HEX.tmp` object, which nothing reads (preprocess clears them on its next run). The
    temp name is random, not per process: workers on different machines share pids."""
    fs = _beam(url)
    head, name = url.rsplit("/", 1)
    with tempfile.TemporaryDirectory(prefix="fakeface-") as folder:
        local = Path(folder) / name
        yield local
        temp = f"{head}/.{name}.{uuid.uuid4().hex}.tmp"
        try:
            with (open(local, "rb") as source,
                  fs.create(temp, compression_type=_uncompressed()) as target):
                shutil.copyfileobj(source, target, 1 << 20)
            _rename(fs, temp, url)
        except BaseException:
            with contextlib.suppress(Exception):
                fs.delete([temp])
            raise


# ------------------------------------------------------------- one helper, either kind


def join(folder, *names: str) -> Path | str:
    """folder/name/...: a Path under a local folder, a URL under a URL."""
    if scheme(folder):
        return _beam(folder).join(folder, *names)
    return Path(folder).joinpath(*names)


def is_file(path) -> bool:
    if scheme(path):
        return _beam(path).exists(path)
    return Path(path).is_file()


def is_dir(path) -> bool:
    """A local folder; for a URL, a folder that holds a file (object stores have no folders,
    only names with slashes in them)."""
    if scheme(path):
        return bool(_match(path, "**", limit=1))
    return Path(path).is_dir()


def walk(folder) -> list:
    """Every file anywhere under `folder`, sorted by path: Paths, or URLs for a URL."""
    if scheme(folder):  # sorted by path component, as Paths sort
        return sorted(_match(folder, "**"), key=lambda url: url.split("/"))
    return sorted(p for p in Path(folder).rglob("*") if p.is_file())


def relative(path, folder) -> str:
    """`path` relative to `folder`, with forward slashes."""
    if scheme(folder):
        prefix = f"{folder}/"
        if not str(path).startswith(prefix):
            raise ValueError(f"{path} is not under {folder}")
        return str(path)[len(prefix):]
    return Path(path).relative_to(folder).as_posix()


def entries(folder) -> list[str]:
    """The names of everything directly in `folder` (files, folders, links, pipes...), sorted;
    [] if there is no such folder. For a URL: the first name of every object under it."""
    if scheme(folder):
        return sorted({relative(url, folder).split("/", 1)[0] for url in _match(folder, "**")})
    return sorted(os.listdir(folder)) if Path(folder).is_dir() else []


def display_name(text: str) -> str:
    """A file name as the manifest and the records write it: UTF-8 text as it is; bytes that are
    not UTF-8 (which Linux allows in names; Python keeps them as surrogate escapes) as \\xNN,
    e.g. b"caf\\xe9.jpg" (Latin-1) -> "caf\\xe9.jpg". The result always encodes as UTF-8."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no file system decode made: show it escaped
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def names(folder) -> list[str]:
    """The names of the files directly in `folder`, sorted ([] if there is no such folder)."""
    if scheme(folder):
        return sorted(relative(url, folder) for url in _match(folder, "*"))
    folder = Path(folder)
    return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def make_dirs(folder) -> None:
    """Create `folder` and its parents if missing (on an object store there is nothing to do)."""
    if scheme(folder):
        fs = _beam(folder)
        if not fs.exists(folder):
            fs.mkdirs(folder)
        return
    Path(folder).mkdir(parents=True, exist_ok=True)


def read_bytes(path) -> bytes:
    """A file's bytes; FileNotFoundError if there is no such file."""
    if not scheme(path):
        return Path(path).read_bytes()
    fs = _beam(path)
    try:
        with fs.open(path, compression_type=_uncompressed()) as f:
            return f.read()
    except Exception:
        if not fs.exists(path):  # each file system says "missing" its own way; say it one way
            raise FileNotFoundError(f"{path}: no such file") from None
        raise


def delete(path) -> None:
    """Delete a file if it exists."""
    if scheme(path):
        fs = _beam(path)
        if fs.exists(path):
            fs.delete([path])
        return
    Path(path).unlink(missing_ok=True)


# ------------------------------------------------------------------------ atomic writes


# The temp names of `temp_path` (.NAME.PID.tmp) and `_replacing_url` (.NAME.HEX.tmp), each
# followed by the saver's suffix if any: what a killed writer can leave beside NAME.
TEMP_NAME = re.compile(r"\.(?P<name>.+)\.[0-9a-f]+\.tmp(?:\.\w+)?")


def temp_path(path: str | os.PathLike, suffix: str = "") -> Path:
    """A hidden name beside `path`, unique to this process (`suffix` for savers that check it)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")


def temp_target(name: str) -> str | None:
    """The file name a temp file named `name` was being written for (`TEMP_NAME`), else None:
    "train-00000-of-00001.tfrecord" for ".train-00000-of-00001.tfrecord.4242.tmp"."""
    found = TEMP_NAME.fullmatch(name)
    return found["name"] if found else None


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
    """Yield a local temp path to write `path`'s new content to; on success it is flushed and
    renamed over `path` (for a URL: uploaded, then renamed, see `_replacing_url`), on any
    failure it is removed and `path` is left as it was."""
    if scheme(path):
        with _replacing_url(path) as tmp:
            yield tmp
        return
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


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path | str:
    """Write `data` to `path` all at once or not at all."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return path if scheme(path) else Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path | str:
    """Write `text` (UTF-8) to `path` all at once or not at all."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def save_model_atomic(model, path: str | os.PathLike) -> Path:
    """`model.save(path)` all at once or not at all (the temp name keeps the `.keras` suffix)."""
    with replacing(path, suffix=Path(path).suffix) as tmp:
        model.save(tmp)
    return Path(path)
