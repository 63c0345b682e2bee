"""InceptionV3 of the npm package `nsfwjs`: a second frozen backbone to set beside FaceRes.

nsfwjs 4.4.0 ships a TF.js *layers* model (a Keras 2.2.4 InceptionV3, fine-tuned from ImageNet
to sort photos into five content classes, under a 256-128-5 dense head) wrapped in browserify
bundles: `model.min.js` (the model.json as a JS object) and six `group1-shard*of6.min.js`
(each one base64 string). `fetch_sources` fetches the package once with npm's own client,
checks the SHA-256 of those seven files and unwraps them into a plain TF.js folder (model.json
through Node, which npm runs on; shards base64-decoded). `weights_file` copies the weights
into `keras.applications.InceptionV3(weights=None)` layer by layer, both in topological order,
every shape checked, and caches a Keras weights file under `$FAKEFACE_CACHE/nsfwjs/`.

Preprocessing, read from the package's `dist/cjs/core.js` (`NSFWJS.infer`) and
`dist/cjs/models/inception_v3.js` (`options.size`): RGB divided by 255 (the [0, 1] scale, not
the [-1, 1] of Keras' InceptionV3), resized bilinearly with `alignCorners=true` to 299x299.
`network_input` does exactly that.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import shutil
import subprocess
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from fakeface_tf.core.config import cache_dir
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.files import write_bytes_atomic, write_text_atomic
from fakeface_tf.models import npm_package, tfjs

log = logging.getLogger(__name__)

PACKAGE, VERSION = "nsfwjs", "4.4.0"
MODEL_DIR = "dist/models/inception_v3"  # in the package
SOURCES = {  # file in MODEL_DIR -> SHA-256 of its bytes in nsfwjs 4.4.0
    "model.min.js": "8c2b793b9d277840fc757725bf3b135c96d5a54ec020e2b4ab569fc3df6b3848",
    "group1-shard1of6.min.js": "e9316ac20ff634f990e483062050afe9a4826885c3a212d676ce2cfda93a4884",
    "group1-shard2of6.min.js": "467b33d62b4c470edf8acd3da554e331f2d49f3f93ddd718f944f595c516cd82",
    "group1-shard3of6.min.js": "075300e057ca7e9fd2e282afbc3a6596a0404288c94bf781e9b20658cbeee664",
    "group1-shard4of6.min.js": "b51ee46e062e752e81c28761a56369432671bfb3d59f4f062f5bd4dd58ff5303",
    "group1-shard5of6.min.js": "d4149969b3c61e0d4dde1d4f555f5b00f4fc87f6bab1a4cd4967b24f62725de6",
    "group1-shard6of6.min.js": "b684762a7d7c39b80183d260bdab6f072321349300f9f2ff144a085a382acfc4",
}
MEMBERS = {f"{MODEL_DIR}/{name}": digest for name, digest in SOURCES.items()}  # npm_package's form
CACHE_NAME = "nsfwjs"  # package files, the unwrapped TF.js folder and converted weights
MODEL_JSON = "model.json"
WEIGHTS_NAME = f"inception-nsfw-{VERSION}.weights.h5"
INPUT_SIZE = 299
CLASSES = ("Drawing", "Hentai", "Neutral", "Porn", "Sexy")  # dist/cjs/nsfw_classes.js
# The head above InceptionV3; names prefixed, as Keras auto-names a second InceptionV3 `dense_1`...
HEAD = (("nsfw_dense_1", 256, "relu"), ("nsfw_dense_2", 128, "relu"),
        ("nsfw_dense_3", len(CLASSES), "softmax"))
WEIGHTED = ("Conv2D", "BatchNormalization", "Dense")  # layer classes that hold weights
LICENSE_NOTE = (f"InceptionV3 weights: npm package {PACKAGE} {VERSION} (MIT, infinitered), "
                "fine-tuned from ImageNet weights on scraped web photos (GantMan/nsfw_model).")


def network_input(images):
    """RGB [0, 255] images of any size -> what the network takes: [0, 1], 299x299, resized
    bilinearly with aligned corners as nsfwjs does (`tf.image.resizeBilinear(x, s, true)`)."""
    images = tf.convert_to_tensor(images, tf.float32) / 255.0
    if tuple(images.shape[1:3]) == (INPUT_SIZE, INPUT_SIZE):
        return images
    # crop_and_resize over the whole image samples exactly as align_corners=True does, without
    # the deprecated tf.compat.v1 resize
    n = tf.shape(images)[0]
    boxes = tf.tile(tf.constant([[0.0, 0.0, 1.0, 1.0]]), [n, 1])
    return tf.image.crop_and_resize(images, boxes, tf.range(n), (INPUT_SIZE, INPUT_SIZE))


def reference_model() -> keras.Model:
    """The published network on `network_input`'s 299x299 [0, 1] tensor: outputs `mixed5`
    (a mid-depth 17x17x768 map), `pooled` (2048) and `probs` (the five classes)."""
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="image")
    base = keras.applications.InceptionV3(include_top=False, weights=None, input_tensor=inputs)
    x = layers.AveragePooling2D(8, name="nsfw_pool")(base.output)
    pooled = x = layers.Flatten(name="nsfw_flatten")(x)
    for name, units, activation in HEAD:
        x = layers.Dense(units, activation=activation, name=name)(x)
    outputs = {"mixed5": base.get_layer("mixed5").output, "pooled": pooled, "probs": x}
    return keras.Model(inputs, outputs, name="inception_nsfw")


def tfjs_layers(model_json: str | Path) -> list[tuple[str, str]]:
    """(class name, layer name) of the TF.js model's weighted layers, in topology order."""
    topology = json.loads(Path(model_json).read_text())["modelTopology"]["model_config"]["config"]
    return [(spec["class_name"], spec["name"]) for spec in topology["layers"]
            if spec["class_name"] in WEIGHTED]


