"""`fakeface serve`: the single-page web app and its JSON API (FastAPI + uvicorn).

`POST /api/v1/predict` takes a multipart `file` (and optional `explain` and `images` fields) and
answers the verdict, P(fake), threshold, face box and angle, the model's identity, and, unless
`images=none`, base64 PNGs: the original with the face box, the heatmap as a transparent layer,
and the blended overlay (`answers.py`). `/api/predict` and `/api/health` are the version-less
aliases of before, answering as before. For operators: `/api/v1/live` (the process answers),
`/api/v1/ready` (503 with the reasons while saturated), `/metrics` (Prometheus, metrics.py),
one access-log line per request (access.py), and unless `docs=False` the API described at
`/openapi.json`, `/docs` and `/redoc`.

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
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from fakeface_tf.serving.access import AccessLog
from fakeface_tf.serving.connections import protocol_class
from fakeface_tf.serving.guard import SECURITY_HEADERS, Guard
from fakeface_tf.serving.inference import Detector
from fakeface_tf.serving.limits import Limits
from fakeface_tf.serving.refusals import STATUS, add_refusal_handlers
from fakeface_tf.serving.service import Service
from fakeface_tf.serving.uploads import UPLOAD_FORM

STATIC = Path(__file__).parent / "static"
API_VERSION = "v1"
V1 = f"/api/{API_VERSION}"
OPENAPI_URL = "/openapi.json"
# /docs and /redoc load their scripts from jsDelivr and start them inline: their pages alone get
# this policy instead of the app's own (SECURITY_HEADERS), which allows neither.
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
            "font-src https://fonts.gstatic.com; img-src 'self' data: https:; worker-src blob:; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
REFUSAL = {"description": "refused, with the reason", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}, "status": {"type": "integer"},
                                     "model": {"type": "object"}}}}}}
PREDICT_DOC = {"openapi_extra": UPLOAD_FORM, "responses": {code: REFUSAL for code in sorted(set(STATUS.values()))}}


def create_app(model_path: str | Path | None = None, limits: Limits = Limits(),
               cors_origins: list[str] | None = None, detector: Detector | None = None,
               docs: bool = True) -> FastAPI:
    """The web app for one model (loaded once; pass `detector` to share a loaded one); with
    `docs`, the API described at /openapi.json, /docs and /redoc."""
    detector = detector or Detector.load(model_path)
    logging.getLogger("python_multipart").setLevel(logging.CRITICAL)  # read_upload reports these
    service = Service.for_detector(detector, limits)
    app = FastAPI(title="fakeface", version=API_VERSION, docs_url=None, redoc_url=None,
                  openapi_url=OPENAPI_URL if docs else None, lifespan=service.lifespan,
                  description="Tells real faces from StyleGAN faces. Model "
                              f"{service.identity['name']} (version {service.identity['version']}).")
    app.state.decoders = service.decoders
    app.state.identity = service.identity
    app.add_middleware(Guard, identity=service.identity)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["*"])
    app.add_middleware(AccessLog, metrics=service.metrics)  # outermost: sees every answer
    add_refusal_handlers(app)
    add_api_routes(app, service)
    add_ops_routes(app, service)
    if docs:
        add_doc_routes(app)
    add_page_routes(app)
    return app


def add_api_routes(app: FastAPI, service: Service) -> None:
    """The versioned JSON API, and the version-less aliases of before (answering as before)."""

    @app.post(f"{V1}/predict", summary="Verdict for one uploaded image", **PREDICT_DOC)
    async def predict(request: Request) -> dict:
        return {**await service.predict(request), "model": service.identity}

    @app.get(f"{V1}/health", summary="The model, its settings and the load right now")
    async def health() -> dict:
        return service.health()

    @app.post("/api/predict", deprecated=True, summary="Alias of /api/v1/predict, without `model`",
              **PREDICT_DOC)
    async def predict_unversioned(request: Request) -> dict:
        return await service.predict(request)

    @app.get("/api/health", deprecated=True, summary="Alias of /api/v1/health")
    async def health_unversioned() -> dict:
        return service.health()


def add_ops_routes(app: FastAPI, service: Service) -> None:
    """Liveness, readiness and Prometheus metrics."""

    @app.get(f"{V1}/live", summary="Whether the process answers")
    async def live() -> dict:
        return {"status": "alive", "model": service.identity}

    @app.get(f"{V1}/ready", summary="Whether the server takes more requests (503 with the reasons if not)",
             responses={503: {"description": "saturated: the reasons"}})
    async def ready() -> JSONResponse:
        reasons = service.readiness()
        body = {"status": "not ready" if reasons else "ready", "reasons": reasons,
                "pending": service.pending, "max_pending": service.limits.max_pending,
                "decoders_free": service.decoders.available(), "model": service.identity}
        return JSONResponse(body, status_code=503 if reasons else 200)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        body, content_type = service.metrics.exposition()
        return Response(body, media_type=content_type)


def add_doc_routes(app: FastAPI) -> None:
    """Swagger UI at /docs and ReDoc at /redoc, each with the policy its page needs."""

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        page = get_swagger_ui_html(openapi_url=OPENAPI_URL, title="fakeface API")
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(openapi_url=OPENAPI_URL, title="fakeface API")
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page


def add_page_routes(app: FastAPI) -> None:
    """The page with its static files."""

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
