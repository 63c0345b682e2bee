"""`fakeface serve` under load and hostile uploads: throughput, tail latency, errors, memory.

Starts the server twice on loopback with the same model: first one request at a time through
MTCNN and the model (`--max-batch 1`, the peer approach: how the server worked before
micro-batching), then micro-batched (the default). For each it prints p50, p95, requests/s,
errors and 5xx for 1, 8 and 16 clients, without and with Grad-CAM++, then sends a burst of
16 worst-case uploads at once (16-bit PNGs just under the pixel cap, gray and RGB) and
prints the statuses and the server's peak RSS during the burst (anonymous RSS: benchmarks/rss.py).
Goals on 2 cores: 0 5xx; peak RSS <= 2 GB in the burst; 8-client throughput without
explanation >= 2x the one-at-a-time server's.

Bounded: `--requests` per cell (default 48), each cell stops after `--cell-seconds`;
`--clients` and `--explain` choose the cells, `--no-burst` skips the burst.
The last line is `ratio=<batched / one-at-a-time 8-client requests/s>` (>= 2 meets the goal).

`--hostile` then measures the batched server's normal clients (`--clients`' largest count,
no explanation) clean and again while attackers send, one request at a time each, a tall thin
PNG, a progressive JPEG bomb and a photo of 1,764 small faces (each attacker at most one
request per `--attack-interval` seconds, default 1), and hold 100 half-open sockets
(re-opened within a second when the server closes them). It prints both p50s, the attacks'
statuses and latencies, and the server's RSS (with its decode workers) idle, peak and after.
Goals: normal p50 under attack <= 2x clean; no 5xx for anyone; each attack answered within
30 s; peak RSS <= idle + 1.5 GB. It prints `hostile_ratio=<attacked / clean p50>` (<= 2 meets it).

    python benchmarks/serve_load.py [--model M] [--requests 48] [--code DIR] [--only batched]
    python benchmarks/serve_load.py --only batched --clients 8 --explain none --no-burst --hostile

`--code DIR` serves the package found in DIR (e.g. a `git worktree` of an older commit);
its server then gets no options beyond --model, so use it with `--only serial`.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
from rss import RssWatcher
from serve_latency import default_model, free_port, start_server

from fakeface_tf.core.config import data_root
from fakeface_tf.data.images import MAX_PIXELS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from hostile_uploads import many_faces, progressive_bomb, tall_thin_png  # noqa: E402

SERVERS = {"serial": ("--max-batch", "1"), "batched": ()}
GOAL_RSS = 2 * 2**30
GOAL_ATTACK_RSS = 1.5 * 2**30  # over idle, while under attack
HALF_OPEN = 100


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


class HalfOpen(threading.Thread):
    """Holds `n` sockets that sent half a request line, re-opening (once a second) any that the
    server has closed; counts the re-openings."""

    def __init__(self, port: int, n: int = HALF_OPEN):
        super().__init__(daemon=True)
        self.port, self.n, self.reopened, self.stop = port, n, 0, threading.Event()
        self.sockets: list[socket.socket] = []

    def _open(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.sendall(b"GET /api/hea")
        sock.setblocking(False)
        return sock

    def _closed(self, sock: socket.socket) -> bool:
        try:
            return sock.recv(4096) is not None  # any answer (408) or b"" (closed)
        except BlockingIOError:
            return False
        except OSError:
            return True

    def run(self) -> None:
        self.sockets = [self._open() for _ in range(self.n)]
        while not self.stop.wait(1.0):
            for i, sock in enumerate(self.sockets):
                if self._closed(sock):
                    sock.close()
                    self.sockets[i] = self._open()
                    self.reopened += 1
        for sock in self.sockets:
            sock.close()


def attacker(url: str, data: bytes, stop: threading.Event, log: list, interval: float) -> None:
    """Send `data` again and again, one request at a time and at most one per `interval`
    seconds, until told to stop."""
    with httpx.Client(timeout=180) as client:
        while not stop.is_set():
            log.append(post(client, url, data, "none"))
            stop.wait(max(0.0, interval - log[-1][0]))


def hostile_run(client, url, port, faces, args, watcher) -> dict:
    """Normal clients' p50 clean, then under attack; the attacks' outcomes; RSS."""
    clients = max(args.clients)
    clean = cell(client, url, faces, "none", clients, args.requests, args.cell_seconds)
    bombs = {"tall thin PNG": tall_thin_png(), "progressive JPEG bomb": progressive_bomb(),
             "many faces": many_faces(data_root() / "faces" / "real")}
    idle = watcher.current()
    watcher.peak = 0
    stop, logs = threading.Event(), {name: [] for name in bombs}
    holder = HalfOpen(port)
    holder.start()
    threads = [threading.Thread(target=attacker, args=(url, data, stop, logs[name], args.attack_interval),
                                daemon=True) for name, data in bombs.items()]
    for thread in threads:
        thread.start()
    time.sleep(2.0)  # the attacks are under way
    attacked = cell(client, url, faces, "none", clients, args.requests, args.cell_seconds)
    stop.set()
    holder.stop.set()
    for thread in [*threads, holder]:
        thread.join(timeout=240)
    peak = watcher.peak
    time.sleep(2.0)
    after = watcher.current()
    for name, results in logs.items():
        statuses = sorted({s for _, s in results})
        worst = max((t for t, _ in results), default=float("nan"))
        print(f"  attack {name:>22}: {len(results)} sent, statuses {statuses}, slowest answer "
              f"{worst:.1f} s (goal <= 30 s)", flush=True)
    print(f"  attackers send one request at a time, at most one per {args.attack_interval:g} s each")
    print(f"  half-open sockets: {HALF_OPEN} held, {holder.reopened} re-opened after the server closed them")
    ratio = attacked["p50"] / clean["p50"]
    fivexx = attacked["5xx"] + sum(s >= 500 or s == 0 for r in logs.values() for _, s in r)
    print(f"hostile {clients} clients: p50 clean {clean['p50'] * 1e3:.0f} ms, under attack "
          f"{attacked['p50'] * 1e3:.0f} ms ({ratio:.2f}x, goal <= 2x); p95 {clean['p95'] * 1e3:.0f} -> "
          f"{attacked['p95'] * 1e3:.0f} ms; {clean['rps']:.2f} -> {attacked['rps']:.2f} req/s; "
          f"normal errors {attacked['errors']}; 5xx in all {fivexx} (goal 0)", flush=True)
    print(f"hostile server RSS: idle {idle / 2**20:.0f} MB, peak {peak / 2**20:.0f} MB "
          f"(+{(peak - idle) / 2**20:.0f} MB, goal <= +{GOAL_ATTACK_RSS / 2**20:.0f}), "
          f"2 s after {after / 2**20:.0f} MB", flush=True)
    return {"clean": clean, "attacked": attacked, "ratio": ratio, "peak": peak, "idle": idle,
            "after": after, "5xx": fivexx}


def run_server(name, model, args, faces, worst) -> dict:
    port = free_port()
    server = start_server(model, port, () if args.code else SERVERS[name], args.code)
    watcher = RssWatcher(server.pid)
    watcher.start()
    url = f"http://127.0.0.1:{port}/api/predict"
    out = {"cells": {}, "started": watcher.current()}
    print(f"{name:>8} server RSS at start: {out['started'] / 2**20:.0f} MB", flush=True)
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    try:
        with httpx.Client(timeout=180, limits=limits) as client:
            for explain in args.explain:
                cell(client, url, faces, explain, 1, 8, 60)  # warm-up (explainers build lazily)
                for clients in args.clients:
                    result = cell(client, url, faces, explain, clients, args.requests, args.cell_seconds)
                    out["cells"][(explain, clients)] = result
                    print(f"{name:>8} {explain:>9} clients={clients:2d}: p50 {result['p50'] * 1e3:7.0f} ms"
                          f"  p95 {result['p95'] * 1e3:7.0f} ms  {result['rps']:5.2f} req/s  "
                          f"errors {result['errors']}  5xx {result['5xx']}  (n={result['n']})", flush=True)
            idle = watcher.current()
            out["idle_after_cells"] = idle
            print(f"{name:>8} server RSS after the cells: {idle / 2**20:.0f} MB", flush=True)
            if args.hostile and name == "batched":
                out["hostile"] = hostile_run(client, url, port, faces, args, watcher)
            if args.no_burst:
                return out
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
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 16], help="client counts")
    parser.add_argument("--explain", nargs="+", default=["none", "gradcam++"], help="explanations")
    parser.add_argument("--no-burst", action="store_true", help="skip the worst-case burst")
    parser.add_argument("--hostile", action="store_true",
                        help="measure normal clients under attack too (batched server)")
    parser.add_argument("--attack-interval", type=float, default=1.0,
                        help="seconds between one attacker's requests at least (0: back to back)")
    args = parser.parse_args()

    paths = sorted((data_root() / "faces" / "real").glob("*.jpg"))[:16]
    paths += sorted((data_root() / "faces" / "fake").glob("*.jpg"))[:16]
    faces = [p.read_bytes() for p in paths]
    worst = None if args.no_burst else worst_case_uploads(faces[0])
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or default_model(Path(tmp))
        runs = {name: run_server(name, model, args, faces, worst)
                for name in SERVERS if args.only in (None, name)}
    if "batched" in runs and "hostile" in runs["batched"]:
        print(f"hostile_ratio={runs['batched']['hostile']['ratio']:.2f}")
    if len(runs) == 2 and not args.no_burst and 8 in args.clients and "none" in args.explain:
        serial, batched = (runs[n]["cells"][("none", 8)]["rps"] for n in ("serial", "batched"))
        fivexx = sum(c["5xx"] for r in runs.values() for c in [*r["cells"].values(), r["burst"]])
        print(f"5xx in all cells: {fivexx} (goal 0); burst peak RSS "
              f"{runs['batched']['burst']['peak'] / 2**20:.0f} MB")
        print(f"ratio={batched / serial:.2f}")


if __name__ == "__main__":
    main()