def keras_layers(model: keras.Model) -> list:
    """`model`'s weighted layers in its own (topological) order."""
    kinds = tuple(getattr(layers, name) for name in WEIGHTED)
    return [layer for layer in model.layers if isinstance(layer, kinds)]


def load_tfjs(model: keras.Model, model_json: str | Path) -> keras.Model:
    """Copy the TF.js weights into `reference_model()`: the k-th weighted layer of each class
    in topology order to the k-th of that class in Keras (BatchNorm has no gamma: beta,
    moving mean, moving variance). Raises FakefaceError when a class count or shape differs."""
    tensors = tfjs.read_weights(model_json)
    suffixes = {"Conv2D": ("kernel",), "Dense": ("kernel", "bias"),
                "BatchNormalization": ("beta", "moving_mean", "moving_variance")}
    for kind in WEIGHTED:
        theirs = [name for cls, name in tfjs_layers(model_json) if cls == kind]
        ours = [layer for layer in keras_layers(model) if type(layer).__name__ == kind]
        if len(theirs) != len(ours):
            raise FakefaceError(f"{model_json}: {len(theirs)} {kind} layers, InceptionV3 has {len(ours)}")
        for name, layer in zip(theirs, ours):
            values = [tensors[f"{name}/{s}"] for s in suffixes[kind]]
            shapes = [tuple(w.shape) for w in layer.get_weights()]
            if shapes != [v.shape for v in values]:
                raise FakefaceError(f"{model_json}: {name} has shapes {[v.shape for v in values]}, "
                                    f"Keras layer {layer.name} wants {shapes}")
            layer.set_weights(values)
    return model


def convert(model_json: str | Path, target: str | Path) -> Path:
    """The unwrapped TF.js folder -> a Keras weights file of `reference_model()` at `target`."""
    return tfjs.save_converted(load_tfjs(reference_model(), model_json), None, target)


def unwrap(sources: Path, folder: Path, node: str | None = None) -> Path:
    """The seven verified .min.js files in `sources` -> `folder`/model.json + binary shards.
    Shards are the base64 string each bundle exports; model.json is what Node's `require` of
    `model.min.js` returns (a JS object literal, not JSON)."""
    node = node or shutil.which("node")
    if node is None:
        raise FakefaceError(f"unwrapping {PACKAGE}'s model.min.js needs Node.js (npm's runtime)")
    if not npm_package.verified(sources, MEMBERS, f"{PACKAGE}@{VERSION}"):
        raise FakefaceError(f"{sources} lacks files of {PACKAGE}'s {MODEL_DIR}: {', '.join(SOURCES)}")
    folder.mkdir(parents=True, exist_ok=True)
    for name in SOURCES:
        if name.startswith("group1-shard"):
            found = re.findall(r'\.exports="([A-Za-z0-9+/=]+)"', (sources / name).read_text())
            if len(found) != 1:
                raise FakefaceError(f"{sources / name}: not one base64 weight shard")
            write_bytes_atomic(folder / name.removesuffix(".min.js"), base64.b64decode(found[0]))
    script = ("process.stdout.write(JSON.stringify(require(process.argv[1])))")
    done = subprocess.run([node, "-e", script, str((sources / "model.min.js").resolve())],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise FakefaceError(f"node could not read {sources / 'model.min.js'}: {done.stderr.strip()[-300:]}")
    write_text_atomic(folder / MODEL_JSON, done.stdout)
    return folder / MODEL_JSON


def fetch_sources(folder: Path | None = None, npm: str | None = None) -> Path:
    """The unwrapped model.json in `folder` (default the nsfwjs cache folder), running
    `npm pack` only when the seven verified package files are not there yet."""
    folder = Path(folder or cache_dir(CACHE_NAME))
    if (folder / MODEL_JSON).is_file():
        return folder / MODEL_JSON
    npm_package.fetch_files(f"{PACKAGE}@{VERSION}", MEMBERS, folder, "nsfwjs InceptionV3", npm)
    return unwrap(folder, folder)


def weights_file(npm: str | None = None) -> Path:
    """The converted Keras weights, fetched and converted on first use, then always reused."""
    target = cache_dir(CACHE_NAME) / WEIGHTS_NAME
    if target.is_file():
        return target
    return convert(fetch_sources(npm=npm), target)


def pretrained() -> keras.Model:
    """`reference_model()` with the nsfwjs weights."""
    model = reference_model()
    model.load_weights(weights_file())
    return model


def model_json_path() -> Path:
    """Where the unwrapped TF.js model.json is cached (whether or not it is there yet)."""
    return cache_dir(CACHE_NAME) / MODEL_JSON


def mixed5_model(model: keras.Model) -> keras.Model:
    """`model` cut at `mixed5` (the layers above it are never run)."""
    return keras.Model(model.inputs, model.get_layer("mixed5").output, name="inception_nsfw_mixed5")


def mixed5_stats(mixed5: keras.Model, images) -> np.ndarray:
    """Per-channel spatial mean and standard deviation of `mixed5` (1536 floats per image)
    for RGB [0, 255] `images`; `mixed5` from `mixed5_model`."""
    mean, var = tf.nn.moments(mixed5(network_input(images), training=False), axes=[1, 2])
    return np.concatenate([mean.numpy(), np.sqrt(var.numpy())], axis=1)
