"""The main job with MLflow tracking on, then off: wall time, the tracking overhead as a
ratio, and the longest silence of each (seconds with no output at all).

Goals (issue 27): tracking adds at most 5 % (`ratio=<on/off>` <= 1.05) and no step is silent
for more than 10 s. Output is read through a pipe, as a log file or CI would: Keras' bar is
then replaced by the log lines of `callbacks.LogProgress`. Both runs find the records and the
frozen-map store already made (the first run makes them if missing, so run it twice for a
fair ratio: `--cold` adds a first run that makes them, timed and watched for silence apart).
`--command` times any other command (notebook 02 as a script, say).

    python benchmarks/main_job.py --cold --pairs 2 --set data.path=data/records_bench
    python benchmarks/main_job.py --command "ipython nb02.py"
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

SILENCE_GOAL = 10.0  # seconds
OVERHEAD_GOAL = 1.05


def watch(command: list[str], env: dict | None = None) -> dict:
    """Run `command`, echoing its output; its wall time, the longest gaps between output
    chunks and the line printed before each."""
    started = last = time.monotonic()
    gaps, tail = [], b""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})})
    while chunk := proc.stdout.read1(65536):
        now = time.monotonic()
        before = tail.replace(b"\r", b"\n").strip().splitlines()[-1:] or [b""]
        gaps.append((now - last, before[0].decode(errors="replace")[-120:]))
        last, tail = now, (tail + chunk)[-2000:]
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
    code = proc.wait()
    gaps.append((time.monotonic() - last, "(end)"))
    worst = sorted(gaps, reverse=True)[:5]
    return {"command": shlex.join(command), "exit": code,
            "wall_s": round(time.monotonic() - started, 1),
            "longest_silences": [{"seconds": round(s, 1), "after": line} for s, line in worst]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--command", default=None, help="time this command instead (one run)")
    parser.add_argument("--pairs", type=int, default=1,
                        help="on/off pairs, interleaved (timings vary up to 2x between runs)")
    parser.add_argument("--cold", action="store_true",
                        help="first a run that makes the records and caches (tracking on)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for every run of the main job")
    parser.add_argument("--out", default="outputs/benchmarks/main_job.json")
    args = parser.parse_args()
    if args.command:
        results = {"run": watch(shlex.split(args.command))}
    else:
        job = [sys.executable, "-m", "fakeface_tf.cli", "main", "--set", *args.set]
        results = {"cold": watch(job)} if args.cold else {}
        for pair in range(1, args.pairs + 1):
            results[f"tracking_on_{pair}"] = watch(job)
            results[f"tracking_off_{pair}"] = watch(job + ["training.tracking=off"])
    for name, result in results.items():
        print(f"{name}: {result['wall_s']} s, exit {result['exit']}, longest silence "
              f"{result['longest_silences'][0]['seconds']} s (goal {SILENCE_GOAL:.0f} s) after: "
              f"{result['longest_silences'][0]['after']!r}")
    if not args.command:
        on, off = ([r["wall_s"] for k, r in results.items() if k.startswith(f"tracking_{s}_")]
                   for s in ("on", "off"))
        ratio = sum(on) / sum(off)
        results["ratio"] = round(ratio, 3)
        print(f"ratio={ratio:.3f} (tracking on / off, total of {len(on)} interleaved pairs; "
              f"goal <= {OVERHEAD_GOAL})")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as file:
        json.dump(results, file, indent=2)
    return max(r["exit"] for r in results.values() if isinstance(r, dict))


if __name__ == "__main__":
    sys.exit(main())
