"""The model registry: name -> builder(input_shape, ModelConfig) -> functional Keras model.

Every model takes images in [0, 255] exactly as the preprocessing writes them (scaling lives
inside the model, so a saved model needs no outside preprocessing) and ends in a linear
`Dense(1, name="logit")` followed by `Activation("sigmoid", name="prob")`: the output is the
probability that the face is fake, and saliency tools can reach the logit. Models are built
from standard layers and `keras.ops` only, so `.keras` files load without this package.
`compile_model` gives a model the configured optimizer, loss and metrics (training and export
both compile with it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import keras
from keras import layers, ops

from fakeface_tf.core.config import Config, ModelConfig
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.models import faceres

# Smallest input side each model accepts (pooling depth, or the Application's own limit).
MIN_SIZE = {
    "baseline": 16,
    "vgg10": 16,
    "fast": 32,
    "vgg16": 32,
    "xception": 71,
    "densenet121": 32,
    "resnet50": 32,
    "efficientnetb0": 32,
    "faceres": 32,
}


def _head(x, cfg: ModelConfig, inputs, name: str) -> keras.Model:
    """Hidden dense layer, dropout, linear logit, float32 sigmoid: the shared classifier end."""
    x = layers.Dense(cfg.dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(cfg.dropout, name="head_dropout")(x)
    logit = layers.Dense(1, name="logit")(x)
    prob = layers.Activation("sigmoid", dtype="float32", name="prob")(logit)
    return keras.Model(inputs, prob, name=name)


def baseline(input_shape: tuple, cfg: ModelConfig) -> keras.Model:
    """The seed's baseline: three 3x3 conv + max-pool + dropout stages, one dense layer."""
    inputs = keras.Input(input_shape, name="image")
    x = layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    for i, filters in enumerate((cfg.filters, cfg.filters * 2, cfg.filters * 4)):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        x = layers.MaxPooling2D(name=f"pool{i + 1}")(x)
        x = layers.Dropout(0.2, name=f"dropout{i + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    return _head(x, cfg, inputs, "baseline")


def vgg10(input_shape: tuple, cfg: ModelConfig) -> keras.Model:
    """The seed's best model: 8 conv layers in three VGG blocks, each closed by BatchNorm."""
    inputs = keras.Input(input_shape, name="image")
    x = layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    blocks = ((cfg.filters, 2), (cfg.filters * 2, 2), (cfg.filters * 4, 4))
    for b, (filters, convs) in enumerate(blocks, start=1):
        for c in range(1, convs + 1):
            x = layers.Conv2D(filters, 3, padding="same", activation="relu",
                              name=f"block{b}_conv{c}")(x)
        x = layers.BatchNormalization(name=f"block{b}_bn")(x)
        x = layers.MaxPooling2D(name=f"block{b}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    return _head(x, cfg, inputs, "vgg10")


def _spectrum(inputs, size: int):
    """Per-frequency standardised log-magnitude spectrum of the grayscale image, pooled to 16x16.

    GAN upsampling leaves periodic traces that show up as peaks at fixed frequencies.
    """
    x = ops.cast(inputs, "float32")
    gray = ops.mean(x, axis=-1) if inputs.shape[-1] == 3 else x[..., 0]
    real, imag = ops.fft2((gray, ops.zeros_like(gray)))
    log_mag = ops.expand_dims(ops.log(real * real + imag * imag + 1.0), -1)
    pooled = layers.AveragePooling2D(max(size // 16, 1), name="freq_pool")(log_mag)
    flat = layers.Flatten(name="freq_flatten")(pooled)
    return layers.BatchNormalization(momentum=0.9, name="freq_bn")(flat)


def fast(input_shape: tuple, cfg: ModelConfig) -> keras.Model:
    """Compact CPU model: a strided conv stem, depthwise-separable conv blocks with BatchNorm,
    global average pooling; optional FFT branch. BatchNorm momentum 0.9 because a few hundred
    steps is the whole training on a CPU."""
    inputs = keras.Input(input_shape, name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inputs)
    x = layers.Conv2D(cfg.filters, 3, strides=2, padding="same", use_bias=False,
                      name="stem_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    for b, (filters, convs) in enumerate(((1, 1), (2, 2), (4, 2), (8, 1)), start=1):
        for c in range(1, convs + 1):
            x = layers.SeparableConv2D(cfg.filters * filters, 3, padding="same", use_bias=False,
                                       name=f"block{b}_sepconv{c}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"block{b}_bn{c}")(x)
            x = layers.Activation("relu", name=f"block{b}_relu{c}")(x)
        x = layers.MaxPooling2D(name=f"block{b}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if cfg.freq_branch:
        spectrum = layers.Dense(32, activation="relu", name="freq_dense")(_spectrum(inputs, input_shape[0]))
        x = layers.Concatenate(name="features")([x, spectrum])
    x = layers.Dropout(cfg.dropout, name="features_dropout")(x)
    return _head(x, cfg, inputs, "fast" + ("_freq" if cfg.freq_branch else ""))


_caffe = faceres.caffe_input  # VGG16/ResNet50 preprocessing: RGB->BGR minus the mean pixel


def _torch(x):
    """DenseNet preprocessing: [0, 1], then per-channel ImageNet mean/std."""
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    return layers.Rescaling([1 / (255.0 * s) for s in std], offset=[-m / s for m, s in zip(mean, std)],
                            name="imagenet_norm")(x)


def _tf(x):
    """Xception preprocessing: [-1, 1]."""
    return layers.Rescaling(1 / 127.5, offset=-1.0, name="imagenet_norm")(x)


# name -> (keras.applications constructor name, its preprocessing)
APPLICATIONS = {
    "vgg16": ("VGG16", _caffe),
    "xception": ("Xception", _tf),
    "densenet121": ("DenseNet121", _torch),
    "resnet50": ("ResNet50", _caffe),
    "efficientnetb0": ("EfficientNetB0", lambda x: x),  # rescales itself; wants [0, 255]
}


def _application_weights(name: str, weights: str) -> str | None:
    """`weights` for a Keras Application: None (random) or an existing local file, never a download."""
    if not weights:
        return None
    if weights == "imagenet":
        raise FakefaceError(
            f"model.weights=imagenet: nothing is downloaded at run time. Download the "
            f"'{name}' ImageNet notop weights (.h5) yourself and pass model.weights=/path/to/file"
        )
    if not Path(weights).is_file():
        raise FakefaceError(f"model.weights: weights file not found: {weights}")
    return weights


def _application(name: str) -> Callable[[tuple, ModelConfig], keras.Model]:
    constructor, preprocess = APPLICATIONS[name]

    def build(input_shape: tuple, cfg: ModelConfig) -> keras.Model:
        weights = _application_weights(name, cfg.weights)
        inputs = keras.Input(input_shape, name="image")
        x = inputs
        if input_shape[-1] == 1:  # ImageNet models want three channels
            x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
        x = preprocess(x)
        # input_tensor inlines the application's layers into this graph (flat, so Grad-CAM
        # can reach its last conv layer by name).
        base = getattr(keras.applications, constructor)(
            include_top=False, weights=weights, input_tensor=x
        )
        x = layers.GlobalAveragePooling2D(name="avg_pool")(base.output)
        return _head(x, cfg, inputs, name)

    build.__doc__ = f"Keras Applications {constructor} with a small head; grayscale repeated to RGB."
    return build


def feature_blocks(cfg: ModelConfig) -> list[int]:
    """`model.feature_blocks` ("9,11,13") as sorted block numbers in 1..13."""
    try:
        blocks = sorted({int(b) for b in str(cfg.feature_blocks).split(",") if b.strip()})
    except ValueError:
        blocks = []
    if not blocks or not all(1 <= b <= len(faceres.BLOCKS) for b in blocks):
        raise FakefaceError(f"model.feature_blocks must list blocks in 1..{len(faceres.BLOCKS)}, "
                            f"e.g. 9,11,13; got {cfg.feature_blocks!r}")
    return blocks


def first_trainable_block(cfg: ModelConfig) -> int:
    """The first FaceRes block that trains (0 = the stem; 14 = none: frozen)."""
    return len(faceres.BLOCKS) + 1 - cfg.trainable_blocks


def faceres_classifier(input_shape: tuple, cfg: ModelConfig) -> keras.Model:
    """FaceRes (MobileNet-v1 pre-trained on VGGFace2 faces) with a linear head on the mean and
    spatial standard deviation of several blocks' activations: mid-depth texture statistics
    separate GAN faces better than the identity embedding at the top. The last
    `trainable_blocks` blocks train; `feature_norm` standardises the features (its statistics
    come from the probe with `training.probe_init`, else from training batches)."""
    if input_shape[-1] != 3:
        raise FakefaceError("model 'faceres' needs RGB crops: set data.color=rgb")
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    if tuple(input_shape[:2]) != (faceres.INPUT_SIZE,) * 2:
        x = layers.Resizing(faceres.INPUT_SIZE, faceres.INPUT_SIZE, name="resize")(x)
    blocks = faceres.backbone(faceres.caffe_input(x))
    features = []
    for b in feature_blocks(cfg):
        features.append(layers.GlobalAveragePooling2D(name=f"mean_{b}")(blocks[b]))
        # sqrt(var + eps), not ops.std: a dead (all-zero) map would give an infinite gradient.
        features.append(ops.sqrt(ops.var(blocks[b], axis=(1, 2)) + 1e-6))
    x = layers.Concatenate(name="features")(features)
    x = layers.BatchNormalization(center=False, scale=False, name="feature_norm")(x)
    x = layers.Dropout(cfg.dropout, name="features_dropout")(x)
    logit = layers.Dense(1, name="logit")(x)
    prob = layers.Activation("sigmoid", dtype="float32", name="prob")(logit)
    model = faceres.load_pretrained(keras.Model(inputs, prob, name="faceres"))
    first = first_trainable_block(cfg)
    for layer in model.layers:
        block = _block_of(layer.name)
        if block is not None and block < first:
            layer.trainable = False
    return model


def _block_of(name: str) -> int | None:
    """FaceRes block number of a backbone layer name (conv1 -> 0, conv_dw_9 -> 9), else None."""
    if name.startswith("conv1"):
        return 0
    if name.startswith(("conv_dw_", "conv_pw_")):
        return int(name.split("_")[2])
    return None


def frozen_outputs(model: keras.Model, cfg: ModelConfig) -> list:
    """The tensors where a FaceRes model's frozen part ends: what `training.cache_frozen`
    computes once. The features themselves when the backbone is frozen, else the last frozen
    block's output plus any earlier feature maps the head reads."""
    first = first_trainable_block(cfg)
    if first == 0:
        raise FakefaceError("training.cache_frozen needs a frozen part: model.trainable_blocks < 14")
    if first > len(faceres.BLOCKS):
        return [model.get_layer("features").output]
    names = [f"conv_pw_{b}_relu" for b in feature_blocks(cfg) if b < first - 1]
    names.append("conv1_relu" if first == 1 else f"conv_pw_{first - 1}_relu")
    return [model.get_layer(name).output for name in names]


MODELS: dict[str, Callable[[tuple, ModelConfig], keras.Model]] = {
    "baseline": baseline,
    "vgg10": vgg10,
    "fast": fast,
    **{name: _application(name) for name in APPLICATIONS},
    "faceres": faceres_classifier,
}


def check_model_config(cfg: Config) -> None:
    """Raise FakefaceError for an unknown model, a too-small input or unusable weights."""
    name = cfg.model.name
    if name not in MODELS:
        raise FakefaceError(f"model.name: unknown model '{name}'; choose one of {', '.join(MODELS)}")
    size = cfg.data.image_size
    if size < MIN_SIZE[name]:
        raise FakefaceError(
            f"data.image_size={size} is too small for model '{name}' (needs >= {MIN_SIZE[name]})"
        )
    if name in APPLICATIONS:
        _application_weights(name, cfg.model.weights)
    if name == "faceres":
        feature_blocks(cfg.model)
    if cfg.training.caches_frozen and name != "faceres":
        raise FakefaceError(f"training.cache_frozen needs a pretrained backbone (faceres), not '{name}'")


def build_model(cfg: Config) -> keras.Model:
    """Build `cfg.model.name` for `cfg.data.image_size` x `cfg.data.channels` inputs."""
    check_model_config(cfg)
    size = cfg.data.image_size
    return MODELS[cfg.model.name]((size, size, cfg.data.channels), cfg.model)


# ----------------------------------------------------------------------------- compile


def _optimizer(cfg: Config, total_steps: int) -> keras.optimizers.Optimizer:
    """The configured optimizer and schedule (names checked by `Config.validate`: one of
    config.OPTIMIZERS and config.SCHEDULES)."""
    opt = cfg.optimizer
    lr = opt.lr
    if opt.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(opt.lr, decay_steps=max(total_steps, 1))
    decay = opt.weight_decay or None
    makers = {
        "adam": lambda: keras.optimizers.Adam(lr, weight_decay=decay),
        "adamw": lambda: keras.optimizers.AdamW(lr, weight_decay=opt.weight_decay or 0.004),
        "sgd": lambda: keras.optimizers.SGD(lr, momentum=0.9, weight_decay=decay),
        "rmsprop": lambda: keras.optimizers.RMSprop(lr, weight_decay=decay),
    }
    return makers[opt.name]()


@keras.saving.register_keras_serializable(package="fakeface")
class HardLabels(keras.metrics.Metric):
    """A metric scored against 0/1 labels. Mixup blends labels, and Keras' AUC, precision and
    recall would count every blended label above 0 as fake; rounding gives each blend the
    label of its dominant image (mixup keeps that image's weight >= 0.5)."""

    def __init__(self, metric, name: str | None = None, **kwargs):
        if isinstance(metric, dict):
            metric = keras.metrics.deserialize(metric)
        super().__init__(name=name or metric.name, **kwargs)
        self.metric = metric

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.metric.update_state(keras.ops.round(y_true), y_pred, sample_weight)

    def result(self):
        return self.metric.result()

    def reset_state(self):
        self.metric.reset_state()

    def get_config(self) -> dict:
        return {"metric": keras.metrics.serialize(self.metric), "name": self.name}


def compile_metrics(cfg: Config) -> list:
    """Accuracy, AUC, precision and recall (against hard labels under mixup)."""
    metrics = [
        keras.metrics.BinaryAccuracy(name="accuracy"),
        keras.metrics.AUC(name="auc"),
        keras.metrics.Precision(name="precision"),
        keras.metrics.Recall(name="recall"),
    ]
    return [HardLabels(m) for m in metrics] if cfg.augment.mixup else metrics


def compile_model(model: keras.Model, cfg: Config, total_steps: int) -> keras.Model:
    """Adam (or the configured optimizer), binary cross-entropy, accuracy/AUC/precision/recall;
    XLA with `training.jit_compile` (under mixed_float16 Keras adds loss scaling itself)."""
    model.compile(
        optimizer=_optimizer(cfg, total_steps),
        loss=keras.losses.BinaryCrossentropy(label_smoothing=cfg.training.label_smoothing),
        metrics=compile_metrics(cfg),
        jit_compile=cfg.training.jit_compile,
    )
    return model
