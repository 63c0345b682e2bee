"""`preprocess()`: list SRC, plan the shards, check OUT, hand the shards to a runner, summarise.

The runners take the same `ShardTask`s and write the same files: "local" is this machine's
process pool (local.py), "beam" Apache Beam (beam.py). Only the shards still missing from OUT
go to a runner, so a re-run resumes; the manifest and summary are written here afterwards.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict

from tqdm.auto import tqdm

from fakeface_tf.core import files
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.files import display_name, write_text_atomic
from fakeface_tf.data.faces import FaceOptions, check_options
from fakeface_tf.data.records import SUMMARY_FILE
from fakeface_tf.preprocess.items import find_items, limit_items
from fakeface_tf.preprocess.local import run_local
from fakeface_tf.preprocess.out_folder import foreign_records_warnings, prepare_out
from fakeface_tf.preprocess.shards import ShardTask, auto_shard_size, done_shards, plan_shards, shard_tasks
from fakeface_tf.preprocess.summary import (
    balance_warnings,
    record_counts,
    status_counts,
    versions,
    write_manifest,
)

RUNNERS = ("local", "beam")  # local: this machine's process pool; beam: preprocess/beam.py


def _check_request(src, out, options: FaceOptions, runner: str) -> None:
    """Refuse, before any work, a face cut, runner or SRC/OUT the run cannot take."""
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


def _beam_runner():
    """preprocess/beam.py, imported here, only when asked for: it imports apache_beam, an
    optional extra (pip install -e '.[beam]'), and says how to install it when missing."""
    from fakeface_tf.preprocess import beam

    return beam


def _run_tasks(tasks: list[ShardTask], runner: str, workers: int, bar, beam,
               pipeline_args) -> tuple[int | None, dict | None]:
    """Cut and write `tasks` on the runner; returns (local workers, Beam's stage seconds)."""
    if runner == "beam":
        stages = beam.run_shards(tasks, pipeline_args)
        bar.update(sum(len(task.items) for task in tasks))
        return None, stages  # the Beam runner decides the workers
    run_local(tasks, workers, bar)
    return workers, None


def _summary(out, settings: dict, plan: list, reused: int, skipped: list[dict],
             foreign: list[str]) -> dict:
    """manifest.csv written, and the counts, warnings and shards of preprocess.json."""
    shards = [name for name, _ in plan]
    total, counts = write_manifest(out, shards, skipped)
    return {
        "settings": settings,
        "files": total,
        "status": status_counts(counts),
        "records": record_counts(counts),
        "counts": counts,
        "warnings": balance_warnings({s: c for s, c in counts.items() if s != "none"})
        + foreign_records_warnings(foreign),
        "shards": shards,
        "shards_reused": reused,
    }


def preprocess(src, out, options: FaceOptions = FaceOptions(), workers: int | None = None,
               shard_size: int | None = None, seed: int = 0,
               split: tuple[float, float, float] = (0.8, 0.1, 0.1), progress: bool = True,
               limit: int | None = None, runner: str = "local", pipeline_args=(),
               overwrite: bool = False) -> dict:
    """Crop every face in SRC into OUT's shards, manifest.csv and preprocess.json.

    `limit` keeps at most that many files per split and class (a seeded hash picks them),
    for quick trials and the notebooks' fast mode. `runner` "beam" cuts and writes the same
    shards on Apache Beam (fakeface_tf/preprocess/beam.py), configured by `pipeline_args`.

    SRC and OUT are folders, or with runner "beam" also URLs of Beam's file systems
    (gs://..., files.py). Resumable: shards already finished in OUT are kept. An OUT holding
    files preprocess did not write is refused unless `overwrite`, which keeps those files and
    redoes every shard (out_folder.py). `shard_size` None picks `auto_shard_size`. Returns
    the preprocess.json dict.
    """
    start = time.time()
    _check_request(src, out, options, runner)
    beam = _beam_runner() if runner == "beam" else None
    items, skipped, layout = find_items(src, seed, split)
    if limit:
        items = limit_items(items, limit, seed)
    shard_size = shard_size or auto_shard_size(len(items))
    if shard_size < 1:
        raise FakefaceError(f"--shard-size must be >= 1, got {shard_size}")
    out, src = files.location(out), files.location(src)
    settings = {"src": src if files.scheme(src) else str(src.resolve()), "layout": layout,
                "limit": limit, "face": asdict(options), "shard_size": shard_size, "seed": seed,
                "split": list(split) if layout.endswith("hash split") else "from folders"}
    foreign = prepare_out(out, settings, overwrite)
    plan = plan_shards(items, shard_size)
    tasks = shard_tasks(plan, out, options, done_shards(out))
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks) or 1))
    bar = tqdm(total=len(items), desc="preprocess", unit="img", disable=not progress)
    bar.update(len(items) - sum(len(task.items) for task in tasks))
    workers, stages = _run_tasks(tasks, runner, workers, bar, beam, pipeline_args)
    bar.close()
    summary = {**_summary(out, settings, plan, len(plan) - len(tasks), skipped, foreign),
               "runner": runner, "workers": workers,
               **({"beam_stages": stages} if runner == "beam" else {}),
               "versions": versions(), "seconds": round(time.time() - start, 2)}
    write_text_atomic(files.join(out, SUMMARY_FILE), json.dumps(summary, indent=2))
    return summary
