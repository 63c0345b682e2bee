"""The "uncertain" verdict: a face whose P(fake) lies in the model's band (conformal.json beside
it) gets no real/fake verdict, in `fakeface predict`, its predictions.csv and the JSON API; with
no band file nothing changes, and a band that excludes P(fake) leaves the threshold's verdict."""

from __future__ import annotations

import csv
import json
import warnings

import pytest

with warnings.catch_warnings():  # starlette's notice that it prefers httpx2 to httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from banded_models import band_from, model_with_band
from fakeface_tf.cli import main
from fakeface_tf.serving.inference import Detector, threshold_verdict, verdict_for
from fakeface_tf.serving.serve import create_app

# The JSON answer's keys for a model without a band, as before bands existed.
PLAIN_KEYS = {"verdict", "probability", "threshold", "box", "angle", "face_status", "face_reason",
              "face_confidence", "explain", "images"}


@pytest.fixture(scope="module")
def face(sample_root):
    return sorted((sample_root / "faces" / "real").glob("*.jpg"))[0]


@pytest.fixture(scope="module")
def probability(detector, face) -> float:
    """P(fake) of `face` under the tiny model (no band: `detector` loads it as shipped)."""
    return detector.predict(face).probability


@pytest.fixture(scope="module")
def covering(tiny_keras_model, probability, tmp_path_factory):
    """The tiny model beside a band that holds the face's P(fake)."""
    band = band_from(probability - 0.01, probability + 0.01)
    return model_with_band(tiny_keras_model, tmp_path_factory.mktemp("covering"), band)


def _answer(model_path, face, explain="none") -> tuple[dict, dict]:
    """The JSON answer for `face` and the health answer of a server on `model_path`."""
    with TestClient(create_app(model_path)) as client:
        response = client.post("/api/predict", files={"file": (face.name, face.read_bytes(), "image/jpeg")},
                               data={"explain": explain})
        assert response.status_code == 200, response.text
        return response.json(), client.get("/api/health").json()


@pytest.mark.parametrize("face_ok, probability, band, expected", [
    (True, 0.5, band_from(0.3, 0.7), "uncertain"),
    (True, 0.3, band_from(0.3, 0.7), "uncertain"),  # the band's edges are uncertain
    (True, 0.7, band_from(0.3, 0.7), "uncertain"),
    (True, 0.29, band_from(0.3, 0.7), "real face"),
    (True, 0.71, band_from(0.3, 0.7), "fake face"),
    (False, None, band_from(0.3, 0.7), "not a face"),
    (True, 0.5, None, "fake face"),
])
def test_verdict_is_uncertain_only_inside_the_band(face_ok, probability, band, expected):
    assert verdict_for(face_ok, probability, 0.5, band) == expected


def test_cli_prints_and_writes_uncertain_for_a_face_inside_the_band(covering, face, sample_root,
                                                                   probability, tmp_path, capsys):
    nonface = sorted((sample_root / "nonface").glob("*.jpg"))[0]
    assert main(["predict", str(face), str(nonface), "--model", str(covering), "--out", str(tmp_path)]) == 0
    face_line, nonface_line = capsys.readouterr().out.splitlines()
    assert face_line.startswith(f"{face}: uncertain, the detector cannot tell (P(fake)={probability:.3f}")
    assert nonface_line.startswith(f"{nonface}: not a face")
    rows = list(csv.DictReader(open(tmp_path / "predictions.csv")))
    assert [r["verdict"] for r in rows] == ["uncertain", "not a face"]
    assert float(rows[0]["probability"]) == pytest.approx(probability, abs=1e-6)


def test_cli_json_lines_carry_uncertain_with_probability_and_band(covering, face, probability, capsys):
    assert main(["predict", str(face), "--model", str(covering), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["verdict"] == "uncertain"
    assert record["probability"] == pytest.approx(probability, abs=1e-6)
    assert record["band"] == pytest.approx({"low": probability - 0.01, "high": probability + 0.01,
                                            "alpha": 0.05})


def test_json_api_answers_uncertain_with_probability_band_and_heatmap(covering, face, probability):
    body, health = _answer(covering, face, explain="gradcam++")
    assert body["verdict"] == "uncertain"
    assert body["probability"] == pytest.approx(probability, abs=1e-6)
    assert body["band"] == pytest.approx({"low": probability - 0.01, "high": probability + 0.01,
                                          "alpha": 0.05})
    assert body["images"]["heatmap"] and body["explain"] == "gradcam++"
    assert health["band"] == body["band"]


def test_missing_band_file_loads_and_answers_as_before(tiny_keras_model, face, probability, tmp_path):
    bare = model_with_band(tiny_keras_model, tmp_path / "bare", None)
    assert Detector.load(bare).band is None
    body, health = _answer(bare, face)
    assert set(body) == PLAIN_KEYS and "band" not in health
    assert body["verdict"] == threshold_verdict(probability, 0.5)


def test_band_excluding_the_probability_leaves_the_threshold_verdict(tiny_keras_model, face,
                                                                     probability, tmp_path):
    # beside P(fake), on the far side from the threshold, so that band and threshold agree
    low = probability + 0.01 if probability < 0.5 else probability - 0.02
    beside = model_with_band(tiny_keras_model, tmp_path / "beside", band_from(low, low + 0.01))
    body, _ = _answer(beside, face)
    assert body["verdict"] == threshold_verdict(probability, 0.5)
    assert body["band"]["low"] == pytest.approx(low)
