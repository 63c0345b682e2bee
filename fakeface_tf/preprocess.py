"""`fakeface preprocess SRC OUT`: every image in SRC -> levelled face crop -> sharded TFRecords.

The work is planned up front and deterministically (sorted files -> split -> chunks of
`shard_size`), so each shard is an independent task for a process pool and a re-run can
skip what is done. A shard counts as done only when its `.tfrecord` and its manifest part
both exist under their final names; both are written to a temp name and renamed, so a
killed run never leaves a half-written shard behind that looks finished. Pool workers die
with the process that started them, so a killed run leaves nothing writing behind it.

SRC is the 140k layout (`{train,valid,test}/{real,fake}/`, optionally inside
`real-vs-fake/`) or a folder with `real/` and `fake/`, split by a seeded hash of each
file's relative path (the same file always lands in the same split).

manifest.csv has one row for every entry under the class folders: each image file with its
face or the reason it has none, and every other entry (another extension, a hidden file, a
FIFO, socket or device, a dangling link, a link to a folder, a folder named like an image)
as `skipped` with what it is. Nothing but a regular file is ever opened (a FIFO would block).
A path is written as `files.display_name` writes it, in the manifest and in the records
alike: bytes of a name that are not UTF-8 as \\xNN; the hash split reads that same text.

OUT is preprocess's own folder: absent, empty, or holding only what an earlier run wrote
(then it is resumed). Anything else in it is refused unless `overwrite`, and even then kept:
preprocess deletes only its own outputs and their temp names (`files.TEMP_NAME`).

With `--runner beam`, SRC and OUT may also be URLs of Beam's file systems (gs://, s3://,
hdfs://...): listing, reading and every write go through the helpers of files.py, which call
Beam's FileSystems for a URL and the local file system otherwise, so both take this same code.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import hashlib
import io
import json
import multiprocessing as mp
import os
import platform
import queue
import signal
import stat
import sys
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from tqdm.auto import tqdm

from fakeface_tf import __version__, files
from fakeface_tf.errors import FakefaceError
from fakeface_tf.faces import STATUSES, FaceOptions, check_options
from fakeface_tf.files import display_name, write_text_atomic
from fakeface_tf.images import is_image_file
from fakeface_tf.text import short

MAX_SHARD_SIZE = 256  # 4 MB of 128x128 gray crops; small enough to resume cheaply
CROP_BATCH = 16  # images per MTCNN call; the Beam runner cuts the same batches (beam.py)
TARGET_SHARDS = 64  # the automatic shard size aims at this many shards (work for every core)
SPLIT_ALIASES = {"train": "train", "valid": "valid", "validation": "valid", "val": "valid",
                 "test": "test"}
MANIFEST_FIELDS = ["path", "split", "label", "status", "reason", "shard",
                   "x", "y", "w", "h", "angle", "confidence"]
PARTS_DIR = ".parts"  # per-shard manifest parts and the settings of the run
SETTINGS_FILE = "settings.json"  # in PARTS_DIR: written first, it marks OUT as preprocess's
MANIFEST_FILE = "manifest.csv"
SUMMARY_FILE = "preprocess.json"
IMBALANCE_RATIO = 0.8  # warn when the smaller class is under 80% of the larger
RUNNERS = ("local", "beam")  # local: this machine's process pool; beam: fakeface_tf/beam.py


@dataclass
class Item:
    """One input file: its path (or URL), path relative to SRC, label name and split."""

    path: str
    rel: str
    label: str
    split: str


# ---------------------------------------------------------------------------- planning


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


IMAGE_NAMED_FOLDER = ("skipped", "a folder, not an image file (its contents are listed)")


def list_entries(folder) -> list[tuple]:
    """Every entry under `folder`, sorted by path, as (path, status, reason): status None for a
    regular file to read, else what `_what_it_is` says. Folders are walked, but links to folders
    are not (no loop can trap the walk); a folder named like an image is an entry of its own.
    For a URL: its objects, which are all files, and the "folders" in their names."""
    found: list[tuple] = []
    if files.scheme(folder):
        folders = set()
        for url in files.walk(folder):
            found.append((url, None, None))
            parts = files.relative(url, folder).split("/")[:-1]
            folders.update("/".join(parts[:n + 1]) for n, part in enumerate(parts)
                           if is_image_file(part))
        found += [(files.join(folder, *rel.split("/")), *IMAGE_NAMED_FOLDER) for rel in folders]
        return sorted(found, key=lambda entry: entry[0].split("/"))
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


def auto_shard_size(n_items: int) -> int:
    """Images per shard when not given: ~TARGET_SHARDS shards, 16..MAX_SHARD_SIZE images each.

    It depends only on the file count, so a re-run of the same SRC plans the same shards.
    """
    return min(MAX_SHARD_SIZE, max(16, -(-n_items // TARGET_SHARDS)))


def plan_shards(items: list[Item], shard_size: int) -> list[tuple[str, list[Item]]]:
    """(shard file name, items) for every shard: per split, sorted by path, in chunks."""
    from fakeface_tf import records

    plan = []
    for split in records.SPLITS:
        chosen = sorted((i for i in items if i.split == split), key=lambda i: i.rel)
        chunks = [chosen[k:k + shard_size] for k in range(0, len(chosen), shard_size)]
        plan.extend((records.shard_name(split, n, len(chunks)), chunk) for n, chunk in enumerate(chunks))
    return plan


# ----------------------------------------------------------------------------- workers

_progress: "mp.Queue | None" = None
_parent_pid: int | None = None  # set in pool workers only
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this worker when the process that started it dies (even
    by SIGKILL), so no orphan goes on writing shards beside a rerun. Elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))


def _exit_if_orphaned() -> None:
    """End a pool worker whose parent has gone (it died before prctl took hold, or not Linux)."""
    if _parent_pid is not None and os.getppid() != _parent_pid:
        os._exit(1)


def _init_worker(progress_queue, threads: int) -> None:
    """Each pool process: die with the parent, quiet TF, share the CPUs fairly, report
    progress to the parent."""
    global _progress, _parent_pid
    _parent_pid = mp.parent_process().pid  # the spawning process, as for prctl
    _die_with_parent()
    _exit_if_orphaned()
    _progress = progress_queue
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import cv2
    import tensorflow as tf

    cv2.setNumThreads(1)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _manifest_row(item: Item, crop, shard: str) -> dict:
    """One image's row; its reason may quote the file's path, so it is written as its name is
    (`display_name`): rows always encode as UTF-8, in the CSV and through Beam's coders."""
    x, y, w, h = crop.box
    return {"path": item.rel, "split": item.split, "label": item.label, "status": crop.status,
            "reason": display_name(crop.reason), "shard": shard if crop.ok else "",
            "x": round(x, 2), "y": round(y, 2), "w": round(w, 2), "h": round(h, 2),
            "angle": round(crop.angle, 3), "confidence": round(crop.confidence, 4)}


