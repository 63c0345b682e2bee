"""What preprocess reads: every entry under SRC's class folders, as an `Item` to cut or a row.

SRC is the 140k layout (`{train,valid,test}/{real,fake}/`, optionally inside `real-vs-fake/`)
or a folder with `real/` and `fake/`, split by a seeded hash of each file's relative path (the
same file always lands in the same split). Every other entry (another extension, a hidden
file, a FIFO, socket or device, a dangling link, a link to a folder, a folder named like an
image) is a `skipped` row saying what it is. Nothing but a regular file is ever opened (a FIFO
would block). A path is written as `files.display_name` writes it: bytes of a name that are
not UTF-8 as \\xNN; the hash split reads that same text.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from fakeface_tf.core import files
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.files import display_name
from fakeface_tf.data.images import is_image_file

SPLIT_ALIASES = {"train": "train", "valid": "valid", "validation": "valid", "val": "valid",
                 "test": "test"}
IMAGE_NAMED_FOLDER = ("skipped", "a folder, not an image file (its contents are listed)")


@dataclass
class Item:
    """One input file: its path (or URL), path relative to SRC, label name and split."""

    path: str
    rel: str
    label: str
    split: str


def _what_it_is(entry: os.DirEntry) -> tuple[str, str] | None:
    """None for a regular file (or a link to one) that can be read; else (status, reason).
    Only stat()ed, never opened."""
    try:
        mode = os.stat(entry.path).st_mode  # follows a link; a FIFO is not opened
    except FileNotFoundError:
        return ("skipped", "a link to nothing (dangling symlink)" if entry.is_symlink()
                else "gone while SRC was listed")
    except OSError as exc:  # a link loop, a name too long...
        return "skipped", f"cannot be followed ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return "skipped", "a link to a folder (not followed)"  # real folders are walked
    if stat.S_ISREG(mode):
        if not os.access(entry.path, os.R_OK):
            return "unreadable", "permission denied"
        return None
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a special file")
    return "skipped", f"{kind}, not a regular file"


def _list_url(folder: str) -> list[tuple]:
    """`list_entries` for a URL: its objects, which are all files, and the "folders" named
    like images in their names."""
    found: list[tuple] = []
    folders = set()
    for url in files.walk(folder):
        found.append((url, None, None))
        parts = files.relative(url, folder).split("/")[:-1]
        folders.update("/".join(parts[:n + 1]) for n, part in enumerate(parts)
                       if is_image_file(part))
    found += [(files.join(folder, *rel.split("/")), *IMAGE_NAMED_FOLDER) for rel in folders]
    return sorted(found, key=lambda entry: entry[0].split("/"))


def list_entries(folder) -> list[tuple]:
    """Every entry under `folder`, sorted by path, as (path, status, reason): status None for a
    regular file to read, else what `_what_it_is` says. Folders are walked, but links to folders
    are not (no loop can trap the walk); a folder named like an image is an entry of its own.
    For a URL: its objects, which are all files, and the "folders" in their names."""
    if files.scheme(folder):
        return _list_url(folder)
    found: list[tuple] = []
    stack = [Path(folder)]
    while stack:  # a stack, not recursion: any depth of folders
        current = stack.pop()
        try:
            with os.scandir(current) as listing:
                children = list(listing)
        except OSError as exc:
            found.append((current, "unreadable", f"a folder that cannot be listed "
                                                  f"({exc.strerror or exc})"))
            continue
        for entry in children:
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                stack.append(path)
                if is_image_file(entry.name):
                    found.append((path, *IMAGE_NAMED_FOLDER))
                continue
            found.append((path, *(_what_it_is(entry) or (None, None))))
    return sorted(found, key=lambda entry: entry[0])


def class_files(folder, root, label: str, split: str | None, skipped: list[dict]) -> list[Item]:
    """The image files under one class folder; a row for every other entry is appended to
    `skipped` (`list_entries`: other extensions, hidden files, FIFOs, dangling links...)."""
    items = []
    for path, status, reason in list_entries(folder):
        rel = display_name(files.relative(path, root))
        name = Path(str(path)).name
        if status is None and name.startswith("."):
            status, reason = "skipped", "a hidden file (its name starts with '.')"
        elif status is None and not is_image_file(name):
            status = "skipped"
            reason = f"not an image file extension ({display_name(Path(name).suffix) or 'none'})"
        if status is None:
            items.append(Item(str(path), rel, label, split or ""))
        else:
            skipped.append({"path": rel, "split": split or "", "label": label, "status": status,
                            "reason": display_name(reason)})
    return items


def _name_bytes(text: str) -> bytes:
    """A name as bytes for hashing: os.fsencode's UTF-8 (surrogate escapes back to their bytes)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def hash_split(rel: str, seed: int, fractions: tuple[float, float, float]) -> str:
    """train/valid/test for a relative path, from a seeded SHA-256 of its UTF-8 bytes (any
    name: surrogate escapes hash as the bytes they stand for): stable across runs."""
    digest = hashlib.sha256(f"{seed}:".encode() + _name_bytes(rel)).hexdigest()
    u = int(digest[:16], 16) / 16**16
    if u < fractions[0]:
        return "train"
    return "valid" if u < fractions[0] + fractions[1] else "test"


def find_items(src: str | os.PathLike, seed: int = 0,
               split: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> tuple[list[Item], list[dict], str]:
    """Every image under SRC (a folder, or a URL: files.py) with its label and split;
    non-image files; the layout found."""
    root = files.location(src)
    is_dir, join = files.is_dir, files.join
    if not is_dir(root):
        raise FakefaceError(f"SRC not found or not a folder: {root}")
    if is_dir(join(root, "real-vs-fake")):
        root = join(root, "real-vs-fake")
    skipped: list[dict] = []
    split_dirs = {SPLIT_ALIASES[name]: join(root, name) for name in sorted(SPLIT_ALIASES)
                  if any(is_dir(join(root, name, label)) for label in ("real", "fake"))}
    if split_dirs:
        items = [item for name, folder in split_dirs.items() for label in ("real", "fake")
                 if is_dir(join(folder, label))
                 for item in class_files(join(folder, label), root, label, name, skipped)]
        return items, skipped, "split folders"
    if not any(is_dir(join(root, label)) for label in ("real", "fake")):
        raise FakefaceError(f"{root} holds neither {{train,valid,test}}/{{real,fake}}/ nor "
                            "real/ and fake/ folders")
    items = [item for label in ("real", "fake") if is_dir(join(root, label))
             for item in class_files(join(root, label), root, label, None, skipped)]
    for item in items:
        item.split = hash_split(item.rel, seed, split)
    return items, skipped, "real/fake folders, hash split"


def limit_items(items: list[Item], limit: int, seed: int = 0) -> list[Item]:
    """At most `limit` items per (split, label), chosen by a seeded hash: stable and unbiased."""
    def key(item: Item) -> str:
        return hashlib.sha256(f"limit:{seed}:".encode() + _name_bytes(item.rel)).hexdigest()

    kept: dict[tuple[str, str], list[Item]] = {}
    for item in sorted(items, key=key):
        group = kept.setdefault((item.split, item.label), [])
        if len(group) < limit:
            group.append(item)
    chosen = {item.rel for group in kept.values() for item in group}
    return [item for item in items if item.rel in chosen]
