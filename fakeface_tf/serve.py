"""`fakeface serve`: the single-page web app and its JSON API (FastAPI + uvicorn).

`POST /api/predict` takes a multipart `file` (and optional `explain` and `images` fields) and
answers the verdict, P(fake), threshold, face box and angle, and, unless `images=none`,
base64 PNGs: the original with the face box, the heatmap as a transparent layer, and the
blended overlay.

Built to hold up under hostile uploads and load:
- connections: a request head must arrive within `header_timeout`, and idle sockets give way
  to new clients under the per-client and total connection caps (`connections.py`);
- uploads are parsed in memory with a hard size cap and a time limit on reading the body;
- at most `max_pending` requests are in flight; the next one gets 503 with Retry-After;
- images are decoded by `images.load_image` (the one decode function, bounded memory) in
  `decode_workers` worker processes, each with a hard memory cap and a time limit, killed and
  replaced when their request times out or its client leaves (`isolation.py`); the RGB arrays
  they return are micro-batched through MTCNN and the model in this process;
- bad input is answered 400/408/413/415/422 with a reason (values echoed back are cut to
  ECHO_CHARS), a client that hangs up is one log line, and a crash is a generic 500 whose
  request id is also in the log;
- every response carries security headers and an X-Request-ID, and none names the server.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import logging
import math
import uuid
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from python_multipart import create_form_parser
from python_multipart.exceptions import FormParserError
from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect

from fakeface_tf import memory
from fakeface_tf.batcher import Batcher
from fakeface_tf.connections import ConnectionLimits, protocol_class
from fakeface_tf.errors import FakefaceError
from fakeface_tf.images import CorruptImageError, EmptyImageError, ImageTooLargeError, NotAnImageError
from fakeface_tf.inference import EXPLAIN_METHODS, Detector, to_png
from fakeface_tf.isolation import DecodePool

log = logging.getLogger("fakeface.serve")
STATIC = Path(__file__).parent / "static"
FORM_OVERHEAD = 64 * 1024  # multipart boundaries, part headers and the text fields
DISPLAY_SIDE = 1024  # images sent back to the page are shrunk to this longer side
ECHO_CHARS = 64  # a value quoted back in an error is cut to this many characters
# Images above this many pixels go through MTCNN in the batcher's heavy lane (batcher.py):
# searching a large photo takes seconds, a face-sized one milliseconds.
HEAVY_PIXELS = 640 * 640
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@dataclass
class Limits:
    """What one server accepts and how much it takes on at once (`fakeface serve` options)."""

    max_upload_mb: float = 10.0  # larger uploads: 413
    max_pending: int = 32  # requests in flight (reading, queued or running); more: 503
    body_timeout: float = 30.0  # seconds to receive the whole upload; slower: 408
    request_timeout: float = 60.0  # seconds from arrival to answer; longer: 503
    decode_workers: int = 2  # worker processes decoding uploads, so uploads decoded at once
    # Memory each decode worker may take on, a hard cap (more: 413); None: what any upload
    # images.py accepts needs (isolation.default_memory_mb, ~350 MB for 10 MB uploads).
    decode_memory_mb: float | None = None
    decode_timeout: float = 20.0  # seconds one decode may take; longer: its worker is killed, 413
    max_batch: int = 8  # images per pass through MTCNN and the model (16 holds ~350 MB more)
    max_wait_ms: float = 5.0  # how long an idle server waits to fill a batch
    connections: ConnectionLimits = ConnectionLimits()  # head time-out, connection caps


class UploadTooLarge(FakefaceError):
    """The request body or file exceeds the upload cap (413)."""


class BadUpload(FakefaceError):
    """The request is not a usable multipart upload (400)."""


class WrongMediaType(FakefaceError):
    """The request body is not multipart/form-data (415)."""


class UploadTimeout(FakefaceError):
    """The body did not arrive within the time limit (408)."""


class ClientGone(Exception):
    """The client hung up while its request was being decoded or scored."""


class ServerBusy(FakefaceError):
    """Too many requests in flight, or no answer in time (503 with Retry-After)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


