"""`fakeface serve` as a real process under hostile clients: connection caps that idle sockets
cannot exhaust, decode workers with a hard memory cap that are killed when their request times
out or is abandoned, no `server` header, short echoes, quiet logs (issue #22)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import httpx
import psutil
import pytest

from fakeface_tf.serving.batcher import Batcher
from fakeface_tf.serving.guard import SECURITY_HEADERS
from fakeface_tf.serving.limits import Limits
from fakeface_tf.serving.serve import create_app
from fakeface_tf.serving.uploads import ECHO_CHARS

from conftest import free_port
from hostile_uploads import many_faces, png, progressive_bomb, tall_thin_png

with warnings.catch_warnings():  # starlette's notice that it prefers httpx2 to httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

DECODE_MB, DECODE_S, PER_CLIENT, HEAD_S = 64, 3, 16, 2
GOAL_EXTRA_RSS = 1.5 * 2**30  # an attack may cost the server at most this over idle


def _anon_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("RssAnon:"))
    except (OSError, StopIteration):
        return 0


def _is_worker(process: psutil.Process) -> bool:
    try:
        return "worker_main" in " ".join(process.cmdline())
    except (psutil.ZombieProcess, psutil.NoSuchProcess):
        return False


class Server:
    """A `fakeface serve` subprocess on loopback, its log in a file."""

    def __init__(self, model: Path, log: Path, *options: str):
        self.port, self.log = free_port(), log
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fakeface_tf.cli", "serve", "--model", str(model), "--port",
                 str(self.port), *options], stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 180
        while not self.ready():
            assert self.process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.3)

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/api/health", timeout=2).json()["decoders_ready"] > 0
        except (httpx.HTTPError, ValueError):
            return False

    def health(self) -> dict:
        return httpx.get(self.url + "/api/health", timeout=30).json()

    def workers(self) -> list[psutil.Process]:
        """Live decode workers; a killed one not yet reaped (a zombie) or already gone is skipped."""
        return [c for c in psutil.Process(self.process.pid).children() if _is_worker(c)]

    def tree_rss(self) -> int:
        """Anonymous RSS (the project's memory measure) of the server and its decode workers."""
        return sum(_anon_rss(pid) for pid in [self.process.pid, *(p.pid for p in self.workers())])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tiny_keras_model, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    served = Server(tiny_keras_model, log, "--decode-memory-mb", str(DECODE_MB), "--decode-timeout",
                    str(DECODE_S), "--max-per-client", str(PER_CLIENT), "--header-timeout", str(HEAD_S))
    yield served
    served.stop()


def post(url: str, data: bytes, timeout: float = 60, **fields) -> httpx.Response:
    return httpx.post(url + "/api/predict", files={"file": ("upload", data, "image/png")},
                      data={"images": "none", **fields}, timeout=timeout)


def _assert_guarded(headers) -> None:
    """Security headers present, and nothing names the server software."""
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name
    assert "server" not in {k.lower() for k in headers.keys()}


def _raw_headers(answer: bytes) -> dict[str, str]:
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in head)}


