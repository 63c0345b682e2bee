"""Execute a notebook as JupyterLab would and time its silences: the longest stretches with no
new output in a running cell (issue 27's goal: none over 10 s for notebook 02).

Each output message the kernel sends (a log line, a print, a figure) is timed as it arrives;
a cell's start and end count as output too, so a cell that prints nothing for 30 s shows as a
30 s silence. `--inplace` keeps the executed notebook (as scripts/notebooks.sh would).

    python benchmarks/notebook_silence.py notebooks/02_training.ipynb --inplace
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import nbformat
from nbclient import NotebookClient

SILENCE_GOAL = 10.0  # seconds


class TimedClient(NotebookClient):
    """A NotebookClient that notes when each output arrives and in which cell."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.last, self.cell, self.gaps = time.monotonic(), -1, []

    def _tick(self, what: str) -> None:
        now = time.monotonic()
        self.gaps.append((now - self.last, self.cell, what))
        self.last = now

    def output(self, outs, msg, display_id, cell_index):
        self.cell = cell_index
        text = msg["content"].get("text", "") or msg["msg_type"]
        self._tick(text.strip().splitlines()[-1][:100] if text.strip() else msg["msg_type"])
        return super().output(outs, msg, display_id, cell_index)

    async def async_execute_cell(self, cell, cell_index, *args, **kwargs):
        self.cell = cell_index
        self._tick("(cell start)")
        result = await super().async_execute_cell(cell, cell_index, *args, **kwargs)
        self._tick("(cell end)")
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook")
    parser.add_argument("--inplace", action="store_true", help="save the executed notebook")
    parser.add_argument("--out", default="outputs/benchmarks/notebook_silence.json")
    args = parser.parse_args()
    nb = nbformat.read(args.notebook, as_version=4)
    client = TimedClient(nb, timeout=-1, kernel_name="python3", record_timing=False,
                         coalesce_streams=True,  # one output per stream, not one per line
                         resources={"metadata": {"path": os.path.dirname(args.notebook) or "."}})
    started = time.monotonic()
    client.execute()
    wall = time.monotonic() - started
    worst = sorted(client.gaps, reverse=True)[:8]
    result = {"notebook": args.notebook, "wall_s": round(wall, 1),
              "longest_silences": [{"seconds": round(s, 1), "cell": c, "ended_by": w}
                                   for s, c, w in worst]}
    for gap in result["longest_silences"]:
        print(f"{gap['seconds']:7.1f} s silent in cell {gap['cell']}, until: {gap['ended_by']!r}")
    print(f"{args.notebook}: {wall:.0f} s; longest silence {worst[0][0]:.1f} s (goal {SILENCE_GOAL:.0f} s)")
    if args.inplace:
        nbformat.write(nb, args.notebook)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as file:
        json.dump(result, file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