STATUS = {
    UploadTooLarge: 413,
    ImageTooLargeError: 413,
    WrongMediaType: 415,
    NotAnImageError: 415,
    BadUpload: 400,
    EmptyImageError: 400,
    UploadTimeout: 408,
    ServerBusy: 503,
    CorruptImageError: 422,
}


def status_for(exc: FakefaceError) -> int:
    """HTTP status of a FakefaceError: its most specific entry in STATUS, else 422."""
    return next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 422)


async def read_upload(request: Request, max_bytes: int) -> tuple[bytes, dict[str, str]]:
    """The `file` part's bytes and the text fields of a multipart request, all in memory.

    The body is refused from its Content-Length when that is over the cap, and reading stops
    as soon as more than cap + FORM_OVERHEAD bytes have arrived. A malformed body is one INFO
    line in the log (python_multipart's own ERROR lines are silenced in create_app).
    """
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise WrongMediaType("send the image as multipart/form-data in a field named 'file'")
    limit = max_bytes + FORM_OVERHEAD
    too_large = UploadTooLarge(f"upload is larger than the {max_bytes / 2**20:g} MB limit")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large

    files, fields = {}, {}
    received = 0
    try:
        parser = create_form_parser(
            {"Content-Type": content_type.encode("latin-1")},
            on_field=lambda f: fields.__setitem__(_name(f), (f.value or b"").decode("utf-8", "replace")),
            on_file=lambda f: files.__setitem__(_name(f), f),
            config={"MAX_MEMORY_FILE_SIZE": float("inf")},  # keep every part in memory
        )
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise too_large
            parser.write(chunk)
        parser.finalize()
    except (FormParserError, ValueError) as exc:
        reason = echo(str(exc))
        log.info("request %s: malformed multipart body (%s)", request.state.request_id, reason)
        raise BadUpload(f"malformed multipart body ({reason})") from None
    if "file" not in files:
        raise BadUpload("no file uploaded: send the image in a multipart field named 'file'")
    data = files["file"].file_object.getvalue()
    if len(data) > max_bytes:
        raise too_large
    return data, fields


def echo(value: str) -> str:
    """A client's value as an error message may quote it: cut to ECHO_CHARS characters."""
    return value if len(value) <= ECHO_CHARS else value[: ECHO_CHARS - 1] + "…"


def _name(part) -> str:
    return (part.field_name or b"").decode("utf-8", "replace")


def _b64(png: bytes | None) -> str | None:
    return None if png is None else base64.b64encode(png).decode("ascii")


def payload(result, with_images: bool = True) -> dict:
    """The JSON answer for one verdict, with base64 PNGs for the page unless told not to."""
    answer = result.to_dict()
    if with_images:
        heat = result.heatmap_rgba(max_side=DISPLAY_SIDE)
        blended = result.overlay(max_side=DISPLAY_SIDE)
        answer["images"] = {
            "boxed": _b64(to_png(result.boxed(DISPLAY_SIDE))),
            "heatmap": _b64(None if heat is None else to_png(heat)),
            "overlay": _b64(None if blended is None else to_png(blended)),
        }
    return answer


def _parse_explain(value: str | None) -> str | None:
    value = (value or "").strip().lower()
    if value in ("", "none"):
        return None
    if value not in EXPLAIN_METHODS:
        raise BadUpload(f"explain must be none or one of {', '.join(EXPLAIN_METHODS)}, got {echo(value)!r}")
    return value


def _parse_images(value: str | None) -> bool:
    value = (value or "all").strip().lower()
    if value not in ("all", "none"):
        raise BadUpload(f"images must be all or none, got {echo(value)!r}")
    return value == "all"


