"""Fairness audit: does the detector call real people fake more often in some groups?

`fakeface fairness MODEL LABELS_CSV` crops every labelled face with the model's own face
options (the same `faces.crop_files` as everywhere), scores it, and reports per group of age,
gender, race and the race x gender and age x gender intersections: n, faces not found,
accuracy, false positive rate on real faces (real people called fake: the direct harm),
false negative rate on fakes (only where the group has fakes; otherwise unavailable, never
filled in) and selection rate, each with a Wilson 95 % interval (`fairness_intervals`). It
adds the seed project's binary comparisons as disparate impact ratio (DIR), average odds
difference (AOD) and equalized odds difference, and flags only what counts against the
unprivileged group: a DIR below 0.8 whose interval lies below 1, a gap whose interval lies above 0.

Orientation: the positive class is *fake* (label 1, what the model flags); the favourable
outcome is being called *real*. In every comparison the privileged (reference) side is the
group such systems are usually found to serve best: Male, White, and for the single-group
comparisons (Black, age 0-2, 3-9, 70+) everyone else. So DIR = P(called real | unprivileged)
/ P(called real | privileged) below 1, and AOD or FPR gaps above 0, mean the unprivileged
group is flagged as fake more often.

Labelled faces also feed training (`data.fairness_labels`, see `labelled.py`, which reads the
labels CSV and cuts and caches the faces): `labelled.split_labels` cuts the CSV into a
training part and an assessment part by a fixed-seed split stratified by race x gender x age
(real/fake pairs sharing a `pair_id` stay together), so the assessment never sees a face
the model trained on. `fakeface fairness` therefore assesses the assessment part unless
`--all-rows` is given.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fakeface_tf.analysis.fairness_metrics import (
    ATTRIBUTES,
    DEFINITIONS,
    binary_comparisons,
    comparison_name,
    fairness_report,
    group_metrics,
)
from fakeface_tf.analysis.fairness_output import REPORT_DIR, summary, write_report
from fakeface_tf.analysis.scoring import check_inputs
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data.labelled import (
    SPLIT_SEED,
    TEST_FRACTION,
    face_crops,
    labels_path,
    load_labels,
    split_labels,
    stratified_sample,
)
from fakeface_tf.data.records import LABELS
from fakeface_tf.models.artifacts import load_model
from fakeface_tf.training import tracking

__all__ = ["ATTRIBUTES", "SCORE_CHUNK", "assess", "binary_comparisons",
           "comparison_name", "fairness_report", "group_metrics", "score", "summary",
           "write_report"]

log = logging.getLogger(__name__)

SCORE_CHUNK = 256  # labelled files cut and scored at a time: a multiple of crop_files' batch of
# 16, so MTCNN sees each file in the same batch company (its boxes depend on it) as in one piece


def score(model, df: pd.DataFrame, threshold: float, progress: bool = True,
          batch_size: int = 64) -> pd.DataFrame:
    """`df` plus `status`, `prob` and `pred` (1 = called fake; NaN where no face was found).

    The faces are cut (`face_crops`, cached per chunk), scored and let go SCORE_CHUNK files at a
    time, so the crops held do not grow with the CSV; a status and a score per face stay."""
    paths = df["path"].tolist()
    status, reason, prob = [], [], np.full(len(paths), np.nan)
    bar = tqdm(total=len(paths), desc="faces+scoring", unit="img", disable=not progress)
    for start in range(0, len(paths), SCORE_CHUNK):
        faces = face_crops(paths[start:start + SCORE_CHUNK], model.face_options, progress=False)
        status.append(faces.status)
        reason.append(faces.reason)
        scores = [model.predict(faces.images[i:i + batch_size])
                  for i in range(0, len(faces.images), batch_size)]
        prob[start + np.flatnonzero(faces.ok)] = np.concatenate(scores) if scores else []
        bar.update(len(faces.status))
    bar.close()
    out = df.assign(status=np.concatenate(status) if status else np.array([], str),
                    reason=np.concatenate(reason) if reason else np.array([], str), prob=prob)
    out["pred"] = np.where(out["prob"].isna(), np.nan, (out["prob"] >= threshold).astype(float))
    return out


def measures(labels: pd.Series) -> str:
    """What this report measures, in one sentence (the summary's and fairness.json's)."""
    fakes = ", FNR on its labelled fakes" if (labels == "fake").any() else ""
    return ("This report measures FPR on real photos of known (labelled) groups, out of the "
            f"detector's format for UTKFace's 200 px crops{fakes}, and the no-face rate per "
            "group; `fakeface fairness-indist` measures the detector on its own held-out faces.")


def no_face_lines(table: pd.DataFrame) -> list[str]:
    """No face found, per single-attribute group: k of n, the rate and its 95 % interval."""
    rows = table[table["attribute"].isin(("all",) + ATTRIBUTES)]
    return ["No face found, per group (k/n, rate [95% CI]):"] + [
        f"  {r.attribute:9s} {r.group:10s} {r.n_no_face:4d}/{r.n:<5d} "
        f"{r.no_face_rate:.3f} [{r.no_face_rate_lo:.3f}, {r.no_face_rate_hi:.3f}]"
        for r in rows.itertuples()]


def _trained_on(model, labels_csv: Path) -> bool:
    used = model.config.data.fairness_labels if model.config else ""
    return bool(used) and labels_path(used, model.config.data.root).resolve() == labels_csv.resolve()


def assess(model_path, labels_csv, out=None, threshold: float | None = None,
           limit: int | None = None, seed: int = 0, labels_format: str | None = None,
           all_rows: bool = False, progress: bool = True) -> dict:
    """Score the labelled faces with a model and write the fairness report.

    Assesses the assessment part of `split_labels` (the faces training never sees) unless
    `all_rows`; `limit` takes a stratified subsample of that. Writes to `out` (default: the
    model's folder/fairness) and returns the report (JSON-ready except the DataFrames `groups`,
    one row per group, and `scores`, one row per face).
    """
    if seed < 0:
        raise FakefaceError(f"--seed must be >= 0, got {seed}")
    check_inputs([model_path])  # the cheap checks first: a wrong path fails in a second
    labels_csv = Path(labels_csv)
    df = load_labels(labels_csv, labels_format)
    model = load_model(model_path)
    if all_rows and _trained_on(model, labels_csv):
        raise FakefaceError(f"{model.root} was trained on part of {labels_csv}; "
                            "assess its held-out part (drop --all-rows)")
    part = "all rows" if all_rows else (f"assessment part: split seed {SPLIT_SEED}, "
                                        f"{TEST_FRACTION:.0%} of each race x gender x age stratum")
    if not all_rows:
        df = split_labels(df)[1]
    if limit:
        df = stratified_sample(df, limit, seed)
        part += f", stratified subsample of {limit}"
    threshold = model.threshold if threshold is None else float(threshold)
    scored = score(model, df, threshold, progress)
    report = fairness_report(scored["label"].map(LABELS), scored["pred"], scored[list(ATTRIBUTES)])
    report = {"model": str(model.path), "labels": str(labels_csv), "part": part, "rows": len(df),
              "threshold": threshold, "seed": seed,
              "split": {"seed": SPLIT_SEED, "test_fraction": TEST_FRACTION},
              "definitions": DEFINITIONS, "measures": measures(scored["label"]),
              "no_face": scored.loc[scored["status"] != "ok", ["file", "status", "reason"]]
              .to_dict(orient="records"),
              **report, "scores": scored.drop(columns=["path"])}
    out = Path(out) if out else model.root / REPORT_DIR
    write_report(report, out)
    log.info(summary(report))
    log.info("\n".join([report["measures"]] + no_face_lines(report["groups"])))
    log.info(f"Report: {out}")
    tracking.log_report(model.root, out.name, _figures(report), out)
    return report


def _figures(report: dict) -> dict:
    """The report's headline numbers for a tracker: every group's rates over all faces, each
    attribute's equalized-odds gap and how many gaps were flagged."""
    groups = report["groups"]
    overall = groups[groups["attribute"] == "all"].iloc[0].to_dict() if len(groups) else {}
    return {"rows": report["rows"], "flags": len(report["flags"]),
            "all": {k: v for k, v in overall.items() if k not in ("attribute", "group")},
            "equalized_odds": {a: e["value"] for a, e in report["equalized_odds"].items()}}