def _csv_text(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=MANIFEST_FIELDS, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def shard_outputs(items: list[Item], crops: list, name: str) -> tuple[list[bytes], list[dict]]:
    """The serialized examples (faces only) and manifest rows (every file) of shard `name`."""
    from fakeface_tf import records

    examples = [records.serialize(c.image, records.LABELS[i.label], path=i.rel, split=i.split,
                                  box=c.box, angle=c.angle)
                for i, c in zip(items, crops) if c.ok]
    return examples, [_manifest_row(i, c, name) for i, c in zip(items, crops)]


def write_shard(out, name: str, examples: list[bytes], rows: list[dict]) -> str:
    """Write a shard's TFRecord, then its manifest part, each atomically (files.replacing: a
    temp name renamed over the final one; for a URL, written locally, uploaded to a temp
    object and renamed), so the shard counts as done only once both are whole; returns its
    name."""
    from fakeface_tf import records

    records.write(files.join(out, name), examples)
    write_text_atomic(files.join(out, PARTS_DIR, f"{name}.csv"), _csv_text(rows))
    return name


def run_shard(task: tuple[str, list[Item], str, FaceOptions], on_batch=None) -> str:
    """Crop one shard's images, write its TFRecord then its manifest part; returns its name."""
    from fakeface_tf.faces import crop_files

    name, items, out, options = task
    report = on_batch or (_progress.put if _progress is not None else None)
    crops = crop_files([i.path for i in items], options, batch_size=CROP_BATCH, progress=False,
                       on_batch=report)
    examples, rows = shard_outputs(items, crops, name)
    _exit_if_orphaned()
    return write_shard(out, name, examples, rows)


def _done_shards(out) -> set[str]:
    """The shards in OUT whose TFRecord and manifest part both exist: one listing of OUT and
    one of its parts (a file check per shard would be a request each on cloud storage)."""
    parts = {name.removesuffix(".csv") for name in files.names(files.join(out, PARTS_DIR))}
    return {name for name in files.names(out) if name in parts}


def _run_pool(tasks: list, workers: int, bar) -> None:
    """Run shard tasks in `workers` spawned processes, feeding the progress bar."""
    ctx = mp.get_context("spawn")
    progress_queue = ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ctx.Pool(workers, initializer=_init_worker, initargs=(progress_queue, threads)) as pool:
        result = pool.map_async(run_shard, tasks, chunksize=1)
        while not result.ready():
            try:
                bar.update(progress_queue.get(timeout=0.2))
            except queue.Empty:
                pass
        result.get()  # re-raises a worker's exception (and the pool is terminated)
        pool.close()
        pool.join()  # workers exit cleanly, flushing their last progress messages
    while not progress_queue.empty():
        bar.update(progress_queue.get())
    progress_queue.close()
    progress_queue.join_thread()


# ----------------------------------------------------------------------------- summary


def _versions() -> dict:
    packages = ("tensorflow", "tensorflow-cpu", "keras", "mtcnn", "opencv-python-headless",
                "pillow", "numpy", "apache-beam")
    found = {"fakeface_tf": __version__, "python": platform.python_version()}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _counts(rows: list[dict]) -> dict:
    """{split: {label: {status: n}}} over manifest rows."""
    counts: dict = {}
    for row in rows:
        by_status = counts.setdefault(row["split"] or "none", {}).setdefault(row["label"], {})
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
    return counts


def _balance_warnings(counts: dict) -> list[str]:
    warnings = []
    for split, by_label in counts.items():
        ok = {label: by_label.get(label, {}).get("ok", 0) for label in ("real", "fake")}
        small, large = min(ok.values()), max(ok.values())
        if large and small < IMBALANCE_RATIO * large:
            warnings.append(f"{split} is imbalanced: {ok['real']} real vs {ok['fake']} fake faces")
    return warnings


def _read_parts(out, names: list[str]) -> list[dict]:
    rows = []
    for name in names:
        text = files.read_bytes(files.join(out, PARTS_DIR, f"{name}.csv")).decode("utf-8")
        rows.extend(csv.DictReader(io.StringIO(text, newline="")))
    return rows


def _is_shard(name: str) -> bool:
    """True for a name `records.shard_name` gives."""
    from fakeface_tf import records

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


def _prepare_out(out, settings: dict, overwrite: bool = False) -> list[str]:
    """Check OUT is preprocess's own (`_out_contents`) or `overwrite` is given, refuse to mix
    runs with other settings, clear temp files (and with `overwrite` the earlier outputs),
    then mark OUT with the settings (clear error if OUT cannot be written). Returns what in OUT
    preprocess did not write."""
    parts = files.join(out, PARTS_DIR)  # an unknown URL scheme is a FakefaceError here
    saved = files.join(parts, SETTINGS_FILE)
    try:
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
    except FakefaceError:
        raise
    except Exception as exc:  # OSError; for a URL also the cloud client's own errors
        if not (isinstance(exc, OSError) or files.scheme(out)):
            raise
        raise FakefaceError(f"cannot write to OUT {out}: "
                            f"{getattr(exc, 'strerror', None) or exc}") from None
    return foreign


def _saved_settings(path) -> dict | None:
    """The settings an earlier run saved; None if they cannot be read as JSON."""
    try:
        return json.loads(files.read_bytes(path))
    except ValueError:
        return None


def parse_split(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(v) for v in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1.0) > 1e-6:
        raise FakefaceError("--split expects three fractions summing to 1, e.g. 0.8,0.1,0.1; "
                            f"got {short(text)}")
    return parts


def preprocess(src, out, options: FaceOptions = FaceOptions(), workers: int | None = None,
               shard_size: int | None = None, seed: int = 0,
               split: tuple[float, float, float] = (0.8, 0.1, 0.1), progress: bool = True,
               limit: int | None = None, runner: str = "local", pipeline_args=(),
               overwrite: bool = False) -> dict:
    """Crop every face in SRC into OUT's shards, manifest.csv and preprocess.json.

    `limit` keeps at most that many files per split and class (a seeded hash picks them),
    for quick trials and the notebooks' fast mode. `runner` "beam" cuts and writes the same
    shards on Apache Beam (fakeface_tf/beam.py), configured by `pipeline_args`.

    SRC and OUT are folders, or with runner "beam" also URLs of Beam's file systems
    (gs://..., files.py). Resumable: shards already finished in OUT are kept. An OUT holding
    files preprocess did not write is refused unless `overwrite`, which keeps those files and
    redoes every shard (`_prepare_out`). `shard_size` None picks `auto_shard_size`. Returns
    the preprocess.json dict.
    """
    start = time.time()
    check_options(options)
    if runner not in RUNNERS:
        raise FakefaceError(f"--runner must be one of {', '.join(RUNNERS)}, got {runner!r}")
    for path in (src, out):
        if files.scheme(path) and runner != "beam":
            raise FakefaceError(f"{path}: SRC and OUT URLs ({files.scheme(path)}://...) are read "
                                "and written by the Beam runner only; add --runner beam")
    if display_name(str(out)) != str(out):  # TensorFlow opens record files by UTF-8 path only
        raise FakefaceError(f"OUT {display_name(str(out))}: name a folder whose path is UTF-8 "
                            "text (TensorFlow cannot write records to this one)")
    if runner == "beam":
        from fakeface_tf import beam  # imports apache_beam (only here); says how to install it
    items, skipped, layout = find_items(src, seed, split)
    if limit:
        items = limit_items(items, limit, seed)
    shard_size = shard_size or auto_shard_size(len(items))
    if shard_size < 1:
        raise FakefaceError(f"--shard-size must be >= 1, got {shard_size}")
    out = files.location(out)
    src = files.location(src)
    settings = {"src": src if files.scheme(src) else str(src.resolve()), "layout": layout,
                "limit": limit, "face": asdict(options), "shard_size": shard_size, "seed": seed,
                "split": list(split) if layout.endswith("hash split") else "from folders"}
    foreign = _prepare_out(out, settings, overwrite)
    plan = plan_shards(items, shard_size)
    done = _done_shards(out)
    todo = [(name, chunk, str(out), options) for name, chunk in plan if name not in done]
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    bar = tqdm(total=len(items), desc="preprocess", unit="img", disable=not progress)
    bar.update(len(items) - sum(len(t[1]) for t in todo))
    if runner == "beam":
        stages = beam.run_shards(todo, pipeline_args)
        bar.update(sum(len(t[1]) for t in todo))
        workers = None  # the Beam runner decides
    elif workers == 1:
        for task in todo:
            run_shard(task, on_batch=bar.update)
    elif todo:
        _run_pool(todo, workers, bar)
    bar.close()

    rows = _read_parts(out, [name for name, _ in plan]) + skipped
    write_text_atomic(files.join(out, MANIFEST_FILE), _csv_text(rows))
    counts = _counts(rows)
    statuses = {s: sum(1 for r in rows if r["status"] == s) for s in (*STATUSES, "skipped")}
    summary = {
        "settings": settings,
        "files": len(rows),
        "status": {k: v for k, v in statuses.items() if v},
        "records": {s: sum(by.get("ok", 0) for by in counts.get(s, {}).values())
                    for s in ("train", "valid", "test")},
        "counts": counts,
        "warnings": _balance_warnings({s: c for s, c in counts.items() if s != "none"})
        + _foreign_records_warnings(foreign),
        "shards": [name for name, _ in plan],
        "shards_reused": len(plan) - len(todo),
        "runner": runner,
        "workers": workers,
        **({"beam_stages": stages} if runner == "beam" else {}),
        "versions": _versions(),
        "seconds": round(time.time() - start, 2),
    }
    write_text_atomic(files.join(out, SUMMARY_FILE), json.dumps(summary, indent=2))
    return summary


def _foreign_records_warnings(foreign: list[str]) -> list[str]:
    """A warning when OUT holds .tfrecord files of someone else's: readers of OUT read every
    *.tfrecord in it (records.shard_files)."""
    found = [display_name(name) for name in foreign if name.endswith(".tfrecord")
             and files.temp_target(name) is None and "/" not in name]
    if not found:
        return []
    return [f"OUT also holds {len(found)} .tfrecord file(s) preprocess did not write "
            f"({', '.join(found[:3])}{', ...' if len(found) > 3 else ''}); "
            "readers of OUT read them too"]


def format_summary(summary: dict, out) -> str:
    """The lines printed at the end of `fakeface preprocess`."""
    records = summary["records"]
    lines = [
        f"preprocess: {summary['files']} files -> {sum(records.values())} faces in "
        f"{len(summary['shards'])} shards ({summary['shards_reused']} reused) in {summary['seconds']:.1f} s",
        "  records: " + ", ".join(f"{s} {n}" for s, n in records.items()),
        "  status: " + ", ".join(f"{s} {n}" for s, n in summary["status"].items()),
    ]
    lines += [f"  warning: {w}" for w in summary["warnings"]]
    manifest = display_name(str(files.join(out, MANIFEST_FILE)))  # stdout takes UTF-8 only
    lines.append(f"  manifest: {manifest} (one row per file, with the reason "
                 "for every file without a face)")
    return "\n".join(lines)


# --------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="image folder: {train,valid,test}/{real,fake}/ or real/ + fake/ "
                                    "(with --runner beam also a URL: gs://bucket/faces)")
    parser.add_argument("out", help="output folder for the TFRecord shards, manifest.csv, "
                                    "preprocess.json (with --runner beam also a URL)")
    parser.add_argument("--size", type=int, default=128, help="crop side in pixels (default 128)")
    parser.add_argument("--color", choices=("gray", "rgb"), default="gray", help="default gray")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: CPU cores)")
    parser.add_argument("--shard-size", type=int, default=None,
                        help=f"images per shard (default: about {TARGET_SHARDS} shards, "
                             f"16 to {MAX_SHARD_SIZE} images each)")
    parser.add_argument("--margin", type=float, default=0.2,
                        help="border on each side of the face, fraction of its size (default 0.2)")
    parser.add_argument("--min-face", type=int, default=24, help="smallest face side in px (default 24)")
    parser.add_argument("--min-confidence", type=float, default=0.9,
                        help="smallest MTCNN confidence accepted (default 0.9)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the hash split (default 0)")
    parser.add_argument("--split", default="0.8,0.1,0.1",
                        help="train,valid,test fractions for a real/ + fake/ folder (default 0.8,0.1,0.1)")
    parser.add_argument("--no-level", action="store_true",
                        help="do not rotate faces level: cut whole pixels (keeps pixel-level traces)")
    parser.add_argument("--limit", type=int, default=None,
                        help="at most N files per split and class (seeded pick; quick trials)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an OUT holding other files (they are kept; files named "
                             "like preprocess's outputs are replaced) and redo every shard")
    parser.add_argument("--runner", choices=RUNNERS, default="local",
                        help="local: processes on this machine (default); beam: Apache Beam, "
                             "given its pipeline options after `--` (pip install -e '.[beam]')")
    parser.set_defaults(passthrough=[])  # the words after `--` (cli.split_passthrough)


def run(args: argparse.Namespace) -> int:
    options = FaceOptions(size=args.size, color=args.color, margin=args.margin, level=not args.no_level,
                          min_face=args.min_face, min_confidence=args.min_confidence)
    if args.runner == "beam" and args.workers:
        raise FakefaceError("--workers is for the local runner; give Beam its own after `--`, "
                            "e.g. -- --direct_num_workers=2 (README: preprocessing on Beam)")
    if args.passthrough and args.runner != "beam":
        raise FakefaceError(f"options after -- are for --runner beam: {' '.join(args.passthrough)}")
    summary = preprocess(args.src, args.out, options, workers=args.workers,
                         shard_size=args.shard_size, seed=args.seed, split=parse_split(args.split),
                         progress=not args.no_progress, limit=args.limit, runner=args.runner,
                         pipeline_args=args.passthrough, overwrite=args.overwrite)
    print(format_summary(summary, args.out))
    return 0
