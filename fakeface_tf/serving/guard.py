"""What every response of the web app carries, and what a crash turns into.

Security headers, an X-Request-ID and the model's name and version (X-Model-Name,
X-Model-Version) go on every response; a bug becomes a generic 500 that names the request id,
which the log line with the traceback also carries.
"""

from __future__ import annotations

import logging
import uuid

from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders

log = logging.getLogger("fakeface.serve")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def _ascii(value) -> str:
    return str(value).encode("ascii", "replace").decode("ascii")


class Guard:
    """ASGI middleware: a request id, security headers and the model's identity on every
    response, and a crash turned into a generic 500 that names the request id the log line
    also carries."""

    def __init__(self, app, identity: dict | None = None):
        self.app, self.identity = app, identity
        self.model_headers = {} if identity is None else {  # header values must be Latin-1
            "X-Model-Name": _ascii(identity["name"]), "X-Model-Version": _ascii(identity["version"])}

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
                for name, value in self.model_headers.items():
                    headers[name] = value
            await send(message)

        try:
            await self.app(scope, receive, send_guarded)
        except Exception:  # noqa: BLE001 - the one place a bug becomes a 500
            log.exception("request %s (%s %s) failed", request_id, scope.get("method"), scope.get("path"))
            if not started:
                body = {"error": f"internal error; quote request id {request_id} when reporting it",
                        "status": 500, "request_id": request_id, "model": self.identity}
                await JSONResponse(body, status_code=500)(scope, receive, send_guarded)
