"""`fakeface serve`: the single-page web app and its JSON API (FastAPI + uvicorn).

`POST /api/predict` takes a multipart `file` (and optional `explain` and `images` fields) and
answers the verdict, P(fake), threshold, face box and angle, and, unless `images=none`,
base64 PNGs: the original with the face box, the heatmap as a transparent layer, and the
blended overlay (`answers.py`).

Built to hold up under hostile uploads and load (the settings are `limits.Limits`):
- connections: a request head must arrive within `header_timeout`, and idle sockets give way
  to new clients under the per-client and total connection caps (`connections.py`);
- uploads are parsed in memory with a hard size cap and a time limit on reading the body
  (`uploads.py`);
- at most `max_pending` requests are in flight; the next one gets 503 with Retry-After
  (`service.py`);
- images are decoded by `images.load_image` (the one decode function, bounded memory) in
  `decode_workers` worker processes, each with a hard memory cap and a time limit, killed and
  replaced when their request times out or its client leaves (`isolation.py`); the RGB arrays
  they return are micro-batched through MTCNN and the model in this process (`batcher.py`);
- bad input is answered 400/408/413/415/422 with a reason (values echoed back are cut to
  ECHO_CHARS), a client that hangs up is one log line, and a crash is a generic 500 whose
  request id is also in the log (`refusals.py`, `guard.py`);
- every response carries security headers and an X-Request-ID, and none names the server.
"""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from fakeface_tf.serving.connections import protocol_class
from fakeface_tf.serving.guard import SECURITY_HEADERS, Guard
from fakeface_tf.serving.inference import Detector
from fakeface_tf.serving.limits import Limits
from fakeface_tf.serving.refusals import add_refusal_handlers
from fakeface_tf.serving.service import Service

STATIC = Path(__file__).parent / "static"


def create_app(model_path: str | Path | None = None, limits: Limits = Limits(),
               cors_origins: list[str] | None = None, detector: Detector | None = None) -> FastAPI:
    """The web app for one model (loaded once; pass `detector` to share a loaded one)."""
    detector = detector or Detector.load(model_path)
    logging.getLogger("python_multipart").setLevel(logging.CRITICAL)  # read_upload logs these once
    service = Service.for_detector(detector, limits)
    app = FastAPI(title="fakeface", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=service.lifespan)
    app.state.decoders = service.decoders
    app.add_middleware(Guard)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["*"])
    add_refusal_handlers(app)
    add_routes(app, service)
    return app


def add_routes(app: FastAPI, service: Service) -> None:
    """The JSON API and the page with its static files."""

    @app.get("/api/health")
    async def health() -> dict:
        return service.health()

    @app.post("/api/predict")
    async def predict(request: Request) -> dict:
        return await service.predict(request)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def server_config(app, limits: Limits, host: str = "127.0.0.1", port: int = 8000) -> uvicorn.Config:
    """uvicorn's settings for `app`: the guarded h11 protocol, no `server` header, no
    concurrency cap of uvicorn's own (idle sockets counted in it: see connections.py)."""
    return uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_keep_alive=5,
                          http=protocol_class(limits.connections, SECURITY_HEADERS), server_header=False)


def run_server(app, limits: Limits, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve `app` until interrupted."""
    uvicorn.Server(server_config(app, limits, host, port)).run()
