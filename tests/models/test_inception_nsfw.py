"""The nsfwjs InceptionV3: its preprocessing, the package checks, and the weight mapping into
keras.applications.InceptionV3 (against the package's own layer graph, and a guarded output)."""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from fakeface_tf.core import config
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.models import inception_nsfw, tfjs

FETCHED = (config.cache_dir(inception_nsfw.CACHE_NAME) / inception_nsfw.WEIGHTS_NAME).is_file() \
    and inception_nsfw.model_json_path().is_file()
needs_package = pytest.mark.skipif(
    not FETCHED, reason=f"nsfwjs {inception_nsfw.VERSION} is not in the cache (no network in tests): "
    "`fakeface crossval RECORDS --recipes nsfw_mixed5` fetches it once with npm")


def test_network_input_is_unit_range_resized_with_aligned_corners_like_nsfwjs():
    images = np.random.default_rng(0).uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
    expected = tf.compat.v1.image.resize_bilinear(images / 255.0, (299, 299), align_corners=True)
    got = inception_nsfw.network_input(images)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert float(tf.reduce_max(got)) <= 1.0 and float(tf.reduce_min(got)) >= 0.0
    same = inception_nsfw.network_input(np.full((1, 299, 299, 3), 255.0, np.float32))
    np.testing.assert_array_equal(same, np.ones((1, 299, 299, 3)))  # 299 px: only rescaled


def test_a_package_file_with_other_bytes_is_refused(tmp_path):
    for name in inception_nsfw.SOURCES:
        (tmp_path / name).write_text('h.exports="AAAA"')
    with pytest.raises(FakefaceError, match="model.min.js: SHA-256 differs"):
        inception_nsfw.unwrap(tmp_path, tmp_path / "out", node=shutil.which("node") or "node")


def test_missing_npm_says_what_to_install_or_which_files_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setenv(config.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FakefaceError, match=r"need npm .*inception_v3/ folder into .*nsfwjs"):
        inception_nsfw.weights_file()


@pytest.fixture(scope="module")
def converted():
    return inception_nsfw.pretrained()


def _package_graph() -> keras.Model:
    """The package's own Keras 2.2.4 layer graph, rebuilt by Keras from model.json, each weight
    set by its TF.js name: no mapping by order involved."""
    model_json = inception_nsfw.model_json_path()
    graph = json.loads(model_json.read_text())["modelTopology"]["model_config"]["config"]
    for layer in graph["layers"]:
        layer["config"]["batch_shape"] = layer["config"].pop("batch_input_shape", None)
        layer["config"].pop("sparse", None)
        if layer["config"]["batch_shape"] is None:
            del layer["config"]["batch_shape"]
    model = keras.Model.from_config(graph)
    tensors = tfjs.read_weights(model_json)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([tensors[f"{layer.name}/{w.name.split('/')[-1]}"] for w in layer.weights])
    return model


@pytest.mark.slow
@needs_package
def test_weights_mapped_by_order_give_the_package_graphs_outputs(converted):
    reference = _package_graph()
    images = inception_nsfw.network_input(
        np.random.default_rng(1).uniform(0, 255, (2, 224, 224, 3)).astype(np.float32))
    ours = converted(images, training=False)
    np.testing.assert_allclose(ours["probs"], reference(images, training=False), atol=1e-6)
    mixed5 = keras.Model(reference.inputs, reference.get_layer("mixed5").output)
    np.testing.assert_allclose(ours["mixed5"], mixed5(images, training=False), atol=1e-5)


@pytest.mark.slow
@needs_package
def test_faces_come_out_neutral_with_the_guarded_scores(converted, sample_root):
    from PIL import Image

    files = ("faces/real/zoya_00000.jpg", "faces/fake/roei_fake_0.jpg")
    images = np.stack([np.asarray(Image.open(sample_root / f).convert("RGB"), np.float32)
                       for f in files])
    probs = converted(inception_nsfw.network_input(images), training=False)["probs"].numpy()
    assert [inception_nsfw.CLASSES[i] for i in probs.argmax(axis=1)] == ["Neutral", "Neutral"]
    np.testing.assert_allclose(probs[:, 2], [0.999779, 0.986467], atol=2e-6)  # measured once
    stats = inception_nsfw.mixed5_stats(inception_nsfw.mixed5_model(converted), images)
    assert stats.shape == (2, 1536)
    np.testing.assert_allclose(stats[:, [0, 768]], [[0.141863, 0.3822], [0.050415, 0.205277]],
                               atol=2e-6)
