"""Decode untrusted uploads in worker processes with a hard memory cap and a time limit.

`images.load_image` bounds a decode's memory by checking headers first, but a decoder bug or
a format trick that slips past every check would otherwise cost the whole server (memory,
CPU time, or a crash). So `fakeface serve` never decodes an upload in its own process:
- `DecodePool` keeps `workers` small Python processes (numpy + Pillow, no TensorFlow: 0.2 s to
  start, ~30 MB resident). Each runs `load_image` on the bytes it is sent and sends back the
  RGB array (at most WORK_SIDE px on its longer side) or the ImageError it raised.
- Each worker caps its own address space (RLIMIT_AS) at its size after start-up plus
  `memory_mb` (by default `default_memory_mb`: what images.py lets one decode hold, plus the
  upload, the pixels sent back and some headroom). A decode that needs more fails inside the
  worker (MemoryError, or an allocation failure the decoder reports, told apart by errno
  ENOMEM) and is answered `DecodeLimitError` (413) naming the limit; the worker lives on.
- Workers run at a lower CPU priority (WORKER_NICE), so a stream of costly decodes slows the
  model's work for everyone else less.
- A decode that takes longer than `timeout`, or whose request is cancelled (request time-out,
  client gone), gets its worker killed (SIGKILL) and replaced; the slot comes back only once
  the old process is dead, so the work really stops. A worker that dies by itself (a decoder
  crash) answers `DecoderCrashError` (422) and is replaced.
- The protocol carries no pickles: raw bytes in, a small JSON header and raw pixels out, all
  length-checked, so even a compromised worker cannot run code in the server.
MTCNN and the classifier stay in the server process: a worker with TensorFlow and MTCNN
measured 830 MB resident and 6 s to start here, and detection's memory is bounded by its input
(<= WORK_SIDE px, shrunk to faces.DETECT_MAX_SIDE) and by the proposal cap in faces.py.
RLIMIT_AS is enforced on Linux; elsewhere the workers run uncapped (time limits still apply).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import ctypes
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import weakref
from multiprocessing.connection import Connection

import numpy as np

from fakeface_tf.core import memory
from fakeface_tf.data.images import (
    MAX_PIXELS,
    WORK_SIDE,
    CorruptImageError,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
    decode_bytes_bound,
    load_image,
)

log = logging.getLogger(__name__)
HEADER_BYTES = 4096  # the most a worker's JSON reply header may hold
# Errors a worker may report, by name (nothing else is ever instantiated from its reply).
REPORTABLE = {cls.__name__: cls for cls in (ImageError, EmptyImageError, NotAnImageError,
                                            CorruptImageError, ImageTooLargeError)}
WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}  # one thread: a small, fixed footprint
WORKER_NICE = 5  # CPU priority below the server's (0): under contention ~1/4 of a core's share
HEADROOM_MB = 64  # over a decode's own bound: the interpreter's allocations while it works


def default_memory_mb(max_bytes: int, max_pixels: int = MAX_PIXELS, max_side: int = WORK_SIDE) -> float:
    """Memory a decode worker needs for any upload images.py accepts: the decode's bound, the
    upload itself and the pixels it sends back, plus HEADROOM_MB."""
    return (decode_bytes_bound(max_pixels) + max_bytes + max_side * max_side * 3) / 2**20 + HEADROOM_MB


class DecodeLimitError(ImageTooLargeError):
    """Decoding needed more memory or time than a worker may use (413)."""


class DecoderCrashError(CorruptImageError):
    """The decoder died on this image (422); its worker was replaced."""


# ----------------------------------------------------------------------------- worker side


def _vm_size() -> int:
    """This process's address-space size in bytes (Linux), else 0."""
    try:
        with open("/proc/self/statm") as file:
            return int(file.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _cap_memory(memory_mb: float) -> int:
    """Cap this process's address space at its present size + memory_mb; the cap, or 0 if none."""
    try:
        import resource
    except ImportError:  # not a Unix
        return 0
    base = _vm_size()
    if not base:
        return 0
    cap = base + int(memory_mb * 2**20)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core file behind
    except (ValueError, OSError):
        return 0
    return cap


def _errno_cell():
    """glibc's thread-local errno, so a worker can tell an allocation failure (ENOMEM) that a
    decoder reported as "broken data" from truly broken data; None where unavailable."""
    try:
        location = ctypes.CDLL(None).__errno_location
    except (OSError, AttributeError):
        return None
    location.restype = ctypes.POINTER(ctypes.c_int)
    return location()


def _decode_reply(data: bytes, memory_mb: float, max_pixels: int, max_side: int, cell):
    """(header, pixels or None) for one upload, decoded under this worker's cap."""
    over = {"error": "DecodeLimitError",
            "message": f"image bytes: decoding needs more than the {memory_mb:.0f} MB a decode may use"}
    if cell is not None:
        cell[0] = 0
    try:
        image = np.ascontiguousarray(load_image(data, max_pixels=max_pixels, max_side=max_side))
    except MemoryError:
        return over, None
    except ImageError as exc:
        if isinstance(exc.__context__, MemoryError) or (cell is not None and cell[0] == errno.ENOMEM):
            return over, None
        return {"error": type(exc).__name__, "message": str(exc)[:1000]}, None
    return {"shape": list(image.shape)}, image


def worker_main(fd: int, memory_mb: float, max_pixels: int, max_side: int, max_bytes: int) -> None:
    """A decode worker's loop: read an upload, answer its pixels or its error, until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    with contextlib.suppress(OSError, AttributeError):
        os.nice(WORKER_NICE)
    conn = Connection(fd)
    cap = _cap_memory(memory_mb)
    cell = _errno_cell()
    conn.send_bytes(json.dumps({"ready": True, "capped": bool(cap)}).encode())
    while True:
        try:
            data = conn.recv_bytes(max_bytes)
        except (EOFError, OSError):
            return
        header, pixels = _decode_reply(data, memory_mb, max_pixels, max_side, cell)
        del data
        conn.send_bytes(json.dumps(header).encode())
        if pixels is not None:
            conn.send_bytes(memoryview(pixels).cast("B"))
        del pixels
        memory.release()


# ----------------------------------------------------------------------------- server side


class _Worker:
    """One decode process and the server's end of its socket."""

    def __init__(self, memory_mb: float, max_pixels: int, max_side: int, max_bytes: int):
        self.max_side, self.max_bytes = max_side, max_bytes
        ours, theirs = socket.socketpair()
        code = (f"from fakeface_tf.serving.isolation import worker_main; "
                f"worker_main({theirs.fileno()}, {memory_mb!r}, {max_pixels}, {max_side}, {max_bytes})")
        try:
            self.process = subprocess.Popen([sys.executable, "-c", code], pass_fds=[theirs.fileno()],
                                            stdin=subprocess.DEVNULL, env={**os.environ, **WORKER_ENV})
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.ready = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def decode(self, data: bytes) -> np.ndarray | ImageError:
        """The pixels or the ImageError for one upload; raises DecoderCrashError if it died."""
        try:
            if not self.ready:
                hello = json.loads(self.conn.recv_bytes(HEADER_BYTES))
                if not hello.get("capped") and sys.platform.startswith("linux"):
                    log.warning("decode worker %d runs without a memory cap", self.pid)
                self.ready = True
            self.conn.send_bytes(data)
            header = json.loads(self.conn.recv_bytes(HEADER_BYTES))
            if "error" in header:
                kind = DecodeLimitError if header["error"] == "DecodeLimitError" else REPORTABLE.get(header["error"])
                return (kind or CorruptImageError)(str(header.get("message", "undecodable image"))[:1000])
            height, width, channels = (int(v) for v in header["shape"])
            if not (0 < height <= self.max_side and 0 < width <= self.max_side and channels == 3):
                raise ValueError(f"bad shape {header['shape']}")
            pixels = self.conn.recv_bytes(height * width * 3)
            return np.frombuffer(pixels, np.uint8).reshape(height, width, 3)
        except (EOFError, OSError, ValueError, KeyError, TypeError):
            code = None
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self.process.wait(timeout=5)
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            raise DecoderCrashError(f"image bytes: the decoder failed on this image ({how}); "
                                    "it was refused") from None

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()

    def reap(self, call: concurrent.futures.Future | None = None) -> None:
        """Kill the process and wait until it is gone and `call` (its reader) has seen the
        end, then close our end of the socket."""
        self.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
        if call is not None:
            concurrent.futures.wait([call], timeout=30)
        self.conn.close()


class DecodePool:
    """`workers` capped decode processes; `await decode(data)` borrows one for one upload.

    At most `workers` uploads decode at once (the others wait, cancellably). Usable from any
    event loop, and from several (the slots are guarded by a thread lock, not an asyncio one).
    """

    def __init__(self, workers: int = 2, memory_mb: float | None = None, timeout: float = 20.0,
                 max_bytes: int = 64 * 2**20, max_pixels: int = MAX_PIXELS, max_side: int = WORK_SIDE):
        memory_mb = memory_mb or default_memory_mb(max_bytes, max_pixels, max_side)
        self.workers, self.memory_mb, self.timeout = workers, memory_mb, timeout
        self._spec = (memory_mb, max_pixels, max_side, max_bytes)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._waiters: collections.deque = collections.deque()
        self._started = self._closed = False
        self._calls = concurrent.futures.ThreadPoolExecutor(2 * workers, thread_name_prefix="fakeface-decode")
        self._finalizer = weakref.finalize(self, DecodePool._shutdown, self._idle, self._busy, self._calls)

    # --- lifecycle

    def start(self) -> None:
        """Start the workers (done on first use otherwise)."""
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
            self._idle.extend(_Worker(*self._spec) for _ in range(self.workers))

    def close(self) -> None:
        """Kill every worker; later decodes fail."""
        with self._lock:
            self._closed = True
            waiters = list(self._waiters)
            self._waiters.clear()
        for loop, future in waiters:
            loop.call_soon_threadsafe(_cancel, future)
        self._finalizer()

    @staticmethod
    def _shutdown(idle, busy, calls) -> None:
        for worker in [*idle, *busy]:
            worker.reap()
        idle.clear()
        calls.shutdown(wait=False, cancel_futures=True)

    def pids(self) -> list[int]:
        """The worker processes' ids (for tests and operators)."""
        with self._lock:
            return sorted(w.pid for w in [*self._idle, *self._busy])

    def available(self) -> int:
        """Workers ready for an upload now."""
        with self._lock:
            return len(self._idle)

    # --- slots

    async def _acquire(self) -> _Worker:
        self.start()
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._closed:
                raise RuntimeError("the decode pool is closed")
            if self._idle:
                worker = self._idle.pop()
                self._busy.add(worker)
                return worker
            future = loop.create_future()
            self._waiters.append((loop, future))
        try:
            return await future
        except asyncio.CancelledError:
            with self._lock:
                with contextlib.suppress(ValueError):
                    self._waiters.remove((loop, future))
            if future.done() and not future.cancelled():
                self._release(future.result())  # handed over just as we were cancelled
            raise

    def _release(self, worker: _Worker) -> None:
        """Give a live worker to the next waiter, else back to the idle list (any thread)."""
        with self._lock:
            self._busy.discard(worker)
            if self._closed:
                worker.reap()
                return
            while self._waiters:
                loop, future = self._waiters.popleft()
                if future.done() or loop.is_closed():
                    continue
                self._busy.add(worker)
                loop.call_soon_threadsafe(self._hand_over, future, worker)
                return
            self._idle.append(worker)

    def _hand_over(self, future: asyncio.Future, worker: _Worker) -> None:
        if future.done():  # its request gave up meanwhile: the next one gets the worker
            self._release(worker)
        else:
            future.set_result(worker)

    def _replace(self, worker: _Worker, call: concurrent.futures.Future) -> None:
        """Kill a worker now; its slot returns with a fresh worker once the old one is dead."""
        worker.kill()

        def respawn():
            worker.reap(call)
            with self._lock:
                self._busy.discard(worker)
                closed = self._closed
            if not closed:
                self._release(_Worker(*self._spec))

        threading.Thread(target=respawn, name="fakeface-decode-respawn", daemon=True).start()

    # --- work

    async def decode(self, data: bytes) -> np.ndarray:
        """RGB uint8 pixels of one upload, decoded in a capped worker; raises an ImageError."""
        worker = await self._acquire()
        call = self._calls.submit(worker.decode, data)
        try:
            async with asyncio.timeout(self.timeout):
                outcome = await asyncio.wrap_future(call)
        except TimeoutError:
            self._replace(worker, call)
            raise DecodeLimitError(f"image bytes: decoding took longer than the {self.timeout:g} s "
                                   "limit; the decode was stopped") from None
        except BaseException:  # cancelled (request timed out, client gone) or the worker died
            self._replace(worker, call)
            raise
        self._release(worker)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def decode_sync(self, data: bytes) -> np.ndarray:
        """`decode` for code without an event loop (one call at a time per thread)."""
        return asyncio.run(self.decode(data))


def _cancel(future: asyncio.Future) -> None:
    if not future.done():
        future.cancel()