def _half_open(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /api/hea")  # half a request line, never finished
    return sock


def _unfinished_upload(port: int) -> socket.socket:
    """A connection whose request head is in and whose body never comes: busy, not idle."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                 b"boundary=abc\r\nContent-Length: 100000\r\n\r\n--abc\r\n")
    return sock


class RssPeak(threading.Thread):
    """Samples the server's anonymous RSS (with its decode workers) every 20 ms; keeps the peak."""

    def __init__(self, server: Server):
        super().__init__(daemon=True)
        self.server, self.peak, self.done = server, 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.peak = max(self.peak, self.server.tree_rss())
            except psutil.Error:
                pass
            time.sleep(0.02)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.join()


def _wait_for(condition, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.slow
def test_no_response_names_the_server_and_all_carry_security_headers(server, face_bytes):
    responses = [httpx.get(server.url + "/"), httpx.get(server.url + "/api/health"),
                 post(server.url, face_bytes), post(server.url, b"")]
    assert [r.status_code for r in responses] == [200, 200, 200, 400]
    for response in responses:
        _assert_guarded(response.headers)


def _client_port(response: httpx.Response) -> int:
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


def test_with_100_half_open_sockets_held_a_new_client_is_still_served(server, face_bytes):
    with httpx.Client(timeout=60) as kept:
        first = kept.get(server.url + "/api/health")  # a kept-alive connection, answered once
        sockets = [_half_open(server.port) for _ in range(100)]
        try:
            response = post(server.url, face_bytes, timeout=30)  # a new client
            again = kept.get(server.url + "/api/health")
            ports = _client_port(first), _client_port(again)
        finally:
            for sock in sockets:
                sock.close()
    assert response.status_code == 200, response.text
    assert response.json()["verdict"] in ("real face", "fake face", "not a face")
    _assert_guarded(response.headers)
    # Half-open sockets gave way to each other, not to the client that was being served.
    assert again.status_code == 200 and ports[0] == ports[1]


def test_a_client_whose_connections_are_all_busy_gets_503_with_retry_after(server):
    busy = [_unfinished_upload(server.port) for _ in range(PER_CLIENT)]
    try:
        time.sleep(0.5)  # every one of them has a request head in: none may give way
        response = httpx.get(server.url + "/api/health", timeout=30)
    finally:
        for sock in busy:
            sock.close()
    assert response.status_code == 503 and int(response.headers["retry-after"]) >= 1
    _assert_guarded(response.headers)
    assert _wait_for(lambda: httpx.get(server.url + "/api/health").status_code == 200)


@pytest.mark.slow
def test_a_request_head_that_never_ends_is_closed_with_408(server):
    sock = _half_open(server.port)
    sock.settimeout(HEAD_S + 30)
    try:
        answer = sock.recv(4096)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    _assert_guarded(_raw_headers(answer))


def test_a_decode_over_the_memory_cap_is_413_naming_it_and_stays_within_it(server):
    data = png("RGB", (5000, 7000))  # 35 MP: at least 140 MB of pixels to decode, in 150 KB
    pids = sorted(p.pid for p in server.workers())
    # The cap is on address space (RLIMIT_AS): each worker's size at start-up + DECODE_MB.
    base = max(p.memory_info().vms for p in server.workers())
    peaks = []

    def watch():
        while not stop.is_set():
            with contextlib.suppress(psutil.Error):
                peaks.extend(p.memory_info().vms for p in server.workers())
            time.sleep(0.01)

    stop = threading.Event()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        response = post(server.url, data)
    finally:
        stop.set()
        watcher.join()
    assert response.status_code == 413, response.text
    assert f"more than the {DECODE_MB} MB a decode may use" in response.json()["error"]
    assert max(peaks) <= base + DECODE_MB * 2**20
    assert sorted(p.pid for p in server.workers()) == pids  # the worker lived on


def _stop_workers(server: Server) -> list[psutil.Process]:
    workers = server.workers()
    for worker in workers:
        worker.send_signal(signal.SIGSTOP)
    return workers


def _resume(workers: list[psutil.Process]) -> None:
    for worker in workers:
        if worker.is_running():
            worker.send_signal(signal.SIGCONT)


@pytest.mark.slow
def test_a_decode_past_its_time_limit_gets_413_and_its_worker_is_replaced(server, face_bytes):
    stopped = _stop_workers(server)  # no decode can finish now
    try:
        response = post(server.url, face_bytes)
    finally:
        _resume(stopped)
    assert response.status_code == 413 and f"longer than the {DECODE_S} s limit" in response.json()["error"]
    old = {p.pid for p in stopped}
    assert _wait_for(lambda: server.health()["decoders_ready"] == 2)
    new = {p.pid for p in server.workers()}
    assert len(old - new) == 1 and len(new - old) == 1  # the stuck one was killed and replaced
    assert post(server.url, face_bytes).status_code == 200


def test_an_abandoned_request_kills_its_worker(server, face_bytes):
    stopped = _stop_workers(server)
    old = {p.pid for p in stopped}
    try:
        with pytest.raises(httpx.TimeoutException):
            post(server.url, face_bytes, timeout=1.0)  # the client gives up and hangs up
        assert _wait_for(lambda: len(old - {p.pid for p in server.workers()}) == 1)
    finally:
        _resume(stopped)
    assert _wait_for(lambda: server.health()["decoders_ready"] == 2)
    assert "disconnected before its answer; its work was stopped" in server.log.read_text()


ATTACKS = {  # name: (make the upload from the sample folder, the statuses it may get)
    "progressive JPEG bomb": (lambda root: progressive_bomb(), (413,)),
    "tall thin PNG": (lambda root: tall_thin_png(), (413,)),
    "many faces": (lambda root: many_faces(root / "faces" / "real"), (200,)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", ATTACKS)
def test_each_attack_alone_is_answered_without_5xx_within_its_memory_goal(server, sample_root, name):
    make, statuses = ATTACKS[name]
    data = make(sample_root)
    idle = server.tree_rss()
    with RssPeak(server) as rss:
        response = post(server.url, data)
    assert response.status_code in statuses, response.text
    assert rss.peak <= idle + GOAL_EXTRA_RSS


def test_a_malformed_body_is_one_info_line_in_the_log(server):
    before = server.log.read_text()
    response = httpx.post(server.url + "/api/predict", content=b"--abc\r\ngarbage",
                          headers={"content-type": "multipart/form-data; boundary=zzz"})
    assert response.status_code == 400
    time.sleep(0.5)
    new = server.log.read_text()[len(before):].splitlines()
    assert len(new) == 1 and " INFO " in new[0] and "malformed multipart body" in new[0], new


def test_after_all_that_the_server_log_holds_no_error_and_no_traceback(server):
    log = server.log.read_text()
    assert " ERROR " not in log and "Traceback" not in log, log[-3000:]


def test_an_echoed_field_is_cut_short(detector, face_bytes):
    client = TestClient(create_app(detector=detector))
    response = client.post("/api/predict", files={"file": ("a.jpg", face_bytes, "image/jpeg")},
                           data={"explain": "x" * 100_000})
    assert response.status_code == 400
    error = response.json()["error"]
    assert "x" * (ECHO_CHARS - 1) + "\u2026" in error and "x" * ECHO_CHARS not in error
    assert len(response.content) < 400


def test_a_request_timeout_kills_its_decode_worker(detector, face_bytes):
    app = create_app(detector=detector, limits=Limits(request_timeout=1.0, decode_timeout=60))
    with TestClient(app) as client:
        pool = app.state.decoders
        old = pool.pids()
        stopped = [psutil.Process(pid) for pid in old]
        for worker in stopped:
            worker.send_signal(signal.SIGSTOP)
        try:
            response = client.post("/api/predict", files={"file": ("a.jpg", face_bytes, "image/jpeg")})
        finally:
            _resume(stopped)
        assert response.status_code == 503 and "retry-after" in response.headers
        assert _wait_for(lambda: pool.available() == 2)
        assert len(set(old) - set(pool.pids())) == 1


def test_heavy_items_do_not_hold_up_waiting_light_ones():
    """After a heavy batch of t seconds, waiting light items get 2t (heavy_share 1/3) first."""
    order, gate = [], threading.Event()

    def run(items):
        for item in items:
            if item == "gate":
                gate.wait(10)
            time.sleep(0.5 if item.startswith("H") else 0.01)
            order.append(item)
        return enumerate(items)

    batcher = Batcher(run, max_batch=1, max_wait=0)
    futures = [batcher.submit("gate")]
    time.sleep(0.2)  # the worker is now held by the gate, so everything below queues up
    for item in ("H1", "L1", "L2", "H2", "L3", "L4"):
        futures.append(batcher.submit(item, heavy=item.startswith("H")))
    gate.set()
    for future in futures:
        future.result(30)
    batcher.close()
    assert order == ["gate", "H1", "L1", "L2", "L3", "L4", "H2"]
