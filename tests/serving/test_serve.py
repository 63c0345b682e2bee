"""Web API: verdicts with overlays, and a clear 4xx (never a 500) for every kind of bad upload."""

from __future__ import annotations

import base64
import io
import warnings

import pytest
from PIL import Image

with warnings.catch_warnings():  # starlette's notice that it prefers httpx2 to httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from fakeface_tf.cli import build_parser
from fakeface_tf.cli.serve import serve_limits
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.serving.connections import protocol_class
from fakeface_tf.serving.limits import ConnectionLimits, Limits
from fakeface_tf.serving.serve import create_app


@pytest.fixture(scope="module")
def client(detector) -> TestClient:
    return TestClient(create_app(limits=Limits(max_upload_mb=1), detector=detector))


def _post(client, data: bytes, name="upload.jpg", explain="none"):
    return client.post("/api/predict", files={"file": (name, data, "image/jpeg")},
                       data={"explain": explain})


def _decode_png(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert image.format == "PNG"
    return image


def test_health_reports_model_and_methods(client):
    body = client.get("/api/health").json()
    assert body["status"] == "ok" and body["image_size"] == 64
    assert body["explain_methods"] == ["gradcam++", "smoothgrad", "scorecam"]


def test_index_page_and_its_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="drop"' in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_face_upload_returns_verdict_box_and_overlays(client, detector, face_bytes):
    response = _post(client, face_bytes, explain="gradcam++")
    assert response.status_code == 200
    body = response.json()
    assert body["verdict"] in ("real face", "fake face")
    assert body["probability"] == pytest.approx(detector.predict(face_bytes).probability, abs=1e-6)
    assert body["threshold"] == 0.5
    assert len(body["box"]) == 4 and isinstance(body["angle"], float)
    assert body["explain"] == "gradcam++"
    boxed = _decode_png(body["images"]["boxed"])
    heat = _decode_png(body["images"]["heatmap"])
    assert boxed.size == heat.size == (256, 256) and heat.mode == "RGBA"
    assert _decode_png(body["images"]["overlay"]).size == (256, 256)


def test_nonface_upload_says_not_a_face_with_reason(client, sample_root):
    data = sorted((sample_root / "nonface").glob("*.jpg"))[0].read_bytes()
    body = _post(client, data, explain="scorecam").json()
    assert body["verdict"] == "not a face" and body["probability"] is None
    assert body["face_reason"]
    assert body["images"]["heatmap"] is None and body["images"]["boxed"]


def _png_bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8000, 8000)).save(buffer, format="PNG")  # 64 MP in ~60 KB
    return buffer.getvalue()


@pytest.mark.parametrize("case, make, status, words", [
    ("too big", lambda face: face + b"\0" * (2 * 2**20), 413, "limit"),
    ("text file", lambda face: b"hello, I am a text file\n" * 10, 415, "not an image"),
    ("zero bytes", lambda face: b"", 400, "empty"),
    ("corrupt jpeg", lambda face: face[: len(face) // 2], 422, "corrupt"),
    ("decompression bomb", lambda face: _png_bomb(), 413, "megapixels"),
])
def test_bad_upload_gets_status_and_reason_and_server_keeps_serving(client, face_bytes, case, make,
                                                                     status, words):
    response = _post(client, make(face_bytes), explain="gradcam++")
    assert response.status_code == status, response.text
    assert words in response.json()["error"]
    assert client.get("/api/health").status_code == 200
    assert _post(client, face_bytes).status_code == 200


def test_oversized_content_length_is_refused_before_reading(client):
    response = client.post("/api/predict", content=b"x" * 100,
                           headers={"content-type": "multipart/form-data; boundary=abc",
                                    "content-length": str(50 * 2**20)})
    assert response.status_code == 413


@pytest.mark.parametrize("kwargs, status", [
    ({"content": b"raw bytes", "headers": {"content-type": "application/octet-stream"}}, 415),
    ({"files": {"image": ("a.jpg", b"x", "image/jpeg")}}, 400),
    ({"files": {"file": ("a.jpg", b"x", "image/jpeg")}, "data": {"explain": "magic"}}, 400),
])
def test_malformed_requests_are_explained(client, kwargs, status):
    response = client.post("/api/predict", **kwargs)
    assert response.status_code == status and response.json()["error"]


def test_cors_is_off_unless_configured(detector):
    origin = {"Origin": "http://elsewhere.example"}
    closed = TestClient(create_app(detector=detector)).get("/api/health", headers=origin)
    assert "access-control-allow-origin" not in closed.headers
    opened = TestClient(create_app(detector=detector, cors_origins=["http://elsewhere.example"]))
    allowed = opened.get("/api/health", headers=origin)
    assert allowed.headers["access-control-allow-origin"] == "http://elsewhere.example"


def test_serve_options_become_the_server_limits_and_a_nonpositive_one_is_refused():
    args = build_parser("serve").parse_args(["serve", "--max-pending", "3", "--max-per-client", "2"])
    assert serve_limits(args) == Limits(max_pending=3, connections=ConnectionLimits(max_per_client=2))
    zero = build_parser("serve").parse_args(["serve", "--decode-timeout", "0"])
    with pytest.raises(FakefaceError, match="--decode-timeout must be positive, got 0.0"):
        serve_limits(zero)


def test_each_server_counts_its_connections_apart():
    limits = ConnectionLimits(max_per_client=2)
    first, second = protocol_class(limits, {"X-A": "1"}), protocol_class(limits, {"X-B": "2"})
    assert first.registry is not second.registry
    assert first.connection_limits is limits and first.security_headers == {"X-A": "1"}
