"""Reading an upload: the multipart body in memory under a hard size cap, and its text fields.

Nothing here trusts the client: the declared length is checked before reading, the bytes
received are counted while reading, and any value quoted back in an error is cut short.
"""

from __future__ import annotations

from fastapi import Request
from python_multipart import create_form_parser
from python_multipart.exceptions import FormParserError

from fakeface_tf.data.images import ACCEPTED
from fakeface_tf.serving.explanations import EXPLAIN_METHODS
from fakeface_tf.serving.refusals import BadUpload, UploadTooLarge, WrongMediaType

FORM_OVERHEAD = 64 * 1024  # multipart boundaries, part headers and the text fields
ECHO_CHARS = 64  # a value quoted back in an error is cut to this many characters
# What read_upload, parse_explain and parse_images accept, for /openapi.json: the route reads
# the body itself (under the caps above), so FastAPI cannot infer this from its parameters.
UPLOAD_FORM = {
    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {
            "file": {"type": "string", "format": "binary",
                     "description": f"the image: {ACCEPTED} (over the upload cap: 413)"},
            "explain": {"type": "string", "enum": ["none", *EXPLAIN_METHODS], "default": "none",
                        "description": "heatmap method, or none"},
            "images": {"type": "string", "enum": ["all", "none"], "default": "all",
                       "description": "all: the answer carries base64 PNGs (boxed, heatmap, "
                                      "overlay); none: the verdict only"},
        }}}}},
}


async def read_upload(request: Request, max_bytes: int) -> tuple[bytes, dict[str, str]]:
    """The `file` part's bytes and the text fields of a multipart request, all in memory.

    The body is refused from its Content-Length when that is over the cap, and reading stops
    as soon as more than cap + FORM_OVERHEAD bytes have arrived. A malformed body is 400, its
    reason in the request's one access-log line (python_multipart's own ERROR lines are
    silenced in create_app).
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
        raise BadUpload(f"malformed multipart body ({echo(str(exc))})") from None
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


def parse_explain(value: str | None) -> str | None:
    """The `explain` field: None for none or absent, else one of EXPLAIN_METHODS (400 if not)."""
    value = (value or "").strip().lower()
    if value in ("", "none"):
        return None
    if value not in EXPLAIN_METHODS:
        raise BadUpload(f"explain must be none or one of {', '.join(EXPLAIN_METHODS)}, got {echo(value)!r}")
    return value


def parse_images(value: str | None) -> bool:
    """The `images` field: whether the answer carries the PNGs (all, the default) or not (none)."""
    value = (value or "all").strip().lower()
    if value not in ("all", "none"):
        raise BadUpload(f"images must be all or none, got {echo(value)!r}")
    return value == "all"
