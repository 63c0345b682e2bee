"""The service's conventions for operators (issue #26): the API described at /openapi.json,
versioned routes carrying the model's identity, Prometheus metrics, one access-log line per
request, and live/ready probes that say not-ready when saturated."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import warnings

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fakeface_tf.cli import build_parser
from fakeface_tf.serving.limits import Limits
from fakeface_tf.serving.serve import create_app

from conftest import free_port, live_server

with warnings.catch_warnings():  # starlette's notice that it prefers httpx2 to httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def client(detector):
    with TestClient(create_app(detector=detector)) as client:  # `with`: decode workers started
        yield client


def _post(client, data: bytes, path="/api/v1/predict", name="upload.jpg"):
    return client.post(path, files={"file": (name, data, "image/jpeg")}, data={"images": "none"})


def _samples(client) -> dict[tuple[str, tuple], float]:
    """Every sample of a /metrics scrape: (name, sorted labels) -> value."""
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def test_openapi_describes_the_predict_upload_and_docs_pages_are_served(client):
    paths = client.get("/openapi.json").json()["paths"]
    body = paths["/api/v1/predict"]["post"]["requestBody"]
    schema = body["content"]["multipart/form-data"]["schema"]
    assert body["required"] and schema["required"] == ["file"]
    assert schema["properties"]["file"] == {**schema["properties"]["file"], "type": "string", "format": "binary"}
    assert schema["properties"]["explain"]["enum"] == ["none", "gradcam++", "smoothgrad", "scorecam"]
    assert {"413", "415", "503"} <= set(paths["/api/v1/predict"]["post"]["responses"])
    assert paths["/api/predict"]["post"]["deprecated"] and "requestBody" in paths["/api/predict"]["post"]
    assert {"/api/v1/health", "/api/v1/live", "/api/v1/ready"} <= set(paths)
    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 200 and "/openapi.json" in response.text
        assert "https://cdn.jsdelivr.net" in response.headers["content-security-policy"]
    assert "cdn.jsdelivr.net" not in client.get("/").headers["content-security-policy"]


def test_no_docs_turns_the_description_off(detector):
    bare = TestClient(create_app(detector=detector, docs=False))
    assert [bare.get(page).status_code for page in ("/openapi.json", "/docs", "/redoc")] == [404] * 3
    assert build_parser("serve").parse_args(["serve", "--no-docs"]).no_docs
    assert not build_parser("serve").parse_args(["serve"]).no_docs


@pytest.mark.slow
def test_v1_answers_carry_the_model_and_the_old_paths_answer_as_before(client, face_bytes):
    model = client.get("/api/v1/health").json()["model"]
    assert set(model) >= {"name", "version"} and client.get("/api/health").json()["model"] == model
    versioned, old = _post(client, face_bytes), _post(client, face_bytes, "/api/predict")
    assert versioned.status_code == old.status_code == 200
    assert versioned.json() == {**old.json(), "model": model}
    refused = client.post("/api/v1/predict", content=b"raw", headers={"content-type": "text/plain"})
    assert refused.status_code == 415 and refused.json()["model"] == model
    assert client.get("/api/v1/live").json() == {"status": "alive", "model": model}
    for response in (versioned, old, refused, client.get("/nowhere")):
        assert response.headers["x-model-name"] == model["name"]
        assert response.headers["x-model-version"] == model["version"]


@pytest.mark.slow
def test_metrics_count_requests_latency_batches_and_queue(detector, face_bytes):
    with TestClient(create_app(detector=detector)) as fresh:
        assert _post(fresh, face_bytes).status_code == 200
        assert fresh.post("/api/v1/predict", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
        fresh.get("/static/app.js")
        fresh.get("/no/such/page")
        samples = _samples(fresh)
    route = ("route", "/api/v1/predict")
    assert samples["fakeface_http_requests_total", (("method", "POST"), route, ("status", "200"))] == 1
    assert samples["fakeface_http_requests_total", (("method", "POST"), route, ("status", "415"))] == 1
    assert samples["fakeface_http_requests_total", (("method", "GET"), ("route", "/static"), ("status", "200"))] == 1
    assert samples["fakeface_http_requests_total", (("method", "GET"), ("route", "unmatched"), ("status", "404"))] == 1
    assert samples["fakeface_http_request_duration_seconds_count", (route,)] == 2
    assert samples["fakeface_batch_size_count", ()] == 1 and samples["fakeface_batch_size_sum", ()] == 1
    assert samples["fakeface_pending_requests", ()] == 0
    assert samples["fakeface_decoders_free", ()] == Limits().decode_workers
    (verdict,) = [labels for name, labels in samples if name == "fakeface_verdicts_total"]
    assert verdict[0][1] in ("real face", "fake face")


def _hold_a_request(url: str) -> socket.socket:
    """A predict request that has sent its head and part of its body, so it stays in flight."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                 b"boundary=abc\r\nContent-Length: 100000\r\n\r\n--abc\r\n"
                 b'Content-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n\xff\xd8')
    return sock


