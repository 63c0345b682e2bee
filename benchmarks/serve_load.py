"""`fakeface serve` under load and hostile uploads: throughput, tail latency, errors, memory.

Starts the server twice on loopback with the same model: first one request at a time through
MTCNN and the model (`--max-batch 1`, the peer approach: how the server worked before
micro-batching), then micro-batched (the default). For each it prints p50, p95, requests/s,
errors and 5xx for 1, 8 and 16 clients, without and with Grad-CAM++, then sends a burst of
16 worst-case uploads at once (16-bit PNGs just under the pixel cap, gray and RGB) and
prints the statuses and the server's peak RSS during the burst.
Goals on 2 cores: 0 5xx; peak RSS <= 2 GB in the burst; 8-client throughput without
explanation >= 2x the one-at-a-time server's.

Bounded: `--requests` per cell (default 48), each cell stops after `--cell-seconds`.
The last line is `ratio=<batched / one-at-a-time 8-client requests/s>` (>= 2 meets the goal).

    python benchmarks/serve_load.py [--model M] [--requests 48] [--code DIR] [--only batched]

`--code DIR` serves the package found in DIR (e.g. a `git worktree` of an older commit);
its server then gets no options beyond --model, so use it with `--only serial`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
from serve_latency import RssWatcher, default_model, free_port, start_server

from fakeface_tf.config import data_root
from fakeface_tf.images import MAX_PIXELS

SERVERS = {"serial": ("--max-batch", "1"), "batched": ()}
GOAL_RSS = 2 * 2**30


def worst_case_uploads(face: bytes, n: int = 16) -> list[bytes]:
    """16-bit PNGs of a face just under the pixel cap (nearest-upscaled, so each is small)."""
    side = int(MAX_PIXELS ** 0.5) - 16
    rgb = cv2.imdecode(np.frombuffer(face, np.uint8), cv2.IMREAD_COLOR)
    big = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_NEAREST).astype(np.uint16) * 257
    gray = cv2.cvtColor(big, cv2.COLOR_BGR2GRAY)
    blobs = [cv2.imencode(".png", image)[1].tobytes() for image in (gray, big)]
    return [blobs[i % 2] for i in range(n)]


def post(client: httpx.Client, url: str, image: bytes, explain: str) -> tuple[float, int]:
    start = time.perf_counter()
    try:
        status = client.post(url, files={"file": ("upload", image, "application/octet-stream")},
                             data={"explain": explain}).status_code
    except httpx.HTTPError:
        status = 0  # connection error
    return time.perf_counter() - start, status


def cell(client, url, images, explain, clients, n, seconds) -> dict:
    """n requests from `clients` concurrent clients; stops submitting after `seconds`."""
    deadline = time.monotonic() + seconds

    def job(i):
        return post(client, url, images[i % len(images)], explain) if time.monotonic() < deadline else None

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for r in pool.map(job, range(n)) if r is not None]
    wall = time.perf_counter() - start
    times = np.array([t for t, _ in results])
    statuses = [s for _, s in results]
    return {"n": len(results), "p50": np.percentile(times, 50), "p95": np.percentile(times, 95),
            "rps": len(results) / wall, "errors": sum(s != 200 for s in statuses),
            "5xx": sum(s >= 500 or s == 0 for s in statuses)}


def run_server(name, model, args, faces, worst) -> dict:
    port = free_port()
    server = start_server(model, port, () if args.code else SERVERS[name], args.code)
    watcher = RssWatcher(server.pid)
    watcher.start()
    url = f"http://127.0.0.1:{port}/api/predict"
    out = {"cells": {}}
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    try:
        with httpx.Client(timeout=180, limits=limits) as client:
            for explain in ("none", "gradcam++"):
                cell(client, url, faces, explain, 1, 8, 60)  # warm-up (explainers build lazily)
                for clients in (1, 8, 16):
                    result = cell(client, url, faces, explain, clients, args.requests, args.cell_seconds)
                    out["cells"][(explain, clients)] = result
                    print(f"{name:>8} {explain:>9} clients={clients:2d}: p50 {result['p50'] * 1e3:7.0f} ms"
                          f"  p95 {result['p95'] * 1e3:7.0f} ms  {result['rps']:5.2f} req/s  "
                          f"errors {result['errors']}  5xx {result['5xx']}  (n={result['n']})", flush=True)
            idle = watcher.current()
            watcher.peak = 0
            burst = cell(client, url, worst, "none", len(worst), len(worst), args.cell_seconds)
            time.sleep(1.0)
            out["burst"] = {**burst, "peak": watcher.peak, "idle": idle, "after": watcher.current()}
            print(f"{name:>8} burst of {len(worst)} 16-bit PNGs ({len(worst[0]) / 1e3:.0f} KB, "
                  f"{MAX_PIXELS / 1e6:.0f} MP): errors {burst['errors']}  5xx {burst['5xx']}  "
                  f"p50 {burst['p50']:.1f} s  server RSS idle {idle / 2**20:.0f} MB, peak "
                  f"{watcher.peak / 2**20:.0f} MB, after {watcher.current() / 2**20:.0f} MB "
                  f"(goal peak <= {GOAL_RSS / 2**30:.0f} GB)", flush=True)
    finally:
        watcher.stop.set()
        server.terminate()
        server.wait(timeout=30)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model to serve (default: saved_models/reference)")
    parser.add_argument("--requests", type=int, default=48, help="requests per cell")
    parser.add_argument("--cell-seconds", type=float, default=90, help="time bound per cell")
    parser.add_argument("--only", choices=list(SERVERS), help="run one server, not both")
    parser.add_argument("--code", type=Path, help="serve the package in this folder instead")
    args = parser.parse_args()

    paths = sorted((data_root() / "faces" / "real").glob("*.jpg"))[:16]
    paths += sorted((data_root() / "faces" / "fake").glob("*.jpg"))[:16]
    faces = [p.read_bytes() for p in paths]
    worst = worst_case_uploads(faces[0])
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or default_model(Path(tmp))
        runs = {name: run_server(name, model, args, faces, worst)
                for name in SERVERS if args.only in (None, name)}
    if len(runs) == 2:
        serial, batched = (runs[n]["cells"][("none", 8)]["rps"] for n in ("serial", "batched"))
        fivexx = sum(c["5xx"] for r in runs.values() for c in [*r["cells"].values(), r["burst"]])
        print(f"5xx in all cells: {fivexx} (goal 0); burst peak RSS "
              f"{runs['batched']['burst']['peak'] / 2**20:.0f} MB")
        print(f"ratio={batched / serial:.2f}")


if __name__ == "__main__":
    main()
