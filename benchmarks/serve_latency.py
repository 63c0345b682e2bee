"""Latency of `fakeface serve` on loopback: sequential and 8 concurrent clients, per explanation.

Starts the server as a subprocess on a free port, posts sample faces to /api/predict
(`--requests` sequentially, then `--requests` from `--clients` concurrent clients) for no
explanation and for each method, after 20 warm-up requests per method, and prints
p50/p95/max latency, errors, the server's peak RSS and its RSS before and after each
method's measured requests (flat = no leak); RSS is anonymous RSS (benchmarks/rss.py).
Goals on 2 cores: p50 <= 300 ms without explanation, <= 1.5 s with Grad-CAM++, 0 errors.

Without --model it uses saved_models/reference, else builds the default-config model
untrained (latency depends on the architecture, not the weights) into a temporary folder.
The last line is `ratio=<p50 without explanation / 300 ms>` (<= 1 meets the goal).

    python benchmarks/serve_latency.py [--model M] [--requests 100] [--clients 8] [--warmup 20]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from rss import RssWatcher

from fakeface_tf.core.config import data_root

MODES = ("none", "gradcam++", "smoothgrad", "scorecam")
GOAL_S = {"none": 0.300, "gradcam++": 1.5}


def default_model(folder: Path) -> Path:
    """The shipped reference model, else the default-config architecture, untrained."""
    from fakeface_tf.models.artifacts import REFERENCE

    if REFERENCE.exists():
        return REFERENCE
    from fakeface_tf.core.config import Config
    from fakeface_tf.models.registry import build_model

    path = folder / "untrained.keras"
    build_model(Config()).save(path)
    print(f"no --model and no saved_models/reference: using an untrained default model {path}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int, extra: tuple[str, ...] = (),
                 code: Path | None = None) -> subprocess.Popen:
    """`fakeface serve` on loopback, from this checkout or the package folder `code`."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "1"}
    if code is not None:
        env["PYTHONPATH"] = str(code)
    server = subprocess.Popen(
        [sys.executable, "-m", "fakeface_tf.cli", "serve", "--model", str(model),
         "--host", "127.0.0.1", "--port", str(port), *extra], env=env, cwd=code)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited with code {server.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.terminate()
    raise SystemExit("server did not answer /api/health within 180 s")


def one_request(client: httpx.Client, url: str, image: bytes, mode: str) -> tuple[float, bool]:
    start = time.perf_counter()
    try:
        response = client.post(url, files={"file": ("face.jpg", image, "image/jpeg")},
                               data={"explain": mode})
        ok = response.status_code == 200
    except httpx.HTTPError:
        ok = False
    return time.perf_counter() - start, ok


def measure(client, url, images, mode, n, clients) -> tuple[np.ndarray, int]:
    jobs = [images[i % len(images)] for i in range(n)]
    if clients == 1:
        results = [one_request(client, url, image, mode) for image in jobs]
    else:
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(lambda image: one_request(client, url, image, mode), jobs))
    return np.array([t for t, _ in results]), sum(not ok for _, ok in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model to serve (default: see module docstring)")
    parser.add_argument("--requests", type=int, default=100, help="requests per mode and pattern")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--warmup", type=int, default=20,
                        help="unmeasured requests per mode first (explainers are built lazily)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    args = parser.parse_args()

    faces = sorted((data_root() / "faces" / "real").glob("*.jpg"))[:10]
    faces += sorted((data_root() / "faces" / "fake").glob("*.jpg"))[:10]
    images = [p.read_bytes() for p in faces]
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or default_model(Path(tmp))
        port = free_port()
        server = start_server(model, port)
        watcher = RssWatcher(server.pid)
        watcher.start()
        url = f"http://127.0.0.1:{port}/api/predict"
        p50s, rss = {}, []
        limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
        try:
            with httpx.Client(timeout=120, limits=limits) as client:
                for mode in args.modes:
                    measure(client, url, images, mode, args.warmup, 1)
                    before = watcher.current()
                    for clients in (1, args.clients):
                        times, errors = measure(client, url, images, mode, args.requests, clients)
                        p50, p95, worst = np.percentile(times, 50), np.percentile(times, 95), times.max()
                        if clients == 1:
                            p50s[mode] = p50
                        print(f"{mode:>10} clients={clients}: p50 {p50 * 1e3:7.1f} ms  p95 "
                              f"{p95 * 1e3:7.1f} ms  max {worst * 1e3:7.1f} ms  errors {errors}"
                              + (f"  (goal p50 <= {GOAL_S[mode] * 1e3:.0f} ms)"
                                 if clients == 1 and mode in GOAL_S else ""), flush=True)
                    rss.append((mode, before, watcher.current()))
        finally:
            watcher.stop.set()
            server.terminate()
            server.wait(timeout=30)
    for mode, before, after in rss:
        print(f"{mode:>10} server RSS: {before / 2**20:.0f} MB after {args.warmup} warm-up requests, "
              f"{after / 2**20:.0f} MB after {2 * args.requests} more")
    print(f"server peak RSS {watcher.peak / 2**20:.0f} MB")
    base = p50s.get("none")
    print(f"ratio={base / GOAL_S['none']:.3f}" if base is not None else "ratio=nan")


if __name__ == "__main__":
    main()