async def _disconnected(request: Request) -> None:
    """Return once the client has hung up (its body has been read: nothing else can come)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work):
    """The result of awaiting `work`, which is cancelled (stopping its decode worker or taking
    it out of the batch queue) if the client hangs up first or this request is cancelled."""
    task, gone = asyncio.ensure_future(work), asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    if task.cancelled():
        raise ClientGone()
    return task.result()


def model_identity(detector: Detector) -> dict:
    """The loaded model's name, architecture and content hash: what it is, not where it lives."""
    model = detector.model
    weights = model.path if model.path.is_file() else model.path / "saved_model.pb"
    digest = hashlib.sha256()
    with open(weights, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return {"name": model.root.name, "architecture": model.config.model.name if model.config else None,
            "version": digest.hexdigest()[:12]}


class Guard:
    """ASGI middleware: a request id and security headers on every response, and a crash
    turned into a generic 500 that names the request id the log line also carries."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = uuid.uuid4().hex[:12]
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_guarded(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                headers["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_guarded)
        except Exception:  # noqa: BLE001 - the one place a bug becomes a 500
            log.exception("request %s (%s %s) failed", request_id, scope.get("method"), scope.get("path"))
            if not started:
                body = {"error": f"internal error; quote request id {request_id} when reporting it",
                        "status": 500, "request_id": request_id}
                await JSONResponse(body, status_code=500)(scope, receive, send_guarded)


def _predict_batch(detector: Detector):
    """The batcher's work: score the whole batch at once, then explain the items that asked."""

    def run(items: list[tuple]):
        results = detector.score_images([image for image, _ in items])
        explained = [i for i, (_, explain) in enumerate(items) if explain and results[i].face.ok]
        for i in range(len(items)):
            if i not in explained:
                yield i, results[i]
        for i in explained:
            yield i, detector.explain(results[i], items[i][1])
        memory.release()

    return run


def create_app(model_path: str | Path | None = None, limits: Limits = Limits(),
               cors_origins: list[str] | None = None, detector: Detector | None = None) -> FastAPI:
    """The web app for one model (loaded once; pass `detector` to share a loaded one)."""
    detector = detector or Detector.load(model_path)
    logging.getLogger("python_multipart").setLevel(logging.CRITICAL)  # read_upload logs these once
    identity = model_identity(detector)
    max_bytes = int(limits.max_upload_mb * 2**20)
    batcher = Batcher(_predict_batch(detector), limits.max_batch, limits.max_wait_ms / 1000)
    decoders = DecodePool(limits.decode_workers, limits.decode_memory_mb, limits.decode_timeout,
                          max_bytes=max_bytes)
    pending = 0

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        decoders.start()
        yield
        batcher.close()
        decoders.close()

    app = FastAPI(title="fakeface", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.decoders = decoders
    app.add_middleware(Guard)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["*"])

    def retry_after() -> int:
        return max(1, math.ceil(pending * batcher.seconds_per_item))

    @app.exception_handler(FakefaceError)
    async def fakeface_error(request: Request, exc: FakefaceError) -> JSONResponse:
        code = status_for(exc)
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, ServerBusy) else None
        return JSONResponse({"error": str(exc), "status": code}, status_code=code, headers=headers)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        log.info("request %s: client disconnected during upload", request.state.request_id)
        return Response(status_code=400)  # nobody is listening any more

    @app.exception_handler(ClientGone)
    async def client_left(request: Request, exc: ClientGone) -> Response:
        log.info("request %s: client disconnected before its answer; its work was stopped",
                 request.state.request_id)
        return Response(status_code=400)

    @app.get("/api/health")
    async def health() -> dict:
        return {
            "status": "ok",
            "model": identity,
            "threshold": detector.threshold,
            "image_size": detector.model.image_size,
            "explain_methods": list(detector.explain_methods),
            "max_upload_mb": limits.max_upload_mb,
            "pending": pending,
            "decoders_ready": decoders.available(),
        }

    async def verdict(data: bytes, explain: str | None):
        image = await decoders.decode(data)
        heavy = image.shape[0] * image.shape[1] > HEAVY_PIXELS
        return await asyncio.wrap_future(batcher.submit((image, explain), heavy))

    @app.post("/api/predict")
    async def predict(request: Request) -> dict:
        nonlocal pending
        if pending >= limits.max_pending:
            raise ServerBusy(f"server busy: {pending} requests in flight; retry later", retry_after())
        pending += 1
        try:
            async with asyncio.timeout(limits.request_timeout):
                try:
                    async with asyncio.timeout(limits.body_timeout):
                        data, fields = await read_upload(request, max_bytes)
                except TimeoutError:
                    raise UploadTimeout(f"the upload took longer than {limits.body_timeout:g} s") from None
                explain = _parse_explain(fields.get("explain"))
                with_images = _parse_images(fields.get("images"))
                result = await unless_disconnected(request, verdict(data, explain))
                del data
                return await run_in_threadpool(payload, result, with_images)
        except TimeoutError:
            raise ServerBusy(f"server busy: no answer within {limits.request_timeout:g} s; retry later",
                             retry_after()) from None
        finally:
            pending -= 1

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def add_arguments(parser: argparse.ArgumentParser) -> None:
    default = Limits()
    parser.add_argument("--model", help="run folder, saved_models/ entry, .keras file or SavedModel "
                        "(default: saved_models/reference)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-upload-mb", type=float, default=default.max_upload_mb,
                        help="upload cap, answered 413 (default: %(default)s)")
    parser.add_argument("--max-pending", type=int, default=default.max_pending,
                        help="requests in flight before new ones get 503 (default: %(default)s)")
    parser.add_argument("--body-timeout", type=float, default=default.body_timeout,
                        help="seconds to receive an upload, else 408 (default: %(default)s)")
    parser.add_argument("--request-timeout", type=float, default=default.request_timeout,
                        help="seconds to answer a request, else 503 (default: %(default)s)")
    parser.add_argument("--decode-workers", type=int, default=default.decode_workers,
                        help="worker processes decoding uploads, so decodes at once "
                             "(default: %(default)s)")
    parser.add_argument("--decode-memory-mb", type=float, default=default.decode_memory_mb,
                        help="memory each decode worker may use, a hard cap; a decode needing more "
                             "is 413 (default: what any accepted upload needs, ~350 MB)")
    parser.add_argument("--decode-timeout", type=float, default=default.decode_timeout,
                        help="seconds one decode may take; longer: its worker is killed and the "
                             "upload gets 413 (default: %(default)s)")
    parser.add_argument("--max-batch", type=int, default=default.max_batch,
                        help="images per pass through MTCNN and the model (default: %(default)s)")
    connections = default.connections
    parser.add_argument("--header-timeout", type=float, default=connections.header_timeout,
                        help="seconds for a request head to arrive, else the connection is closed "
                             "(default: %(default)s)")
    parser.add_argument("--max-connections", type=int, default=connections.max_connections,
                        help="open connections in all; over it, idle ones are closed, else 503 "
                             "(default: %(default)s)")
    parser.add_argument("--max-per-client", type=int, default=connections.max_per_client,
                        help="open connections per client address; raise it behind a proxy "
                             "(default: %(default)s)")
    parser.add_argument("--cors", action="append", metavar="ORIGIN",
                        help="allow this origin cross-site (repeatable; CORS is off by default)")


