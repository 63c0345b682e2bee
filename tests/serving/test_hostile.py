"""The server under hostile uploads and load: exact statuses, no 5xx, no traceback, nothing on
disk, backpressure, time limits, quiet disconnects, security headers, micro-batching."""

from __future__ import annotations

import io
import logging
import random
import socket
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from PIL import Image

from fakeface_tf.data import images
from fakeface_tf.serving.batcher import Batcher
from fakeface_tf.serving.serve import Limits, create_app

from conftest import live_server

with warnings.catch_warnings():  # starlette's notice that it prefers httpx2 to httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _small_images() -> dict[str, bytes]:
    """Tiny valid images of every accepted format and mode, and of formats that are refused."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (24, 32, 3), np.uint8))
    deep = Image.fromarray(rng.integers(0, 65535, (24, 32), np.uint16))
    accepted = {
        "jpeg": _encode(rgb, "JPEG"), "jpeg-gray": _encode(rgb.convert("L"), "JPEG"),
        "jpeg-cmyk": _encode(rgb.convert("CMYK"), "JPEG"), "png": _encode(rgb, "PNG"),
        "png-rgba": _encode(rgb.convert("RGBA"), "PNG"), "png-p": _encode(rgb.convert("P"), "PNG"),
        "png-16": _encode(deep, "PNG"), "webp": _encode(rgb, "WEBP"), "bmp": _encode(rgb, "BMP"),
        "gif": _encode(rgb.convert("P"), "GIF"),
        "gif-animated": _encode(rgb.convert("P"), "GIF", save_all=True,
                                append_images=[rgb.rotate(90).convert("P")]),
        "tiff": _encode(rgb, "TIFF"), "tiff-16": _encode(deep, "TIFF"),
        "tiff-float": _encode(Image.fromarray(rng.random((24, 32), np.float32) * 255), "TIFF"),
    }
    refused = {fmt.lower(): _encode(rgb, fmt) for fmt in ("PPM", "SGI", "IM", "TGA", "PCX")}
    return {**accepted, **refused}


def _mutate(data: bytes, rng: random.Random) -> bytes:
    """One random corruption: flipped bytes, a cut, an insertion, or a header field overwritten."""
    data = bytearray(data)
    kind = rng.randrange(4)
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 1:
        del data[rng.randrange(1, len(data)):]
    elif kind == 2:
        at = rng.randrange(len(data))
        data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
    else:
        at = rng.randrange(min(len(data), 64))
        data[at:at + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\x00\x01"])
    return bytes(data)


def test_fuzzed_images_decode_or_raise_an_image_error():
    """2,400 seeded mutations of every format: each decodes to RGB uint8 within the size
    limits or raises one of the ImageErrors the server answers 4xx; nothing else escapes."""
    rng = random.Random(13)
    seeds = list(_small_images().items())
    outcomes = {"decoded": 0, "refused": 0}
    for case in range(2400):
        name, data = seeds[case % len(seeds)]
        mutated = _mutate(data, rng)
        try:
            image = images.load_image(mutated)
        except images.ImageError:
            outcomes["refused"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - this is what the test hunts for
            pytest.fail(f"case {case} ({name}): {type(exc).__name__}: {exc}")
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, (case, name)
        assert max(image.shape[:2]) <= images.WORK_SIDE
        outcomes["decoded"] += 1
    assert min(outcomes.values()) > 200, outcomes  # both paths are really exercised


def test_fuzzed_uploads_never_get_a_5xx(detector):
    rng = random.Random(7)
    seeds = list(_small_images().values())
    client = TestClient(create_app(detector=detector), raise_server_exceptions=False)
    statuses = set()
    for case in range(150):
        data = _mutate(seeds[case % len(seeds)], rng)
        response = client.post("/api/predict", files={"file": ("x", data, "image/png")},
                               data={"images": "none"})
        assert response.status_code < 500, (case, response.text)
        assert "Traceback" not in response.text
        statuses.add(response.status_code)
    assert {200, 415, 422} <= statuses


def _png_bomb(side: int = 8000) -> bytes:
    return _encode(Image.new("L", (side, side)), "PNG")  # 64 MP in ~60 KB


def _sixteen_bit(face: bytes) -> bytes:
    rgb = cv2.imdecode(np.frombuffer(face, np.uint8), cv2.IMREAD_COLOR)
    return cv2.imencode(".png", rgb.astype(np.uint16) * 257)[1].tobytes()


HOSTILE = {  # name: (make bytes from a face JPEG, status, words in the error)
    "bad ppm header": (lambda face: b"P6\n64 x\n255\n", 415, "not an image"),
    "valid ppm": (lambda face: _encode(Image.new("RGB", (64, 64)), "PPM"), 415, "PPM images are not accepted"),
    "text": (lambda face: b"hello, I am a text file\n" * 10, 415, "holds text"),
    "zero bytes": (lambda face: b"", 400, "empty"),
    "truncated jpeg": (lambda face: face[: len(face) // 2], 422, "corrupt or truncated JPEG"),
    "png with broken data": (lambda face: _encode(Image.open(io.BytesIO(face)), "PNG")[:200] + b"\0" * 500,
                             422, "PNG"),
    "gif header only": (lambda face: b"GIF89a\x10\x00\x10\x00", 422, "GIF"),
    "png bomb": (lambda face: _png_bomb(), 413, "megapixels"),
    "oversized upload": (lambda face: face + b"\0" * (11 * 2**20), 413, "limit"),
    "16-bit png": (lambda face: _sixteen_bit(face), 200, None),
    "huge jpeg": (lambda face: _encode(Image.open(io.BytesIO(face)).resize((9000, 9000)), "JPEG"), 200, None),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_upload_gets_its_exact_status_and_writes_nothing(detector, face_bytes, name, tmp_path,
                                                                  monkeypatch):
    make, status, words = HOSTILE[name]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    client = TestClient(create_app(detector=detector), raise_server_exceptions=False)
    response = client.post("/api/predict", files={"file": ("upload", make(face_bytes), "image/jpeg")})
    assert response.status_code == status, response.text
    if words:
        assert words in response.json()["error"]
    assert list(tmp_path.iterdir()) == []


def test_every_response_carries_security_headers_and_a_request_id(detector, face_bytes):
    client = TestClient(create_app(detector=detector))
    responses = [client.get("/"), client.get("/static/app.js"), client.get("/api/health"),
                 client.post("/api/predict", files={"file": ("a", b"", "image/jpeg")})]
    ids = set()
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'self'" in response.headers["content-security-policy"]
        ids.add(response.headers["x-request-id"])
    assert len(ids) == len(responses)


def test_health_names_the_model_without_its_path(detector):
    body = TestClient(create_app(detector=detector)).get("/api/health").json()
    assert str(detector.model.path.parent) not in str(body)
    assert body["model"]["name"] == detector.model.root.name
    assert len(body["model"]["version"]) == 12


def test_a_crash_is_a_generic_500_whose_request_id_is_logged(detector, face_bytes, monkeypatch, caplog):
    def broken(images):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(detector, "score_images", broken)
    client = TestClient(create_app(detector=detector), raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="fakeface.serve"):
        response = client.post("/api/predict", files={"file": ("a.jpg", face_bytes, "image/jpeg")})
    assert response.status_code == 500
    body = response.json()
    assert "secret" not in response.text and body["request_id"] == response.headers["x-request-id"]
    assert any(body["request_id"] in record.getMessage() for record in caplog.records)


def test_verdict_only_answer_has_no_images(detector, face_bytes):
    client = TestClient(create_app(detector=detector))
    body = client.post("/api/predict", files={"file": ("a.jpg", face_bytes, "image/jpeg")},
                       data={"images": "none"}).json()
    assert body["verdict"] in ("real face", "fake face") and "images" not in body


def _blocking(detector, monkeypatch) -> threading.Event:
    """Make the model wait until the returned event is set (a server busy with one batch)."""
    release, score = threading.Event(), detector.score_images

    def slow(images):
        release.wait(30)
        return score(images)

    monkeypatch.setattr(detector, "score_images", slow)
    return release


def test_a_full_queue_answers_503_with_retry_after(detector, face_bytes, monkeypatch):
    release = _blocking(detector, monkeypatch)
    with TestClient(create_app(detector=detector, limits=Limits(max_pending=2))) as client:
        def upload():
            return client.post("/api/predict", files={"file": ("a.jpg", face_bytes, "image/jpeg")},
                               data={"images": "none"})

        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(upload) for _ in range(2)]
            time.sleep(1.0)
            refused = upload()
            release.set()
            assert [f.result().status_code for f in held] == [200, 200]
    assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
    assert "busy" in refused.json()["error"]


@pytest.mark.slow
def test_a_request_that_takes_too_long_answers_503(detector, face_bytes, monkeypatch):
    release = _blocking(detector, monkeypatch)
    with TestClient(create_app(detector=detector, limits=Limits(request_timeout=0.5))) as client:
        response = client.post("/api/predict", files={"file": ("a.jpg", face_bytes, "image/jpeg")})
    release.set()
    assert response.status_code == 503 and "retry-after" in response.headers


def _open_upload(url: str, declared: int = 100_000) -> socket.socket:
    """A connection that has sent the headers and the start of a multipart body, no more."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                 b"boundary=abc\r\nContent-Length: " + str(declared).encode() + b"\r\n\r\n--abc\r\n"
                 b'Content-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n\xff\xd8')
    return sock


