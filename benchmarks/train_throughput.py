"""Training throughput of every registry model vs the machine's matmul peak.

For each model (built from its shipped config at 128x128 in that config's colour, batch 32,
synthetic data; FaceRes resizes to 224 inside and trains its whole graph here): a few
warm-up steps, then timed `fit` steps -> images/s. Forward FLOPs per image come from the TF
profiler on the frozen inference graph; a training step costs about 3x the forward pass, so
achieved GFLOP/s = FLOPs x 3 x img/s. Peak: the best of several large float32 matmuls.
Last line: `ratio=<best achieved / peak>`. Run: python benchmarks/train_throughput.py
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.framework.convert_to_constants import (  # noqa: E402
    convert_variables_to_constants_v2,
)

from fakeface_tf.core.config import REPO_ROOT, apply_overrides, load_config  # noqa: E402
from fakeface_tf.models.registry import MODELS, build_model, compile_model  # noqa: E402

SIZE, BATCH = 128, 32


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 GFLOP/s of an n x n matmul on this machine."""
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    matmul = tf.function(lambda: tf.reduce_sum(tf.linalg.matmul(a, b)))
    matmul().numpy()  # warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul().numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def forward_flops(model) -> float:
    """Floating-point operations of one image's forward pass, counted by the TF profiler."""
    spec = tf.TensorSpec((1, *model.input_shape[1:]), tf.float32)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    graph = convert_variables_to_constants_v2(concrete).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph, options=options).total_float_ops


def train_rate(model, warmup: int, steps: int) -> float:
    """Training images per second on one repeated synthetic batch."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (BATCH, *model.input_shape[1:])).astype("float32")
    labels = (np.arange(BATCH) % 2).astype("float32")
    ds = tf.data.Dataset.from_tensors((images, labels)).repeat()
    model.fit(ds, steps_per_epoch=warmup, epochs=1, shuffle=False, verbose=0)
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)
    return steps * BATCH / (time.perf_counter() - start)


def model_config(name: str):
    """The model as shipped (configs/<name>.yaml), at the benchmark's size and batch."""
    return apply_overrides(load_config(REPO_ROOT / "configs" / f"{name}.yaml"),
                           [f"data.image_size={SIZE}", f"training.batch_size={BATCH}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated names")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per model")
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    tf.get_logger().setLevel("ERROR")  # the v1 profiler API prints deprecation notes

    peak = matmul_peak()
    print(f"matmul peak (float32, 2048^2): {peak:.1f} GFLOP/s on {os.cpu_count()} CPUs")
    print(f"{'model':16s} {'params':>10s} {'MFLOP/img':>10s} {'img/s':>8s} {'GFLOP/s':>8s} {'% peak':>7s}")
    best = 0.0
    for name in args.models.split(","):
        cfg = model_config(name.strip())
        model = compile_model(build_model(cfg), cfg, total_steps=args.warmup + args.steps)
        flops = forward_flops(model)
        rate = train_rate(model, args.warmup, args.steps)
        achieved = flops * 3 * rate / 1e9
        best = max(best, achieved)
        print(f"{name:16s} {model.count_params():>10,d} {flops / 1e6:>10.1f} {rate:>8.1f} "
              f"{achieved:>8.1f} {100 * achieved / peak:>6.1f}%", flush=True)
    print(f"ratio={best / peak:.3f}")


if __name__ == "__main__":
    main()
