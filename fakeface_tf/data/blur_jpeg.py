"""CNNDetection's "Blur+JPEG (p)" training augmentation (Wang et al., CVPR 2020), which made a
detector trained on one GAN generalise to others: each image is blurred with probability p
(Gaussian, sigma ~ U[0, 3]), then JPEG re-compressed with probability p (quality ~ U{30..100}).

Every draw is a stateless op keyed on the batch's key, so the same key gives the same images
(datasets.augmenter's contract). Pixels are float32 in [0, 255], batches NxHxWxC.
"""

from __future__ import annotations

import tensorflow as tf

MAX_SIGMA = 3.0  # blur sigma is drawn from U[0, MAX_SIGMA] pixels
RADIUS = 12  # kernel half-width: scipy.ndimage.gaussian_filter's 4 sigma at MAX_SIGMA
QUALITY = (30, 100)  # JPEG quality drawn uniformly from these, both included


def _kernels(sigmas: tf.Tensor) -> tf.Tensor:
    """Normalised 1-D Gaussian taps (N x 2*RADIUS+1), one row per sigma; sigma 0 is the
    identity (a single centre tap), as in scipy."""
    x = tf.range(-RADIUS, RADIUS + 1, dtype=tf.float32)[None, :]
    safe = tf.maximum(sigmas, 1e-3)[:, None]
    taps = tf.exp(-(x**2) / (2.0 * safe**2))
    return taps / tf.reduce_sum(taps, axis=1, keepdims=True)


def gaussian_blur(images: tf.Tensor, sigmas: tf.Tensor) -> tf.Tensor:
    """Blur image i of the batch with a Gaussian of std `sigmas[i]` pixels, separably, borders
    mirrored with the edge pixel repeated (scipy's 'reflect'). The batch is folded into the
    channels so one depthwise convolution per axis blurs every image with its own kernel."""
    n, h, w, c = (tf.shape(images)[i] for i in range(4))
    taps = tf.repeat(_kernels(sigmas), c, axis=0)  # (N*C) x K, channel-major per image
    folded = tf.reshape(tf.transpose(images, [1, 2, 0, 3]), [1, h, w, n * c])
    padded = tf.pad(folded, [[0, 0], [RADIUS, RADIUS], [RADIUS, RADIUS], [0, 0]],
                    mode="SYMMETRIC")
    rows = tf.transpose(taps)[:, None, :, None]  # K x 1 x (N*C) x 1
    cols = tf.transpose(taps)[None, :, :, None]  # 1 x K x (N*C) x 1
    out = tf.nn.depthwise_conv2d(padded, rows, [1, 1, 1, 1], "VALID")
    out = tf.nn.depthwise_conv2d(out, cols, [1, 1, 1, 1], "VALID")
    return tf.transpose(tf.reshape(out, [h, w, n, c]), [2, 0, 1, 3])


def jpeg(images: tf.Tensor, qualities: tf.Tensor, picks: tf.Tensor) -> tf.Tensor:
    """JPEG-encode and decode image i at quality `qualities[i]` (int32) where `picks[i]`;
    the others pass untouched (and are not encoded). RGB or gray."""

    def one(args):
        image, quality, pick = args

        def recompress():
            pixels = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)
            return tf.cast(tf.image.adjust_jpeg_quality(pixels, quality), tf.float32)

        return tf.cond(pick, recompress, lambda: image)

    return tf.map_fn(one, (images, qualities, picks), fn_output_signature=tf.float32)


def blur_jpeg(images: tf.Tensor, probability: float, key: tf.Tensor) -> tf.Tensor:
    """Blur+JPEG(`probability`): blur each image with probability `probability` (sigma ~
    U[0, 3]), then re-compress each with probability `probability` (quality ~ U{30..100}),
    every draw keyed on `key` (shape [2])."""
    n = tf.shape(images)[0]
    keys = tf.random.experimental.stateless_split(key, 4)
    blur_pick = tf.random.stateless_uniform([n], keys[0]) < probability
    sigmas = tf.random.stateless_uniform([n], keys[1], 0.0, MAX_SIGMA)
    images = gaussian_blur(images, tf.where(blur_pick, sigmas, 0.0))
    jpeg_pick = tf.random.stateless_uniform([n], keys[2]) < probability
    qualities = tf.random.stateless_uniform([n], keys[3], QUALITY[0], QUALITY[1] + 1,
                                            dtype=tf.int32)
    return jpeg(images, qualities, jpeg_pick)
