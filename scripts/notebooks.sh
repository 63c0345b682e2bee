#!/usr/bin/env bash
# Re-execute the guided-tour notebooks (01-05) in full mode and store their outputs in place:
# what is committed. About 15 minutes on 2 CPU cores, 10 of them training two models in 02.
# CI runs them in fast mode instead (scripts/test.sh, nbval, into outputs/notebooks-fast/),
# without touching the stored outputs.
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
cd "$ROOT"
unset FAKEFACE_NB_FAST
rm -rf outputs/notebooks  # generated; records from a fast-mode run would not match
for notebook in notebooks/0*.ipynb; do
  echo "[notebooks] $notebook"
  SECONDS=0
  jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=-1 \
    --ExecutePreprocessor.record_timing=False "$notebook"
  echo "[notebooks] $notebook: ${SECONDS}s"
done