def server_config(app, limits: Limits, host: str = "127.0.0.1", port: int = 8000):
    """uvicorn's settings for `app`: the guarded h11 protocol, no `server` header, no
    concurrency cap of uvicorn's own (idle sockets counted in it: see connections.py)."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_keep_alive=5,
                          http=protocol_class(limits.connections, SECURITY_HEADERS), server_header=False)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    connections = ConnectionLimits(header_timeout=args.header_timeout, max_connections=args.max_connections,
                                   max_per_client=args.max_per_client)
    limits = Limits(max_upload_mb=args.max_upload_mb, max_pending=args.max_pending,
                    body_timeout=args.body_timeout, request_timeout=args.request_timeout,
                    decode_workers=args.decode_workers, decode_memory_mb=args.decode_memory_mb,
                    decode_timeout=args.decode_timeout, max_batch=args.max_batch, connections=connections)
    for name in ("max_upload_mb", "max_pending", "body_timeout", "request_timeout", "decode_workers",
                 "decode_memory_mb", "decode_timeout", "max_batch", "header_timeout", "max_connections",
                 "max_per_client"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise FakefaceError(f"--{name.replace('_', '-')} must be positive, got {value}")
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    memory.tame_malloc()
    detector = Detector.load(args.model)
    detector.warmup(limits.max_batch)
    app = create_app(limits=limits, cors_origins=args.cors, detector=detector)
    print(f"fakeface: serving {detector.model.root.name} on http://{args.host}:{args.port}/ "
          f"({limits.decode_workers} decode workers of {app.state.decoders.memory_mb:.0f} MB, "
          f"{limits.max_pending} requests at once)", flush=True)
    uvicorn.Server(server_config(app, limits, args.host, args.port)).run()
    return 0