def test_ready_says_not_ready_at_the_pending_cap_and_503s_are_counted(detector, face_bytes):
    with live_server(create_app(detector=detector, limits=Limits(max_pending=1))) as url:
        assert httpx.get(url + "/api/v1/ready").json()["status"] == "ready"
        held = _hold_a_request(url)
        try:
            deadline = time.monotonic() + 10
            while (ready := httpx.get(url + "/api/v1/ready")).status_code == 200:
                assert time.monotonic() < deadline, ready.text
                time.sleep(0.05)
            assert ready.status_code == 503 and ready.json()["status"] == "not ready"
            assert ready.json()["pending"] == 1 and "--max-pending cap" in ready.json()["reasons"][0]
            assert httpx.get(url + "/api/v1/live").status_code == 200
            assert httpx.get(url + "/api/health").json()["status"] == "ok"  # as before
            assert _post(httpx, face_bytes, f"{url}/api/v1/predict").status_code == 503
        finally:
            held.close()
        with httpx.Client(base_url=url) as scraper:
            samples = _samples(scraper)
    assert samples["fakeface_busy_refusals_total", (("reason", "max_pending"),)] == 1
    assert samples["fakeface_http_requests_total",
                   (("method", "POST"), ("route", "/api/v1/predict"), ("status", "503"))] == 1


def test_ready_says_not_ready_while_no_decode_worker_is_free(detector):
    idle = TestClient(create_app(detector=detector))  # no lifespan: the workers never started
    response = idle.get("/api/v1/ready")
    assert response.status_code == 503 and response.json()["reasons"] == ["no decode worker free (of 2)"]


def test_each_request_is_one_access_line_with_id_route_status_and_verdict(client, face_bytes, caplog):
    with caplog.at_level(logging.INFO, logger="fakeface.serve.access"):
        answer = _post(client, face_bytes, name="private-name.jpg")
        refused = client.post("/api/v1/predict", content=b"x", headers={"content-type": "text/plain"})
    records = [r for r in caplog.records if r.name == "fakeface.serve.access"]
    lines = [r.getMessage() for r in records]
    assert len(lines) == 2 and all(r.levelno == logging.INFO for r in records)
    verdict = answer.json()["verdict"]
    assert lines[0].startswith(f"request {answer.headers['x-request-id']} testclient POST /api/v1/predict 200 ")
    assert lines[0].endswith(f" ms verdict={verdict!r}")
    assert lines[1].startswith(f"request {refused.headers['x-request-id']} testclient POST /api/v1/predict 415 ")
    assert "reason=" in lines[1] and "multipart/form-data" in lines[1]
    assert not any("private-name" in line for line in lines)


@pytest.mark.slow
def test_the_serve_command_writes_the_access_lines_to_its_log(tiny_keras_model, face_bytes, tmp_path):
    port, log = free_port(), tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "fakeface_tf.cli", "serve", "--model",
                                   str(tiny_keras_model), "--port", str(port), "--no-docs"],
                                  stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(url + "/api/v1/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        answer = _post(httpx, face_bytes, url + "/api/v1/predict")
        assert answer.status_code == 200 and httpx.get(url + "/docs").status_code == 404
        time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=30)
    lines = [line for line in log.read_text().splitlines() if "fakeface.serve.access" in line]
    assert any(f"request {answer.headers['x-request-id']} 127.0.0.1 POST /api/v1/predict 200 " in line
               and " INFO " in line and "verdict=" in line for line in lines), lines
