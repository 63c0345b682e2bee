#!/usr/bin/env bash
# Rebuild saved_models/reference/ from the sample: crops, three seeds of configs/reference.yaml,
# their ensemble, and everything shipped beside it (threshold, evaluations, robustness,
# fairness, card). About 50 minutes on 2 CPU cores; OUT=elsewhere keeps the shipped one.
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
cd "$ROOT"
DATA="${FAKEFACE_DATA:-../shared/data}"
RECORDS=data/records_rgb128_nolevel
OUT="${OUT:-saved_models/reference}"
RUNS="${RUNS:-runs/reference}"

fakeface preprocess "$DATA/faces" "$RECORDS" --color rgb --no-level
members=()
for seed in 42 7 11; do
  fakeface train configs/reference.yaml --set training.seed=$seed name=reference-seed$seed --runs-dir "$RUNS"
  members+=("$(ls -d "$RUNS"/reference-seed$seed-* | tail -1)")
done
fakeface ensemble "${members[@]}" --out "$OUT"
fakeface evaluate "$OUT" "$RECORDS" --threshold auto
fakeface evaluate "$OUT" "$DATA/faces_extra" --out "$OUT/eval-faces_extra"
fakeface robustness "$OUT" "$RECORDS"
fakeface fairness "$OUT" "$DATA/fairness/labels.csv"
# Before/after retraining with the labelled faces (one member's recipe with and without them).
fakeface train configs/reference.yaml --set data.fairness_labels=fairness/labels.csv name=reference-fairmix --runs-dir "$RUNS"
fakeface fairness-compare "${members[0]}" "$(ls -d "$RUNS"/reference-fairmix-* | tail -1)" \
  "$DATA/fairness/labels.csv" --out "$RUNS/fairness-compare"
cp "$RUNS/fairness-compare/compare.csv" "$OUT/fairness_compare.csv"
fakeface card "$OUT"
