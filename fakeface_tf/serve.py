"""`fakeface serve`: the single-page web app and its JSON API (FastAPI + uvicorn).

`POST /api/predict` takes a multipart `file` (and an optional `explain` field) and answers
the verdict, P(fake), threshold, face box and angle, and base64 PNGs: the original with the
face box, the heatmap as a transparent layer, and the blended overlay. Uploads are parsed in
memory (never spooled to disk) with a hard size cap; bad input is answered 400/413/415/422
with a reason. Inference runs in a worker thread (one image at a time through TensorFlow,
serialised by the Detector's lock), so `/api/health` answers while an explanation runs.
"""

from __future__ import annotations

import argparse
import base64
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from python_multipart import create_form_parser
from python_multipart.exceptions import FormParserError

from fakeface_tf.errors import FakefaceError
from fakeface_tf.faces import CorruptImageError, EmptyImageError, ImageTooLargeError, NotAnImageError
from fakeface_tf.inference import EXPLAIN_METHODS, Detector, to_png

STATIC = Path(__file__).parent / "static"
FORM_OVERHEAD = 64 * 1024  # multipart boundaries, part headers and the explain field
DISPLAY_SIDE = 1024  # images sent back to the page are shrunk to this longer side


class UploadTooLarge(FakefaceError):
    """The request body or file exceeds the upload cap (413)."""


class BadUpload(FakefaceError):
    """The request is not a usable multipart upload (400)."""


class WrongMediaType(FakefaceError):
    """The request body is not multipart/form-data (415)."""


STATUS = {
    UploadTooLarge: 413,
    ImageTooLargeError: 413,
    WrongMediaType: 415,
    NotAnImageError: 415,
    BadUpload: 400,
    EmptyImageError: 400,
    CorruptImageError: 422,
}


def status_for(exc: FakefaceError) -> int:
    """HTTP status of a FakefaceError: its most specific entry in STATUS, else 422."""
    return next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 422)


async def read_upload(request: Request, max_bytes: int) -> tuple[bytes, dict[str, str]]:
    """The `file` part's bytes and the text fields of a multipart request, all in memory.

    The body is refused from its Content-Length when that is over the cap, and reading stops
    as soon as more than cap + FORM_OVERHEAD bytes have arrived.
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
        raise BadUpload(f"malformed multipart body ({exc})") from None
    if "file" not in files:
        raise BadUpload("no file uploaded: send the image in a multipart field named 'file'")
    data = files["file"].file_object.getvalue()
    if len(data) > max_bytes:
        raise too_large
    return data, fields


def _name(part) -> str:
    return (part.field_name or b"").decode("utf-8", "replace")


def _b64(png: bytes | None) -> str | None:
    return None if png is None else base64.b64encode(png).decode("ascii")


def predict_payload(detector: Detector, data: bytes, explain: str | None) -> dict:
    """The JSON answer for one upload: the verdict plus base64 PNGs for the page."""
    result = detector.predict(data, explain=explain)
    heat = result.heatmap_rgba(max_side=DISPLAY_SIDE)
    blended = result.overlay(max_side=DISPLAY_SIDE)
    return {
        **result.to_dict(),
        "images": {
            "boxed": _b64(to_png(result.boxed(DISPLAY_SIDE))),
            "heatmap": _b64(None if heat is None else to_png(heat)),
            "overlay": _b64(None if blended is None else to_png(blended)),
        },
    }


def _parse_explain(value: str | None) -> str | None:
    value = (value or "").strip().lower()
    if value in ("", "none"):
        return None
    if value not in EXPLAIN_METHODS:
        raise BadUpload(f"explain must be none or one of {', '.join(EXPLAIN_METHODS)}, got {value!r}")
    return value


def create_app(model_path: str | Path | None = None, max_upload_mb: float = 10,
               cors_origins: list[str] | None = None, detector: Detector | None = None) -> FastAPI:
    """The web app for one model (loaded once; pass `detector` to share a loaded one)."""
    detector = detector or Detector.load(model_path)
    max_bytes = int(max_upload_mb * 2**20)
    app = FastAPI(title="fakeface", docs_url=None, redoc_url=None, openapi_url=None)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["*"])

    @app.exception_handler(FakefaceError)
    async def fakeface_error(request: Request, exc: FakefaceError) -> JSONResponse:
        code = status_for(exc)
        return JSONResponse({"error": str(exc), "status": code}, status_code=code)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: still answer in words the page can show (traceback is logged).
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}", "status": 500},
                            status_code=500)

    @app.get("/api/health")
    async def health() -> dict:
        return {
            "status": "ok",
            "model": str(detector.model.path),
            "threshold": detector.threshold,
            "image_size": detector.model.image_size,
            "explain_methods": list(detector.explain_methods),
            "max_upload_mb": max_upload_mb,
        }

    @app.post("/api/predict")
    async def predict(request: Request) -> dict:
        data, fields = await read_upload(request, max_bytes)
        explain = _parse_explain(fields.get("explain"))
        return await run_in_threadpool(predict_payload, detector, data, explain)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="run folder, saved_models/ entry, .keras file or SavedModel "
                        "(default: saved_models/reference)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-upload-mb", type=float, default=10.0, help="upload cap, answered 413")
    parser.add_argument("--cors", action="append", metavar="ORIGIN",
                        help="allow this origin cross-site (repeatable; CORS is off by default)")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    detector = Detector.load(args.model)
    detector.warmup()
    app = create_app(max_upload_mb=args.max_upload_mb, cors_origins=args.cors, detector=detector)
    print(f"fakeface: serving {detector.model.path} on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
