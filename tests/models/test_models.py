"""Every registry model builds, trains a step, and survives .keras and SavedModel round trips."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from fakeface_tf.core.config import Config, apply_overrides
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.models.export import export_saved_model
from fakeface_tf.models.registry import MIN_SIZE, MODELS, build_model, compile_model, frozen_outputs

HEAVY = {"vgg16", "xception", "densenet121", "resnet50", "efficientnetb0", "faceres"}


def _config(name: str, *overrides: str) -> Config:
    size = max(32, MIN_SIZE[name])
    color = "rgb" if name == "faceres" else "gray"  # FaceRes is an RGB network
    return apply_overrides(Config(), [f"model.name={name}", f"data.image_size={size}",
                                      f"data.color={color}", "model.filters=8",
                                      "model.dense_units=8", *overrides])


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in MODELS
])
def test_model_trains_a_step_and_round_trips(name, tmp_path):
    # A seeded start: other tests leave Keras' global seed wherever their training ended, and
    # some starts saturate the sigmoid on these two raw images, so one step moves no weight.
    keras.utils.set_random_seed(0)
    cfg = _config(name)
    model = compile_model(build_model(cfg), cfg, total_steps=1)
    model.run_eagerly = True  # one step: tracing a big graph would cost more than running it
    size = cfg.data.image_size
    shape = (2, size, size, cfg.data.channels)
    images = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    floats = images.astype("float32")
    before = [w.copy() for w in model.get_weights()]
    model.fit(floats, np.array([0.0, 1.0]), batch_size=2, epochs=1, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))

    assert model.get_layer("logit").activation is keras.activations.linear
    assert model.layers[-1].name == "prob"
    expected = model(floats, training=False).numpy()
    logit = keras.Model(model.input, model.get_layer("logit").output)(floats, training=False)
    assert expected.shape == (2, 1)
    np.testing.assert_allclose(expected, 1 / (1 + np.exp(-np.asarray(logit, "float64"))), atol=1e-6)

    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(reloaded(floats, training=False).numpy(), expected, atol=1e-5)

    export_saved_model(model, tmp_path / "saved")
    serve = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"]
    np.testing.assert_allclose(serve(tf.constant(images))["prob"].numpy(), expected, atol=1e-5)
    if name not in HEAVY:  # loading a big SavedModel a second time proves nothing new
        layer = keras.layers.TFSMLayer(str(tmp_path / "saved"), call_endpoint="serve")
        np.testing.assert_allclose(layer(tf.constant(images))["prob"].numpy(), expected, atol=1e-5)


def test_fast_model_frequency_branch_takes_rgb_and_feeds_the_output():
    cfg = _config("fast", "model.freq_branch=true", "data.color=rgb")
    model = build_model(cfg)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    with_branch = model.predict(images, verbose=0)
    branch = model.get_layer("freq_dense")
    branch.set_weights([np.zeros_like(w) for w in branch.get_weights()])
    assert with_branch.shape == (2, 1)
    assert not np.allclose(model.predict(images, verbose=0), with_branch, atol=1e-6)


def test_application_repeats_gray_to_three_channels_and_loads_a_local_weights_file(tmp_path):
    cfg = _config("efficientnetb0")
    base = keras.applications.EfficientNetB0(include_top=False, weights=None,
                                             input_shape=(32, 32, 3))
    base.save_weights(tmp_path / "notop.weights.h5")
    cfg.model.weights = str(tmp_path / "notop.weights.h5")
    model = build_model(cfg)
    assert model.input_shape == (None, 32, 32, 1)
    loaded = model.get_layer("stem_conv").get_weights()[0]
    np.testing.assert_array_equal(loaded, base.get_layer("stem_conv").get_weights()[0])


def test_imagenet_weights_without_a_file_are_refused_with_a_hint():
    with pytest.raises(FakefaceError, match="nothing is downloaded.*model.weights=/path"):
        build_model(_config("resnet50", "model.weights=imagenet"))


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FakefaceError, match="weights file not found"):
        build_model(_config("vgg16", f"model.weights={tmp_path / 'none.h5'}"))


def test_unknown_model_and_too_small_input_are_clear_errors():
    with pytest.raises(FakefaceError, match="unknown model 'lenet'"):
        build_model(apply_overrides(Config(), ["model.name=lenet"]))
    with pytest.raises(FakefaceError, match="too small for model 'xception'.*71"):
        build_model(apply_overrides(Config(), ["model.name=xception", "data.image_size=64"]))


@pytest.mark.parametrize("name", ["baseline", "fast"])
def test_mixed_precision_keeps_the_probability_in_float32(name):
    cfg = _config(name)
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build_model(cfg)
    finally:
        keras.config.set_dtype_policy("float32")
    assert model.get_layer("logit").compute_dtype == "float16"
    assert model.output.dtype == "float32"


def test_faceres_trains_only_its_last_blocks_and_reads_features_from_several_depths():
    cfg = _config("faceres", "model.trainable_blocks=4", "model.feature_blocks=9,13")
    model = build_model(cfg)
    assert not model.get_layer("conv_pw_9").trainable and not model.get_layer("conv1").trainable
    assert model.get_layer("conv_dw_10").trainable and model.get_layer("conv_pw_13").trainable
    assert model.get_layer("features").output.shape[-1] == 2 * (512 + 1024)  # mean + std each
    assert [t.name for t in frozen_outputs(model, cfg.model)] == [
        model.get_layer("conv_pw_9_relu").output.name]
    frozen = build_model(_config("faceres", "model.trainable_blocks=0"))
    assert not any(layer.trainable_weights for layer in frozen.layers if layer.name != "logit")


def test_faceres_refuses_gray_crops_and_unknown_feature_blocks():
    with pytest.raises(FakefaceError, match="needs RGB"):
        build_model(_config("faceres", "data.color=gray"))
    with pytest.raises(FakefaceError, match="model.feature_blocks"):
        build_model(_config("faceres", "model.feature_blocks=9,14"))
