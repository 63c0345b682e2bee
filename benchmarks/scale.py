"""How time and memory grow with the data: seconds per face and peak anonymous RSS per stage.

Each stage runs on 1x, 4x and 16x copies of the sample's records. A copy is a records folder
of symlinks: every shard of every split listed `x` times under new shard names (with the
sample's preprocess.json), so `x` times the faces, nothing duplicated on disk. Stages, each
measured in its own process (sampled every 0.5 s with its children, benchmarks/rss.py) after
its imports, on a fresh $FAKEFACE_CACHE:
  frozen    training's pass of the frozen layers over the training and validation faces
            (`fitting.trainable_part`, as `fakeface train` calls it, with --config's settings)
  epoch     one training epoch after it, in the same process (its peak includes what the
            frozen pass left in memory)
  evaluate  `fakeface evaluate MODEL DATA --threshold auto` (valid and test faces)
  robustness, learning-curve (optional) the same commands' functions, on test (and valid)
A stage whose memory does not grow with the data keeps its peak flat across the copies, and
one that does no more work per face keeps its seconds per face flat (the fixed costs inside a
stage, such as loading the model, only lower it as the copies grow).
Goals: peak(16x) <= 1.15 x peak(1x), seconds per face(16x) <= 1.1 x at 1x, for every stage.
The last two lines are `time_ratio=` and `ratio=` (peak), each the worst stage's figure for
the largest copy over the smallest.

    python benchmarks/scale.py [--records data/records_rgb224_nolevel] [--multipliers 1,4,16]
        [--stages frozen,epoch,evaluate] [--model saved_models/reference] [--quick]
        [--config configs/faceres.yaml] [--set training.cache_frozen=disk]

`--quick` takes a few shards of each split as 1x and copies 1 and 4 of them (a few minutes).
With `training.cache_frozen: auto`, frozen maps under frozen_cache.RAM_CACHE_BYTES stay in
memory by design, so small copies grow there; `--set training.cache_frozen=disk` measures the
disk path at any size. The frozen maps of a copy go to disk under the temp folder: at 16x of
the sample that is about 16 x the 1x cache.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from rss import RssWatcher

from fakeface_tf.core.config import CACHE_ENV, REPO_ROOT, cache_root
from fakeface_tf.data import records

STAGES = ("frozen", "epoch", "evaluate", "robustness", "learning-curve")
CHILD = {"frozen": "train", "epoch": "train", "evaluate": "evaluate",
         "robustness": "robustness", "learning-curve": "learning-curve"}
MARK = "@phase "  # a child's stdout line: MARK + JSON {"name", "event", ["seconds", "faces"]}
INTERVAL = 0.5
QUICK_SHARDS = {"train": 8, "valid": 2, "test": 2}  # 90 faces: more than a batch of 64
GOAL_PEAK, GOAL_TIME = 1.15, 1.1


# ------------------------------------------------------------------------------- copies


def replicate(source: Path, folder: Path, times: int, shards: dict | None = None) -> Path:
    """`folder` holding `times` symlinks to each shard of `source` (the first `shards[split]`
    of a split when given) under new shard names, and `source`'s preprocess.json."""
    folder.mkdir(parents=True)
    for split in records.SPLITS:
        files = records.shard_files(source, split)[:(shards or {}).get(split)]
        total = len(files) * times
        for k in range(total):
            target = Path(files[k % len(files)]).resolve()
            (folder / records.shard_name(split, k, total)).symlink_to(target)
    if (source / "preprocess.json").is_file():
        shutil.copy(source / "preprocess.json", folder / "preprocess.json")
    return folder


def fresh_cache(folder: Path) -> Path:
    """An empty $FAKEFACE_CACHE except for the FaceRes weights (converted once, never fetched
    here: the benchmark must not touch the network)."""
    folder.mkdir(parents=True)
    weights = cache_root() / "faceres"
    if weights.is_dir():
        (folder / "faceres").symlink_to(weights.resolve())
    return folder


# ------------------------------------------------------------------------------- parent


