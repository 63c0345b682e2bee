"""Read (and write) the weights of a TensorFlow.js model: `model.json` + its binary shards.

A TF.js `weightsManifest` is a list of groups; each group names its shard files (`paths`) and
its tensors (`weights`: name, shape, dtype and an optional `quantization`). The tensors lie
back to back in the concatenated shards, in manifest order. Quantised tensors are stored as
float16, or as uint8/uint16 codes `q` that decode affinely to `q * scale + min`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.files import replacing

DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
QUANTIZED = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}


def read_weights(model_json: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a TF.js model as {name: array} in its declared dtype and shape."""
    model_json = Path(model_json)
    try:
        manifest = json.loads(model_json.read_text())["weightsManifest"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FakefaceError(f"{model_json}: not a TF.js model.json with a weightsManifest ({exc})") from exc
    tensors = {}
    for group in manifest:
        blob = b"".join((model_json.parent / name).read_bytes() for name in group["paths"])
        offset = 0
        for spec in group["weights"]:
            array, offset = _decode(spec, blob, offset, model_json)
            tensors[spec["name"]] = array
        if offset != len(blob):
            raise FakefaceError(f"{model_json}: shards hold {len(blob)} bytes but the manifest "
                                f"describes {offset}")
    return tensors


def _decode(spec: dict, blob: bytes, offset: int, where: Path) -> tuple[np.ndarray, int]:
    """One tensor from `blob` at `offset`; returns it and the offset after it."""
    name, shape, dtype = spec["name"], tuple(spec["shape"]), spec["dtype"]
    if dtype not in DTYPES:
        raise FakefaceError(f"{where}: tensor {name!r} has unsupported dtype {dtype!r}")
    quant = spec.get("quantization")
    stored = np.dtype(QUANTIZED[quant["dtype"]] if quant else DTYPES[dtype])
    count = math.prod(shape)
    end = offset + count * stored.itemsize
    if end > len(blob):
        raise FakefaceError(f"{where}: the shards end before tensor {name!r}")
    values = np.frombuffer(blob, dtype=stored.newbyteorder("<"), count=count, offset=offset)
    if quant and quant["dtype"] in ("uint8", "uint16"):
        values = values * np.float32(quant["scale"]) + np.float32(quant["min"])
    return values.astype(DTYPES[dtype]).reshape(shape), end


def write_weights(tensors: dict[str, np.ndarray], folder: str | Path, quantize: str | None = None,
                  name: str = "model") -> Path:
    """Write `tensors` as a TF.js weights manifest + one shard; `quantize` is None, "float16",
    "uint8" or "uint16" (float tensors only). Returns the `model.json` path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specs, chunks = [], []
    for key, array in tensors.items():
        array = np.asarray(array)
        dtype = {np.dtype(v): k for k, v in DTYPES.items()}[array.dtype]
        spec = {"name": key, "shape": list(array.shape), "dtype": dtype}
        if quantize and dtype == "float32":
            if quantize == "float16":
                array = array.astype(np.float16)
            else:
                top = np.iinfo(QUANTIZED[quantize]).max
                low, high = float(array.min()), float(array.max())
                scale = (high - low) / top or 1.0
                array = np.round((array - low) / scale).astype(QUANTIZED[quantize])
                spec["quantization"] = {"dtype": quantize, "scale": scale, "min": low}
            spec.setdefault("quantization", {"dtype": quantize})
        specs.append(spec)
        chunks.append(array.astype(array.dtype.newbyteorder("<")).tobytes())
    shard = f"{name}.bin"
    (folder / shard).write_bytes(b"".join(chunks))
    model_json = folder / f"{name}.json"
    model_json.write_text(json.dumps({"format": "graph-model", "modelTopology": {},
                                      "weightsManifest": [{"paths": [shard], "weights": specs}]}))
    return model_json


def save_converted(model, weights: dict[str, list] | None, target: str | Path) -> Path:
    """Set `weights` ({Keras layer name: arrays}, None when the model holds them already) and
    save the model's weights to `target` atomically: a killed conversion never leaves a file
    that looks done."""
    for name, values in (weights or {}).items():
        model.get_layer(name).set_weights([np.asarray(v, np.float32) for v in values])
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with replacing(target, suffix=".weights.h5") as partial:
        model.save_weights(partial)
    return target

