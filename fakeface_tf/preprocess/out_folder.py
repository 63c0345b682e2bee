"""OUT is preprocess's own folder: absent, empty, or holding only what an earlier run wrote.

An earlier run is resumed. Anything else in OUT is refused unless `overwrite`, and even then
kept: preprocess deletes only its own outputs and their temp names (`files.TEMP_NAME`). A
folder is its own only if it holds PARTS_DIR/SETTINGS_FILE, the first file a run writes.
"""

from __future__ import annotations

import json

from fakeface_tf.core import files
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.files import display_name, write_text_atomic
from fakeface_tf.data import records
from fakeface_tf.data.records import SUMMARY_FILE
from fakeface_tf.preprocess.shards import MANIFEST_FILE, PARTS_DIR

SETTINGS_FILE = "settings.json"  # in PARTS_DIR: written first, it marks OUT as preprocess's


def _is_shard(name: str) -> bool:
    """True for a name `records.shard_name` gives."""
    split, _, rest = name.partition("-")
    index, of, total = rest.removesuffix(".tfrecord").partition("-of-")
    return (split in records.SPLITS and name.endswith(".tfrecord") and bool(of)
            and index.isdigit() and total.isdigit() and records.shard_name(
                split, int(index), int(total)) == name)


def _own_output(name: str) -> bool:
    """A name preprocess writes directly in OUT."""
    return name in (MANIFEST_FILE, SUMMARY_FILE) or _is_shard(name)


def _own_part(name: str) -> bool:
    """A name preprocess writes in OUT/PARTS_DIR (".write-test": earlier versions' probe)."""
    return (name in (SETTINGS_FILE, ".write-test")
            or (name.endswith(".csv") and _is_shard(name.removesuffix(".csv"))))


def _out_contents(out) -> tuple[list[str], bool]:
    """(what in OUT preprocess did not write, whether OUT holds an earlier run of it).

    An earlier run is marked by PARTS_DIR/SETTINGS_FILE, the first file a run writes. In a
    marked OUT, preprocess's own names (manifest, summary, shards, parts) are its own; in an
    unmarked one they are someone else's. The temp name of an own name (`files.TEMP_NAME`:
    what a killed write leaves) is its own either way."""
    parts = files.join(out, PARTS_DIR)
    marked = files.is_file(files.join(parts, SETTINGS_FILE))

    def foreign(name: str, own) -> bool:
        target = files.temp_target(name)
        return not (own(target) if target is not None else marked and own(name))

    found = [name for name in files.entries(out)
             if name != PARTS_DIR and foreign(name, _own_output)]
    found += [f"{PARTS_DIR}/{name}" for name in files.entries(parts) if foreign(name, _own_part)]
    return found, marked


def _clear(out, overwrite: bool) -> None:
    """Delete the temp files killed writes left in OUT (never finished, never read) and, with
    `overwrite`, the earlier run's outputs; SETTINGS_FILE stays until the new one replaces it,
    so a run killed in here still refuses to resume on the old settings. Only own names."""
    for folder, own in ((out, _own_output), (files.join(out, PARTS_DIR), _own_part)):
        for name in files.names(folder):  # files only
            target = files.temp_target(name)
            if (own(target) if target is not None
                    else overwrite and own(name) and name != SETTINGS_FILE):
                files.delete(files.join(folder, name))


def _saved_settings(path) -> dict | None:
    """The settings an earlier run saved; None if they cannot be read as JSON."""
    try:
        return json.loads(files.read_bytes(path))
    except ValueError:
        return None


def _check_and_mark(out, settings: dict, overwrite: bool) -> list[str]:
    """`prepare_out` but for turning a failed write into a one-line error."""
    parts = files.join(out, PARTS_DIR)
    saved = files.join(parts, SETTINGS_FILE)
    foreign, marked = _out_contents(out)
    if foreign and not overwrite:
        names = ", ".join(display_name(name) for name in foreign[:3])
        raise FakefaceError(
            f"{out} holds {len(foreign)} file(s) preprocess did not write ({names}"
            f"{', ...' if len(foreign) > 3 else ''}); give an empty or new OUT folder, or add "
            "--overwrite to write beside them (they are kept)")
    if marked and not overwrite and _saved_settings(saved) != settings:
        raise FakefaceError(f"{out} holds shards made with other settings ({saved}); use a "
                            "new OUT folder, or add --overwrite to replace them")
    _clear(out, overwrite and marked)
    files.make_dirs(parts)
    write_text_atomic(saved, json.dumps(settings, indent=2, sort_keys=True))  # also the probe
    return foreign


def prepare_out(out, settings: dict, overwrite: bool = False) -> list[str]:
    """Check OUT is preprocess's own (`_out_contents`) or `overwrite` is given, refuse to mix
    runs with other settings, clear temp files (and with `overwrite` the earlier outputs),
    then mark OUT with the settings (clear error if OUT cannot be written). Returns what in OUT
    preprocess did not write."""
    try:  # an unknown URL scheme is a FakefaceError (files.join), passed on as it is
        return _check_and_mark(out, settings, overwrite)
    except FakefaceError:
        raise
    except Exception as exc:  # OSError; for a URL also the cloud client's own errors
        if not (isinstance(exc, OSError) or files.scheme(out)):
            raise
        raise FakefaceError(f"cannot write to OUT {out}: "
                            f"{getattr(exc, 'strerror', None) or exc}") from None


def foreign_records_warnings(foreign: list[str]) -> list[str]:
    """A warning when OUT holds .tfrecord files of someone else's: readers of OUT read every
    *.tfrecord in it (records.shard_files)."""
    found = [display_name(name) for name in foreign if name.endswith(".tfrecord")
             and files.temp_target(name) is None and "/" not in name]
    if not found:
        return []
    return [f"OUT also holds {len(found)} .tfrecord file(s) preprocess did not write "
            f"({', '.join(found[:3])}{', ...' if len(found) > 3 else ''}); "
            "readers of OUT read them too"]