def measure(child: str, data: Path, args, work: Path) -> dict[str, dict]:
    """Run one child stage in its own process with an RSS sampler: {phase: {seconds, faces,
    peak}}; the peak is that of the samples taken while the phase ran."""
    cache = fresh_cache(work / "cache")
    command = [sys.executable, __file__, "--child", child, "--data", str(data), "--work", str(work),
               "--model", str(args.model), "--config", str(args.config)]
    command += ["--set", *args.set] if args.set else []
    env = {**os.environ, CACHE_ENV: str(cache), "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    watcher = RssWatcher(process.pid, interval=INTERVAL, keep_samples=True)
    watcher.start()
    phases: dict[str, dict] = {}

    def read() -> None:
        for line in process.stdout:
            if not line.startswith(MARK):
                sys.stdout.write(line)
                continue
            event = json.loads(line[len(MARK):])
            phase = phases.setdefault(event["name"], {})
            phase[event["event"]] = time.monotonic()
            phase.update({k: event[k] for k in ("seconds", "faces") if k in event})

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    code = process.wait()
    reader.join()
    watcher.stop.set()
    watcher.join()
    if code:
        raise SystemExit(f"{child} on {data} failed with exit code {code}")
    for phase in phases.values():
        phase["peak"] = watcher.peak_between(phase["start"], phase["end"] + INTERVAL)
    return phases


def report(rows: list[dict], stages: list[str]) -> None:
    print(f"\n{'stage':14s} {'copies':>6s} {'faces':>7s} {'seconds':>9s} {'ms/face':>8s} "
          f"{'peak MB':>8s}")
    for row in rows:
        print(f"{row['stage']:14s} {row['x']:>5d}x {row['faces']:7d} {row['seconds']:9.1f} "
              f"{1e3 * row['seconds'] / row['faces']:8.1f} {row['peak'] / 2**20:8.0f}")
    worst_time = worst_peak = 0.0
    print()
    for stage in stages:
        mine = sorted((r for r in rows if r["stage"] == stage), key=lambda r: r["x"])
        if len(mine) < 2:
            continue
        small, large = mine[0], mine[-1]
        peak = large["peak"] / small["peak"]
        per_face = (large["seconds"] / large["faces"]) / (small["seconds"] / small["faces"])
        slope = (large["peak"] - small["peak"]) / (large["faces"] - small["faces"])
        worst_peak, worst_time = max(worst_peak, peak), max(worst_time, per_face)
        print(f"{stage:14s} {large['x']}x over {small['x']}x: peak {peak:.3f} (goal <= {GOAL_PEAK}), "
              f"time per face {per_face:.3f} (goal <= {GOAL_TIME}); "
              f"{slope / 1024:+.1f} KB of peak per added face")
    print(f"time_ratio={worst_time:.3f}")
    print(f"ratio={worst_peak:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, default=REPO_ROOT / "data" / "records_rgb224_nolevel",
                        help="the sample's records (1x)")
    parser.add_argument("--multipliers", default="1,4,16", help="copies, comma-separated")
    parser.add_argument("--stages", default="frozen,epoch,evaluate",
                        help=f"comma-separated, of {', '.join(STAGES)}")
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "saved_models" / "reference",
                        help="model for evaluate, robustness and learning-curve")
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "configs" / "faceres.yaml",
                        help="training config for frozen and epoch (data.path is replaced)")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="config overrides for frozen and epoch, as for `fakeface train`, "
                             "e.g. --set training.cache_frozen=disk")
    parser.add_argument("--quick", action="store_true",
                        help=f"1x = the first {QUICK_SHARDS} shards; copies 1 and 4")
    parser.add_argument("--child", choices=sorted(set(CHILD.values())), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    stages = [s.strip() for s in args.stages.split(",")]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    if not (args.records / "preprocess.json").is_file():
        parser.error(f"{args.records}: no preprocess.json; run `fakeface preprocess` first")
    multipliers = [1, 4] if args.quick else [int(m) for m in args.multipliers.split(",")]
    shards = QUICK_SHARDS if args.quick else None
    children = list(dict.fromkeys(CHILD[s] for s in stages))
    print(f"records {args.records}{' (quick: ' + str(shards) + ' shards)' if shards else ''}, "
          f"copies {multipliers}, stages {stages}, {os.cpu_count()} CPUs"
          + (f", --set {' '.join(args.set)}" if args.set else ""), flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="fakeface-scale-") as tmp:
        for x in multipliers:
            data = replicate(args.records, Path(tmp) / f"x{x}" / "records", x, shards)
            for name in children:
                work = Path(tmp) / f"x{x}" / name
                work.mkdir()
                for stage, phase in measure(name, data, args, work).items():
                    if stage in stages:
                        rows.append({"stage": stage, "x": x, **phase})
                        print(f"  {stage} {x}x: {phase['faces']} faces, {phase['seconds']:.1f} s, "
                              f"peak {phase['peak'] / 2**20:.0f} MB", flush=True)
    rows.sort(key=lambda r: (stages.index(r["stage"]), r["x"]))
    report(rows, stages)


# -------------------------------------------------------------------------------- child


def mark(name: str, event: str, **extra) -> None:
    print(MARK + json.dumps({"name": name, "event": event, **extra}), flush=True)


def timed(name: str, faces: int, work) -> object:
    """Run `work()` as phase `name` and report its seconds and faces to the parent."""
    mark(name, "start")
    start = time.perf_counter()
    result = work()
    mark(name, "end", seconds=time.perf_counter() - start, faces=faces)
    return result


def child(args) -> None:
    """One measured process: imports and set-up first, then the phases the parent samples."""
    from fakeface_tf.data import datasets

    def faces(*splits: str) -> int:
        return sum(sum(datasets.count_examples(args.data, s).values()) for s in splits)

    if args.child == "train":
        from fakeface_tf.core.config import load_config
        from fakeface_tf.models.registry import build_model, compile_model
        from fakeface_tf.training import fitting, inputs, runtime

        cfg = load_config(args.config, [*args.set, f"data.path={args.data}", "training.epochs=1"])
        n = faces("train", "valid")
        with runtime.precision(cfg.training):
            strategy = runtime.strategy(cfg.distribute)
            train_ds, valid_ds, steps, _ = inputs.training_data(cfg, strategy)
            model = compile_model(build_model(cfg), cfg, steps)
            fit_model, fit_train, fit_valid, _ = timed(
                "frozen", n, lambda: fitting.trainable_part(model, cfg, train_ds, valid_ds, fresh=False))
            timed("epoch", n, lambda: fit_model.fit(fit_train, validation_data=fit_valid, epochs=1,
                                                    shuffle=False, verbose=0))
        return
    from fakeface_tf.models import artifacts

    artifacts.load_model(args.model)  # Keras and TF set up outside the measured phase
    out = args.work / "out"
    if args.child == "evaluate":
        from fakeface_tf.analysis.evaluate import evaluate

        timed("evaluate", faces("valid", "test"),
              lambda: evaluate(args.model, args.data, out, threshold="auto", progress=False))
    elif args.child == "robustness":
        from fakeface_tf.analysis.robustness import robustness

        timed("robustness", faces("test"),
              lambda: robustness(args.model, args.data, out, progress=False))
    elif args.child == "learning-curve":
        from fakeface_tf.analysis.evaluate import learning_curve

        timed("learning-curve", faces("valid", "test"),
              lambda: learning_curve([args.model], args.data, out, progress=False))


if __name__ == "__main__":
    sys.exit(main())
