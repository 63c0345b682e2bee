"""One access-log line and the request metrics for every request the web app answers.

The line names the request id (also in the X-Request-ID header), the client address, method,
route (the matched route's template, never the raw path: a client cannot write into the log
through it), status, duration, the verdict of a predict answer and the reason of a refusal.
Never the image or any other content of the upload.
"""

from __future__ import annotations

import logging
import time

from starlette.routing import Match

from fakeface_tf.serving.metrics import Metrics

log = logging.getLogger("fakeface.serve.access")
UNMATCHED = "unmatched"  # the route label of a request no route took (404s), so labels stay few


def route_of(scope, arrived) -> str:
    """The template of the route that took the request (its mount path for static files).

    FastAPI notes its own routes in the scope; the others (/openapi.json, the static mount) are
    matched again here against the scope as it `arrived`, before routing rewrote its paths.
    """
    route = scope.get("route")
    if route is None:
        routes = getattr(arrived.get("app"), "routes", ())
        route = next((r for r in routes if r.matches(arrived)[0] is Match.FULL), None)
    return getattr(route, "path", None) or UNMATCHED


class AccessLog:
    """ASGI middleware, outside Guard (so it sees Guard's 500s and the request id Guard set)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, arrived = time.perf_counter(), dict(scope)
        status = None

        async def send_noted(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noted)
        finally:
            self._record(scope, arrived, status, time.perf_counter() - started)

    def _record(self, scope, arrived, status: int | None, seconds: float) -> None:
        route, method = route_of(scope, arrived), scope.get("method", "?")
        self.metrics.observe(route, method, status or "none", seconds)
        state = scope.get("state", {})
        client = (scope.get("client") or ["-"])[0]
        line = (f"request {state.get('request_id', '-')} {client} {method} {route} {status or '-'} "
                f"{seconds * 1e3:.1f} ms")
        if "verdict" in state:
            line += f" verdict={state['verdict']!r}"
        if "reason" in state:
            line += f" reason={state['reason']!r}"
        log.info("%s", line)
