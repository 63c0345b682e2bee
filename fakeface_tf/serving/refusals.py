"""Why the web app refuses a request, and the HTTP status each reason is answered with.

Every refusal is a FakefaceError (the project's one error type), so a reason found deep in
decoding (images.py) and one found while reading the upload are answered the same way:
`{"error": reason, "status": code, "model": {...}}`, with Retry-After when the server is busy.
The reason also goes into the request's access-log line (access.py).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data.images import CorruptImageError, EmptyImageError, ImageTooLargeError, NotAnImageError

log = logging.getLogger("fakeface.serve")


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


async def refused(request: Request, exc: FakefaceError) -> JSONResponse:
    """The JSON answer for a refused request: the reason, its status and the model's identity."""
    code = status_for(exc)
    request.state.reason = str(exc)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, ServerBusy) else None
    body = {"error": str(exc), "status": code, "model": getattr(request.app.state, "identity", None)}
    return JSONResponse(body, status_code=code, headers=headers)


async def gone_during_upload(request: Request, exc: ClientDisconnect) -> Response:
    log.info("request %s: client disconnected during upload", request.state.request_id)
    request.state.reason = "client disconnected during upload"
    return Response(status_code=400)  # nobody is listening any more


async def gone_before_answer(request: Request, exc: ClientGone) -> Response:
    log.info("request %s: client disconnected before its answer; its work was stopped",
             request.state.request_id)
    request.state.reason = "client disconnected before its answer"
    return Response(status_code=400)


def add_refusal_handlers(app: FastAPI) -> None:
    """Answer every FakefaceError with its status, and a client that left with one log line."""
    app.add_exception_handler(FakefaceError, refused)
    app.add_exception_handler(ClientDisconnect, gone_during_upload)
    app.add_exception_handler(ClientGone, gone_before_answer)
