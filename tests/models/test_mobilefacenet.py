"""MobileFaceNet run from its TF.js graph: parity with TF.js itself, the probe features' shape,
a mirrored face's features, and the executor refusing what it does not know."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from fakeface_tf.core import config
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.models import mobilefacenet, npm_package, tfjs_graph

REFERENCE = Path(__file__).with_name("mobilefacenet_tfjs_reference.json")  # made by the .js beside it
FETCHED = all((config.cache_dir(mobilefacenet.CACHE_NAME) / Path(m).name).is_file()
              for m in mobilefacenet.SOURCES)
needs_package = pytest.mark.skipif(
    not FETCHED, reason=f"MobileFaceNet ({mobilefacenet.PACKAGE} {mobilefacenet.VERSION}) is not "
    "in the cache (no network in tests): `fakeface crossval RECORDS --recipes mobilefacenet` "
    "fetches it once with npm")
RTOL = 1e-5  # measured: differences at most 6.3e-7 of each output's RMS (2.2e-5 on the embedding)


@pytest.fixture(scope="module")
def graph():
    return mobilefacenet.load()


def synthetic_input(n: int = 2, size: int = 112) -> np.ndarray:
    """The reference script's input: (i * i * (n + 1) + 3 * j + 17 * c * (n + 2)) % 256."""
    b, i, j, c = np.meshgrid(np.arange(n), np.arange(size), np.arange(size), np.arange(3),
                             indexing="ij")
    return ((i * i * (b + 1) + 3 * j + 17 * c * (b + 2)) % 256).astype(np.float32)


@needs_package
def test_executor_matches_tfjs_within_measured_tolerance(graph):
    reference = json.loads(REFERENCE.read_text())["outputs"]
    x = (synthetic_input() - mobilefacenet.INPUT_MEAN) * mobilefacenet.INPUT_SCALE
    got = graph.run({mobilefacenet.INPUT_NODE: x}, list(reference))
    for node, rows in reference.items():
        flat = tf.reshape(got[node], (len(rows), -1)).numpy().astype(np.float64)
        for row, want in zip(flat, rows):
            rms = np.sqrt(want["sumsq"] / want["size"])
            assert row.size == want["size"]
            np.testing.assert_allclose(row[:8], want["first"], rtol=0, atol=RTOL * rms, err_msg=node)
            np.testing.assert_allclose(row.sum(), want["sum"], rtol=0,
                                       atol=RTOL * rms * row.size, err_msg=node)
            np.testing.assert_allclose((row ** 2).sum(), want["sumsq"], rtol=RTOL, err_msg=node)


@needs_package
def test_features_have_the_expected_shape_and_the_mirror_is_close(graph):
    rng = np.random.default_rng(0)
    coarse = rng.uniform(40, 215, (2, 14, 14, 3))
    faces = np.repeat(np.repeat(coarse, 16, 1), 16, 2).astype(np.uint8)  # 224 px, resized inside
    run = mobilefacenet.embedder(graph)
    plain = mobilefacenet.features(run, faces)
    assert plain.shape == (2, mobilefacenet.FEATURES) and plain.dtype == np.float32
    out = run(tf.convert_to_tensor(faces))
    norms = np.linalg.norm(out["embedding"].numpy(), axis=1, keepdims=True)
    np.testing.assert_allclose(out["normalised"].numpy(), out["embedding"].numpy() / norms,
                               atol=1e-6)
    mirrored = mobilefacenet.features(run, faces[:, :, ::-1])
    size = mobilefacenet.FEATURES - 2 * 128
    cosine = [np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b)
              for a, b in zip(plain[:, :size], mirrored[:, :size])]
    assert not np.allclose(plain, mirrored) and min(cosine) > 0.5


def test_an_unknown_op_is_refused_by_name():
    with pytest.raises(FakefaceError, match="'Conv3D'"):
        tfjs_graph.evaluate({"name": "x", "op": "Conv3D"}, [])


def test_attributes_decode_strings_lists_and_numbers():
    node = {"attr": {"padding": {"s": "U0FNRQ=="}, "strides": {"list": {"i": ["1", "2", "2", "1"]}},
                     "fused_ops": {"list": {"s": ["Qmlhc0FkZA==", "UmVsdQ=="]}},
                     "keep_dims": {"b": True}, "epsilon": {"f": 0}}}
    assert tfjs_graph.attr(node, "padding") == "SAME"
    assert tfjs_graph.attr(node, "strides") == [1, 2, 2, 1]
    assert tfjs_graph.attr(node, "fused_ops") == ["BiasAdd", "Relu"]
    assert tfjs_graph.attr(node, "keep_dims") is True and tfjs_graph.attr(node, "epsilon") == 0.0
    assert tfjs_graph.attr(node, "missing", 7) == 7


def test_a_changed_package_file_is_refused_by_its_checksum(tmp_path):
    for name in ("mobilefacenet.json", "mobilefacenet.bin"):
        (tmp_path / name).write_bytes(b"not the published file")
    with pytest.raises(FakefaceError, match="mobilefacenet.json: SHA-256 differs"):
        npm_package.verified(tmp_path, mobilefacenet.SOURCES, "pkg")