def test_a_slow_upload_is_cut_off_with_408(detector):
    with live_server(create_app(detector=detector, limits=Limits(body_timeout=1.0))) as url:
        sock = _open_upload(url)
        sock.settimeout(0.2)
        started, answer = time.monotonic(), b""
        while not answer and time.monotonic() - started < 10:
            try:
                sock.sendall(b"x")  # 5 bytes a second
                answer = sock.recv(4096)
            except socket.timeout:
                pass
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert 1.0 <= time.monotonic() - started < 5


def test_a_client_that_hangs_up_mid_upload_is_one_quiet_log_line(detector, caplog):
    with caplog.at_level(logging.INFO):
        with live_server(create_app(detector=detector)) as url:
            _open_upload(url).close()
            time.sleep(1.0)
    ours = [r.getMessage() for r in caplog.records if r.name == "fakeface.serve"]
    assert len(ours) == 1 and "disconnected during upload" in ours[0]
    assert not [r for r in caplog.records if r.exc_info or "Exception in ASGI" in r.getMessage()]


def test_concurrent_requests_share_a_batch_and_get_their_own_verdicts(detector, sample_root, monkeypatch):
    paths = sorted((sample_root / "faces" / "real").glob("*.jpg"))[:3]
    paths += sorted((sample_root / "faces" / "fake").glob("*.jpg"))[:3]
    batches, score, gate = [], detector.score_images, threading.Event()

    def counted(images):
        batches.append(list(images))
        gate.wait(30)  # the first batch holds the model until every request has arrived
        return score(images)

    monkeypatch.setattr(detector, "score_images", counted)
    limits = Limits(max_wait_ms=500)  # a wide window, so the waiting requests share a batch
    with TestClient(create_app(detector=detector, limits=limits)) as client:
        with ThreadPoolExecutor(len(paths)) as pool:
            sent = [pool.submit(lambda p: client.post(
                "/api/predict", files={"file": (p.name, p.read_bytes(), "image/jpeg")},
                data={"images": "none"}).json(), p) for p in paths]
            deadline = time.monotonic() + 30
            while (client.get("/api/health").json()["pending"] < len(paths)
                   and time.monotonic() < deadline):
                time.sleep(0.05)
            gate.set()
            bodies = [f.result() for f in sent]
    assert max(len(batch) for batch in batches) > 1
    # MTCNN's boxes depend slightly on which images share its batch, so each answer is checked
    # against its own image rescored in the very batch the server formed.
    rescored = {image.tobytes(): result.probability
                for batch in batches for image, result in zip(batch, score(batch))}
    expected = [rescored[images.load_image(p).tobytes()] for p in paths]
    assert [b["probability"] for b in bodies] == pytest.approx(expected, abs=1e-5)


def test_one_failing_item_fails_only_its_own_request():
    def run(items):
        if "bad" in items:
            raise ValueError("bad item")
        return enumerate(item.upper() for item in items)

    batcher = Batcher(run, max_wait=0.2)
    futures = [batcher.submit(item) for item in ("a", "bad", "c")]
    assert futures[0].result(5) == "A" and futures[2].result(5) == "C"
    with pytest.raises(ValueError, match="bad item"):
        futures[1].result(5)
    batcher.close()


def test_a_cancelled_request_is_never_run():
    ran, gate = [], threading.Event()

    def run(items):
        gate.wait(5)
        ran.extend(items)
        return enumerate(items)

    batcher = Batcher(run, max_batch=1)
    first, second = batcher.submit("first"), batcher.submit("second")
    assert second.cancel()
    gate.set()
    assert first.result(5) == "first"
    batcher.close()
    assert ran == ["first"]


def test_large_images_are_shrunk_on_decode_to_bound_memory():
    wide = _encode(Image.new("RGB", (6000, 300), (10, 20, 30)), "PNG")
    image = images.load_image(wide)
    assert image.shape == (102, images.WORK_SIDE, 3) and (image == (10, 20, 30)).all()
