#!/usr/bin/env bash
# What this machine's TensorFlow sees and how fast it trains the reference recipe: the physical
# devices, then one epoch of configs/faceres.yaml on its training records repeated COPIES times
# (symlinks, default 8), in faces per second. Runs on a CPU too (it says no GPU was found).
#   bash scripts/gpu_check.sh [COPIES] [KEY=VALUE ...]     (KEY=VALUE: config overrides)
#   FAKEFACE_GPU=1 bash scripts/gpu_check.sh 8 training.mixed_precision=true
# COPIES also multiplies the recipe's store of frozen-block outputs (training.cache_frozen);
# fewer COPIES or data.train_fraction=0.25 keep a small machine within bounds. Everything it
# writes goes to a temporary folder, deleted at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
COPIES="${1:-8}"
[ $# -gt 0 ] && shift
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"
python - "$WORK" "$COPIES" "$@" <<'EOF'
import json
import sys
import time
from pathlib import Path

import tensorflow as tf

from fakeface_tf.core import logs
from fakeface_tf.core.config import REPO_ROOT, load_config
from fakeface_tf.data.datasets import count_examples, records_path
from fakeface_tf.training.train import train

work, copies, overrides = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
gpus = tf.config.list_physical_devices("GPU")
print("devices:", ", ".join(f"{d.device_type} {d.name}" for d in tf.config.list_physical_devices()))
print(f"GPUs: {len(gpus)}" if gpus else "no GPU found: timing the CPU")

cfg = load_config(REPO_ROOT / "configs" / "faceres.yaml", ["training.epochs=1", *overrides])
source, records = records_path(cfg).resolve(), work / "records"
records.mkdir()
for path in source.iterdir():  # every split once, the training shards `copies` times
    if path.name.startswith("train-"):
        for copy in range(copies):
            (records / f"train-copy{copy}-{path.name[len('train-'):]}").symlink_to(path)
    elif path.is_file():
        (records / path.name).symlink_to(path)
cfg = load_config(REPO_ROOT / "configs" / "faceres.yaml",
                  ["training.epochs=1", *overrides, f"data.path={records}"])
faces = sum(count_examples(records, "train", cfg.data.train_fraction).values())
print(f"training faces: {faces} ({copies} copies of {source})")

logs.show()
started = time.perf_counter()
run = train(cfg, work / "runs", progress=False)
wall = time.perf_counter() - started
epoch = json.loads((run / "state.json").read_text())["train_seconds"]
auc = json.loads((run / "metrics.json").read_text())["auc"]
print(f"whole command (data, frozen pass, probe, 1 epoch, export): {wall:.1f} s, "
      f"{faces / wall:.1f} faces/s")
print(f"the epoch alone (state.json train_seconds): {epoch:.1f} s, {faces / epoch:.1f} faces/s; "
      f"validation AUC {auc:.4f}")
EOF
