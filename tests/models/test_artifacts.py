"""Loading models from every place a user may point at, with the threshold beside them."""

import shutil

import numpy as np
import pytest

from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.run_folder import RunFolder
from fakeface_tf.data import face_cut, faces
from fakeface_tf.models import artifacts


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    import keras

    inputs = keras.Input((24, 24, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    logit = keras.layers.Dense(1, name="logit")(x)
    prob = keras.layers.Activation("sigmoid", name="prob")(logit)
    model = keras.Model(inputs, prob)
    folder = tmp_path_factory.mktemp("model")
    model.save(folder / "model.keras")
    model.export(str(folder / "saved_model"), verbose=False)
    return folder / "model.keras"


def test_keras_file_and_savedmodel_give_the_same_scores(keras_file):
    images = np.random.default_rng(0).integers(0, 256, (3, 24, 24, 1)).astype(np.uint8)
    from_keras = artifacts.load_model(keras_file)
    from_saved = artifacts.load_model(keras_file.parent / "saved_model")
    assert from_keras.keras_model is not None and from_saved.keras_model is None
    assert (from_keras.image_size, from_keras.channels) == (24, 1)
    assert (from_saved.image_size, from_saved.channels) == (24, 1)
    np.testing.assert_allclose(from_keras.predict(images), from_saved.predict(images), atol=1e-5)


def test_folder_with_model_keras_loads_and_face_options_follow_the_input(keras_file):
    loaded = artifacts.load_model(keras_file.parent)
    assert loaded.path.name == "model.keras"
    assert loaded.face_options.size == 24 and loaded.face_options.color == "gray"


def test_saved_threshold_is_used_by_the_next_load(keras_file, tmp_path):
    assert artifacts.load_model(keras_file).threshold == 0.5
    artifacts.save_threshold(keras_file.parent, 0.37, "accuracy")
    try:
        assert artifacts.load_model(keras_file).threshold == pytest.approx(0.37)
    finally:
        RunFolder(keras_file.parent).threshold.unlink()


def test_the_face_cut_is_read_from_disk_once_per_loaded_model(keras_file, tmp_path, monkeypatch):
    """Serving asks for the face options on every batch: face_cut.json is read on first use only."""
    shutil.copy(keras_file, tmp_path / "model.keras")
    face_cut.save_cut(tmp_path, faces.FaceOptions(size=24, color="gray", detector="mtcnn test"))
    reads = []
    monkeypatch.setattr(artifacts, "read_cut", lambda folder: reads.append(folder) or face_cut.read_cut(folder))
    loaded = artifacts.load_model(tmp_path)
    options = [loaded.face_options for _ in range(3)]
    assert reads == [tmp_path] and options[0].detector == "mtcnn test"
    assert all(o is options[0] for o in options)


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(FakefaceError, match="model not found"):
        artifacts.load_model(tmp_path / "nope.keras")


def test_folder_without_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(FakefaceError, match="holds no model"):
        artifacts.load_model(tmp_path)


def test_file_that_is_not_a_model_is_a_clear_error(tmp_path):
    bogus = tmp_path / "weights.keras"
    bogus.write_text("not a zip")
    with pytest.raises(FakefaceError, match="could not be loaded"):
        artifacts.load_model(bogus)


def test_predict_calls_the_model_a_bounded_batch_at_a_time_with_the_same_scores(monkeypatch):
    seen = []

    def model(images, training):
        seen.append(len(images))
        return images.reshape(len(images), -1).mean(axis=1, keepdims=True)

    monkeypatch.setattr(artifacts, "PREDICT_BATCH", 4)
    images = np.random.default_rng(0).integers(0, 256, (10, 3, 3, 1)).astype(np.uint8)
    scores = artifacts._keras_predictor(model)(images)
    assert seen == [4, 4, 2]
    np.testing.assert_allclose(scores, images.reshape(10, -1).mean(axis=1))
    assert artifacts._keras_predictor(model)(images[:0]).shape == (0,)
