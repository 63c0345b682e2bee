"""Which pixels weighed most in a score: Grad-CAM++, SmoothGrad and Score-CAM heatmaps.

tf-keras-vis explains the model cut at its linear `logit` layer. Explanations always explain
the verdict that was given: the logit for "fake face" and the negated logit for "real face",
so the bright pixels are those that pushed the model towards what it said.

Keras and tf-keras-vis are imported where an explainer is built, not at the top: this module
is imported by `fakeface predict --help` and `fakeface serve --help`, which must not wait for
TensorFlow (tests/cli/test_cli.py guards that).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.models import artifacts

if TYPE_CHECKING:
    import keras

EXPLAIN_METHODS = ("gradcam++", "smoothgrad", "scorecam")
SMOOTH_SAMPLES = 20  # SmoothGrad noisy copies
SMOOTH_NOISE = 0.2  # their noise sigma, as a fraction of the crop's value range
SCORECAM_MAX_N = 32  # Faster-Score-CAM: only the 32 most varied activation maps are scored


def logit_model(model: keras.Model) -> keras.Model:
    """The classifier cut at its linear `logit` layer (Grad-CAM++ and saliency explain logits)."""
    import keras  # here, not at the top: see the module docstring

    try:
        logit = model.get_layer("logit").output
    except ValueError:
        raise FakefaceError(
            f"model {model.name!r} has no layer named 'logit'; explanations need the "
            "project's Dense(1, name='logit') head"
        ) from None
    return keras.Model(model.inputs, logit, name=f"{model.name}_logit")


def last_spatial_layer(model: keras.Model, prefix: str = "") -> str:
    """Name of the last layer before `<prefix>logit` with a 4D (N, H, W, C) output, H and W > 1;
    only layers whose names start with `prefix` (one member of an ensemble) count."""
    names = [layer.name for layer in model.layers]
    stop = names.index(prefix + "logit") if prefix + "logit" in names else len(names)
    for layer in reversed(model.layers[:stop]):
        if not layer.name.startswith(prefix):
            continue
        try:
            shape = tuple(layer.output.shape)
        except (AttributeError, ValueError):  # a layer called more than once has no one output
            continue
        if len(shape) == 4 and (shape[1] or 2) > 1 and (shape[2] or 2) > 1:
            return layer.name
    raise FakefaceError(f"model {model.name!r} has no convolutional (4D) layer to explain")


class Explainer:
    """tf-keras-vis explainers for one model, built once and reused for every image."""

    def __init__(self, model: keras.Model):
        # here, not at the top: see the module docstring
        import keras
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.saliency import Saliency
        from tf_keras_vis.scorecam import Scorecam

        cut = logit_model(model)
        # One layer for a single model; each member's own last maps for an ensemble, whose
        # heatmap is the mean of its members' maps.
        self.penultimates = [last_spatial_layer(model, prefix) for prefix in artifacts.member_prefixes(model)]
        self.gradcam = GradcamPlusPlus(cut, model_modifier=None)
        self.saliency = Saliency(cut, model_modifier=None)
        # Score-CAM softmaxes the model output before scoring, so it gets two columns
        # [0, logit]: their softmax is exactly [P(real), P(fake)].
        logit = cut.outputs[0]
        # A zero column from a layer (not a raw op) so its name cannot clash with the model's.
        zero = keras.layers.Rescaling(0.0, name="zero_logit")(logit)
        pair = keras.layers.Concatenate(name="logit_pair")([zero, logit])
        paired = keras.Model(model.inputs, pair, name=f"{model.name}_logit_pair")
        paired.predict = _quiet_predict(paired)  # Score-CAM calls predict(); no progress bars
        self.scorecam = Scorecam(paired, model_modifier=None)
        self.scorecam_max_n = [min(SCORECAM_MAX_N, paired.get_layer(name).output.shape[-1])
                               for name in self.penultimates]

    def __call__(self, method: str, crop: np.ndarray, fake: bool) -> np.ndarray:
        """A [0, 1] heatmap over the crop for the verdict given (fake: logit, real: -logit)."""
        seed = np.asarray(crop, np.float32)[None]
        sign = 1.0 if fake else -1.0
        if method == "gradcam++":
            cam = np.mean([self.gradcam(lambda out: sign * out[:, 0], seed, penultimate_layer=layer,
                                        seek_penultimate_conv_layer=False, normalize_cam=False)
                           for layer in self.penultimates], axis=0)
        elif method == "smoothgrad":
            cam = self._smoothgrad(seed)
        elif method == "scorecam":
            column = 1 if fake else 0
            cam = np.mean([self.scorecam(lambda out: out[:, column], seed, penultimate_layer=layer,
                                         seek_penultimate_conv_layer=False, max_N=max_n,
                                         normalize_cam=False)
                           for layer, max_n in zip(self.penultimates, self.scorecam_max_n)], axis=0)
        else:
            raise FakefaceError(f"explain must be one of {', '.join(EXPLAIN_METHODS)}, got {method!r}")
        return unit_range(np.asarray(cam, np.float64)[0])

    def _smoothgrad(self, seed: np.ndarray) -> np.ndarray:
        """SmoothGrad with all noisy copies in one batch (one gradient pass instead of
        `smooth_samples` passes); same noise level and averaging as tf-keras-vis's
        smooth_samples: mean |gradient| over samples, then max over channels. The gradient's
        sign is dropped, so the logit serves both verdicts."""
        rng = np.random.default_rng(0)  # the same image always gets the same map
        sigma = SMOOTH_NOISE * (seed.max() - seed.min())
        noisy = seed + rng.normal(0.0, sigma, (SMOOTH_SAMPLES,) + seed.shape[1:])
        grads = self.saliency(lambda out: out[:, 0], noisy.astype(np.float32),
                              keepdims=True, normalize_map=False)
        return np.asarray(grads).mean(axis=0).max(axis=-1)[None]


def unit_range(heat: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the map's own min and max (float32; all zeros when flat).

    tf-keras-vis's normalize adds an epsilon of 1e-7 to the range, which flattens the tiny
    gradients of a barely trained model, so maps are normalised here instead.
    """
    heat = np.nan_to_num(np.asarray(heat, np.float64))
    low, high = heat.min(), heat.max()
    if high <= low:
        return np.zeros(heat.shape, np.float32)
    return ((heat - low) / (high - low)).astype(np.float32)


def _quiet_predict(model: keras.Model):
    predict = model.predict

    def quiet(x, **kwargs):
        kwargs.setdefault("verbose", 0)
        return predict(x, **kwargs)

    return quiet
