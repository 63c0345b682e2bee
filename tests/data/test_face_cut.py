"""The face cut is one definition: preprocess writes it, train checks it and saves it with the
model, and the Detector serving that model cuts faces byte for byte like the records."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from fakeface_tf import preprocess
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data import records
from fakeface_tf.data.face_cut import FaceOptions, read_cut, save_cut
from fakeface_tf.data.images import load_image
from fakeface_tf.serving.inference import Detector

from conftest import tiny_config, write_synthetic_records

SPEC = FaceOptions(size=48, color="rgb", margin=0.35, min_face=30, min_confidence=0.95, level=False)


def _model(folder, size: int, channels: int):
    import keras
    from keras import layers

    inputs = keras.Input((size, size, channels))
    x = layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3)(layers.Rescaling(1 / 255.0)(inputs)))
    prob = layers.Activation("sigmoid", name="prob")(layers.Dense(1, name="logit")(x))
    folder.mkdir(parents=True, exist_ok=True)
    keras.Model(inputs, prob).save(folder / "model.keras")
    return folder


def test_a_served_face_is_cut_byte_for_byte_like_its_training_record(sample_root, tmp_path):
    for label in ("real", "fake"):
        (tmp_path / "src" / label).mkdir(parents=True)
        for path in sorted((sample_root / "faces" / label).glob("*.jpg"))[:3]:
            shutil.copy(path, tmp_path / "src" / label)
    preprocess.preprocess(tmp_path / "src", tmp_path / "records", SPEC, workers=1, progress=False)
    cut = read_cut(tmp_path / "records")
    assert cut == SPEC
    folder = _model(tmp_path / "model", SPEC.size, 3)
    save_cut(folder, cut)
    detector = Detector.load(folder)
    assert detector.model.face_options == SPEC
    stored = records.read_all(tmp_path / "records")
    assert len(stored) == 6
    for example in stored:
        served = detector.score_images([load_image(tmp_path / "src" / example["path"].decode())])[0]
        assert served.face.image.tobytes() == example["image"].tobytes(), example["path"]


def test_a_models_saved_cut_wins_over_its_config(tmp_path):
    folder = _model(tmp_path / "model", 48, 3)
    save_cut(folder, SPEC)
    from fakeface_tf.models.artifacts import load_model

    assert load_model(folder).face_options == SPEC
    save_cut(folder, dataclasses.replace(SPEC, size=64))
    with pytest.raises(FakefaceError, match="cuts 64 px rgb faces but the model takes 48 px rgb"):
        load_model(folder).face_options


def test_training_refuses_records_cut_otherwise_than_the_config_asks(tmp_path):
    from fakeface_tf.training.train import train

    folder = write_synthetic_records(tmp_path / "records")
    cut = {"size": 32, "color": "gray", "margin": 0.2, "level": False}  # the config levels
    (folder / "preprocess.json").write_text(json.dumps({"settings": {"face": cut}}))
    with pytest.raises(FakefaceError, match=r"level: False vs True"):
        train(tiny_config(folder), tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_run_saves_the_records_cut_beside_its_model(tiny_run):
    cut = read_cut(tiny_run)
    assert cut is not None and (cut.size, cut.color) == (32, "gray")
    assert json.loads((tiny_run / "face_cut.json").read_text())["detector"].startswith("mtcnn ")
