#!/usr/bin/env bash
# Rebuild saved_models/reference/ from the sample: 224 px RGB views of the photo around each
# face (the recipe's cut, view "image"), configs/faceres.yaml
# (pretrained FaceRes, fetched once from npm), and everything shipped beside it: threshold,
# evaluations, robustness, fairness before/after, learning curve and card. The comparison
# runs (frozen backbone, smaller training sets) land in runs/reference/ for `fakeface runs`.
# At the end the model is registered in MLflow's registry (runs/reference/mlflow.db), so
# `serve` shows its version. It refuses a checkout with uncommitted changes, whose code could
# not be named afterwards: ALLOW_DIRTY=1 builds anyway (env.json then says "dirty": true).
# About 40 minutes on 2 CPU cores; OUT=elsewhere keeps the shipped one.
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
cd "$ROOT"
if [ -n "$(git status --porcelain --untracked-files=no)" ] && [ "${ALLOW_DIRTY:-0}" != 1 ]; then
  echo "reference.sh: the checkout has uncommitted changes (git status); commit them so the" >&2
  echo "model names the code that built it, or run with ALLOW_DIRTY=1" >&2
  exit 1
fi
DATA="${FAKEFACE_DATA:-../shared/data}"
RECORDS=data/records_rgb224_image
FACE_RECORDS=data/records_rgb224_face  # comparison (c): the face box alone
OUT="${OUT:-saved_models/reference}"
RUNS="${RUNS:-runs/reference}"
latest() { ls -d "$RUNS/$1"-* | tail -1; }

fakeface preprocess "$DATA/faces" "$RECORDS"  # the recipe's cut (config.recipe_data)
fakeface train configs/faceres.yaml --set name=reference --runs-dir "$RUNS" --quiet
run="$(latest reference)"
rm -rf "$OUT" && mkdir -p "$OUT"
cp -r "$run"/{model.keras,saved_model,config.yaml,env.json,metrics.json,history.csv,probe.json,face_cut.json} "$OUT"/
# the training run's MLflow record: later reports on $OUT log to that run, its version links it
if [ -f "$run/mlflow_run.json" ]; then cp "$run/mlflow_run.json" "$OUT"/; fi
fakeface evaluate "$OUT" "$RECORDS" --threshold auto --save-threshold --alpha 0.05  # threshold and band beside the model
fakeface calibrate "$OUT" "$RECORDS"  # ships a map only if it beats raw P(fake) on held-out validation folds
fakeface evaluate "$OUT" "$DATA/faces_extra" --out "$OUT/eval-faces_extra"
fakeface evaluate "$OUT" "$DATA/pairs/fake" --out "$OUT/eval-pairs_fake"  # pSp fakes: recall only, never trained on
fakeface robustness "$OUT" "$RECORDS"
fakeface fairness "$OUT" "$DATA/fairness/labels.csv"
fakeface fairness-indist "$OUT"  # its own held-out faces: FPR on FFHQ reals, FNR on fakes

# The comparisons: (a) the backbone frozen, only the head trained; (c) the face box alone, as
# the reference was cut until 2026-12-05; the learning curve.
fakeface train configs/faceres_frozen.yaml --runs-dir "$RUNS" --quiet
fakeface preprocess "$DATA/faces" "$FACE_RECORDS" --view face
fakeface train configs/faceres_face.yaml --runs-dir "$RUNS" --quiet
fakeface evaluate "$(latest faceres_face)" "$FACE_RECORDS" --threshold auto --alpha 0.05 --save-threshold \
  --out "$RUNS/eval-faceres_face"
fakeface evaluate "$(latest faceres_face)" "$DATA/faces_extra" --out "$RUNS/eval-faceres_face-faces_extra"
fakeface evaluate "$(latest faceres_face)" "$DATA/pairs/fake" --out "$RUNS/eval-faceres_face-pairs_fake"
for fraction in 0.25 0.5; do
  fakeface train configs/faceres.yaml --set name=reference-train$fraction \
    data.train_fraction=$fraction --runs-dir "$RUNS" --quiet
done
fakeface learning-curve "$(latest reference-train0.25)" "$(latest reference-train0.5)" "$run" \
  --data "$RECORDS" --out "$OUT"

# Before/after retraining with the labelled faces mixed in (same recipe).
fakeface train configs/faceres.yaml --set data.fairness_labels=fairness/labels.csv \
  name=reference-fairmix --runs-dir "$RUNS" --quiet
fakeface fairness-compare "$run" "$(latest reference-fairmix)" "$DATA/fairness/labels.csv" \
  --out "$RUNS/fairness-compare"
cp "$RUNS/fairness-compare/compare.csv" "$OUT/fairness_compare.csv"
fakeface card "$OUT" --write
fakeface register "$OUT" --runs-dir "$RUNS"  # registered.json: serve shows models:/reference/N
fakeface runs "$RUNS"
