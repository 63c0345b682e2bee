"""`fakeface predict`: JSON lines schema, overlays on disk, folders with predictions.csv."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from fakeface_tf.cli import main
from fakeface_tf.data import faces
from fakeface_tf.models import artifacts

KEYS = {"path", "verdict", "probability", "threshold", "box", "angle", "face_status",
        "face_reason", "face_confidence", "explain"}


@pytest.fixture(scope="module")
def images(sample_root):
    return (sorted((sample_root / "faces" / "real").glob("*.jpg"))[0],
            sorted((sample_root / "nonface").glob("*.jpg"))[0])


def test_json_lines_follow_the_schema_and_overlays_are_saved(tiny_keras_model, images, tmp_path, capsys):
    face, nonface = images
    code = main(["predict", str(face), str(nonface), "--model", str(tiny_keras_model),
                 "--explain", "gradcam++", "--out", str(tmp_path), "--json"])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["path"] for r in lines] == [str(face), str(nonface)]
    face_record, nonface_record = lines
    assert KEYS <= set(face_record) and KEYS <= set(nonface_record)
    assert face_record["verdict"] in ("real face", "fake face")
    loaded = artifacts.load_model(tiny_keras_model)
    (crop,) = faces.crop_files([face], loaded.face_options, progress=False)
    assert face_record["probability"] == pytest.approx(float(loaded.predict(crop.image[None])[0]),
                                                       abs=1e-6)
    assert face_record["box"] == pytest.approx(list(crop.box), abs=0.01)
    assert (tmp_path / f"{face.stem}_gradcam++.png").is_file()
    assert (tmp_path / f"{face.stem}_gradcam++_crop.png").is_file()
    assert face_record["overlay"] == str(tmp_path / f"{face.stem}_gradcam++.png")
    assert nonface_record["verdict"] == "not a face" and nonface_record["probability"] is None
    assert "overlay" not in nonface_record


def test_folder_writes_predictions_csv_and_lists_bad_files(tiny_keras_model, images, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for image in images:
        shutil.copy(image, folder)
    (folder / "notes.jpg").write_text("not an image")
    out = tmp_path / "out"
    code = main(["predict", str(folder), "--model", str(tiny_keras_model), "--out", str(out)])
    assert code == 1  # one of three files was skipped
    captured = capsys.readouterr()
    assert "notes.jpg" in captured.err and "not an image" in captured.err
    assert len(captured.out.splitlines()) == 2
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert {r["verdict"] for r in rows} >= {"not a face", "error"} and len(rows) == 3


def test_missing_default_model_exits_2_with_a_clear_message(images, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(artifacts, "REFERENCE", tmp_path / "no_reference")
    assert main(["predict", str(images[0])]) == 2
    assert "pass --model" in capsys.readouterr().err


def test_missing_file_is_refused_before_the_model_loads(tmp_path, monkeypatch, capsys):
    def never(*args, **kwargs):
        raise AssertionError("the model was loaded for a missing file")

    monkeypatch.setattr("fakeface_tf.serving.inference.Detector.load", never)
    assert main(["predict", str(tmp_path / "missing.jpg")]) == 2
    assert capsys.readouterr().err.strip() == f"fakeface: error: file not found: {tmp_path / 'missing.jpg'}"


def test_single_file_with_out_writes_predictions_csv(tiny_keras_model, images, tmp_path):
    assert main(["predict", str(images[0]), "--model", str(tiny_keras_model), "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "predictions.csv")))
    assert [r["path"] for r in rows] == [str(images[0])]


def test_predict_module_imports_without_tensorflow():
    import subprocess
    import sys

    code = "import sys, fakeface_tf.serving.predict; sys.exit('tensorflow' in sys.modules or 'keras' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
