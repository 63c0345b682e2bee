"""Fairness audit: does the detector call real people fake more often in some groups?

`fakeface fairness MODEL LABELS_CSV` crops every labelled face with the model's own face
options (the same `faces.crop_files` as everywhere), scores it, and reports per group of age,
gender, race and the race x gender and age x gender intersections: n, faces not found,
accuracy, false positive rate on real faces (real people called fake: the direct harm),
false negative rate on fakes (only where the group has fakes; otherwise unavailable, never
filled in) and selection rate, each with a seeded within-group bootstrap 95 % interval. It
adds the seed project's binary comparisons as disparate impact ratio (DIR), average odds
difference (AOD) and equalized odds difference, and flags DIRs outside the 4/5 rule and gaps
whose interval excludes zero.

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
import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fakeface_tf import plots
from fakeface_tf.errors import FakefaceError
from fakeface_tf.files import write_text_atomic
from fakeface_tf.labelled import (AGE_BINS, FORMATS, SPLIT_SEED, TEST_FRACTION, UNKNOWN,
                                  face_crops, keyed_rng, labels_path, load_labels, split_labels,
                                  stratified_sample)
from fakeface_tf.records import LABELS
from fakeface_tf.text import format_value

log = logging.getLogger(__name__)

ATTRIBUTES = ("age", "gender", "race")
INTERSECTIONS = (("race", "gender"), ("age", "gender"))
FOUR_FIFTHS = (0.8, 1.25)
N_BOOT = 1000
BOOT_CELLS = 2**21  # resampled faces drawn at once in a bootstrap (about 50 MB, whatever n)
SCORE_CHUNK = 256  # labelled files cut and scored at a time: a multiple of crop_files' batch of
# 16, so MTCNN sees each file in the same batch company (its boxes depend on it) as in one piece
COUNT_NAMES = ("n", "n_no_face", "n_real", "n_fake")
RATE_NAMES = ("accuracy", "fpr", "fnr", "selection_rate", "no_face_rate")

# (attribute, unprivileged values, privileged values); None = every other known value
COMPARISONS = (
    ("gender", ("Female",), ("Male",)),
    ("race", None, ("White",)),
    ("race", ("Black",), None),
    ("age", ("0-2",), None),
    ("age", ("3-9",), None),
    ("age", ("70+",), None),
)
DEFINITIONS = {
    "positive_class": "fake: FPR = real faces called fake, FNR = fakes called real, "
                      "selection rate = share called fake",
    "favourable": "called real",
    "privileged": "Male; White; everyone else in the Black, age 0-2, 3-9 and 70+ comparisons",
    "dir": "P(called real | unprivileged) / P(called real | privileged); 4/5 rule: 0.8..1.25",
    "aod": "0.5 * [(FPR_u - FPR_p) + (TPR_u - TPR_p)]; > 0: unprivileged flagged as fake more often",
    "aod_fpr_half": "0.5 * (FPR_u - FPR_p), reported where a side has no fakes",
    "ci": "95% percentile bootstrap, resampling within each group",
    "null": "unavailable: the group has no faces of that class (never filled in)",
}
GAPS = {"fpr_difference": "FPR gap", "tpr_difference": "TPR gap", "aod": "AOD",
        "no_face_difference": "no-face gap"}


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


# ----------------------------------------------------------------------------- metrics


def _ratio(hits: np.ndarray, total: np.ndarray) -> np.ndarray:
    """hits / total, NaN where total is 0 (a rate with no cases is unavailable, not 0)."""
    total = np.asarray(total, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, hits / np.where(total > 0, total, 1.0), np.nan)


def _rates(t: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """Rates along the last axis of 0/1 truths `t` and predictions `p` (NaN = no face)."""
    scored = ~np.isnan(p)
    real, fake, flagged = (t == 0) & scored, (t == 1) & scored, p == 1
    return {
        "accuracy": _ratio(((t == p) & scored).sum(-1), scored.sum(-1)),
        "fpr": _ratio((flagged & real).sum(-1), real.sum(-1)),
        "fnr": _ratio((~flagged & fake).sum(-1), fake.sum(-1)),
        "selection_rate": _ratio(flagged.sum(-1), scored.sum(-1)),
        "no_face_rate": _ratio((~scored).sum(-1), t.shape[-1]),
    }


def _point(name: str):
    """One rate as a MetricFrame metric, sharing `_rates` with the bootstrap."""
    return lambda t, p: float(_rates(np.asarray(t)[None], np.asarray(p, dtype=float)[None])[name][0])


def _counts(t, p) -> dict[str, int]:
    t, p = np.asarray(t), np.asarray(p, dtype=float)
    scored = ~np.isnan(p)
    return {"n": len(t), "n_no_face": int((~scored).sum()),
            "n_real": int(((t == 0) & scored).sum()), "n_fake": int(((t == 1) & scored).sum())}


_FRAME_METRICS = {**{k: (lambda t, p, k=k: _counts(t, p)[k]) for k in COUNT_NAMES},
                  **{name: _point(name) for name in RATE_NAMES}}


def _interval(samples: np.ndarray, point: float) -> tuple[float, float]:
    """Percentile 95 % interval; unavailable when the point estimate is."""
    samples = samples[~np.isnan(samples)]
    if np.isnan(point) or samples.size == 0:
        return math.nan, math.nan
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return float(lo), float(hi)


def _bootstrap(t: np.ndarray, p: np.ndarray, rng: np.random.Generator, n_boot: int) -> dict:
    """Rates of `n_boot` resamples (with replacement, same size) of one group, drawn
    BOOT_CELLS indices at a time: memory stays flat however large the group (the draws, and so
    the intervals, are those of one n_boot x n draw)."""
    rows = max(1, BOOT_CELLS // max(1, len(t)))
    sizes = [min(rows, n_boot - done) for done in range(0, n_boot, rows)] or [0]
    parts = [_rates(t[idx], p[idx])
             for idx in (rng.integers(0, len(t), size=(k, len(t))) for k in sizes)]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _groupings(groups: pd.DataFrame) -> list[tuple[str, ...]]:
    singles = [(a,) for a in ATTRIBUTES if a in groups.columns]
    return singles + [pair for pair in INTERSECTIONS if all(a in groups.columns for a in pair)]


def _order(attrs, values) -> tuple:
    """Age bins in age order, other values alphabetically."""
    return tuple((AGE_BINS.index(v), v) if a == "age" and v in AGE_BINS else (len(AGE_BINS), v)
                 for a, v in zip(attrs, values))


def group_metrics(y_true, y_pred, groups: pd.DataFrame, seed: int = 0,
                  n_boot: int = N_BOOT) -> pd.DataFrame:
    """One row per group of each attribute and intersection (plus "all"): counts, rates and
    bootstrap 95 % intervals (`<rate>_lo`, `<rate>_hi`).

    `y_true` is 1 for fake, `y_pred` 1 for called fake and NaN where no face was found
    (counted in `n_no_face`, left out of the other rates). Rates without cases are NaN.
    """
    from fairlearn.metrics import MetricFrame  # imports scikit-learn: 1-2 s, not for --help

    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.float64)
    groups = groups.reset_index(drop=True).astype(str)
    everyone = pd.DataFrame({"all": np.full(len(t), "all")})
    rows = []
    for attrs, table in [(("all",), everyone)] + [(g, groups) for g in _groupings(groups)]:
        frame = MetricFrame(metrics=_FRAME_METRICS, y_true=t, y_pred=p,
                            sensitive_features=table[list(attrs)])
        positions = {k if isinstance(k, tuple) else (k,): v
                     for k, v in table.groupby(list(attrs)).indices.items()}
        found = [(v if isinstance(v, tuple) else (v,), point)
                 for v, point in frame.by_group.dropna(subset=["n"]).iterrows()]
        for values, point in sorted(found, key=lambda item: _order(attrs, item[0])):
            idx = positions[values]
            boot = _bootstrap(t[idx], p[idx], keyed_rng(seed, *attrs, *values), n_boot)
            row = {"attribute": " x ".join(attrs), "group": " / ".join(values),
                   **{a: (dict(zip(attrs, values)).get(a, "")) for a in ATTRIBUTES}}
            row.update({k: int(point[k]) for k in COUNT_NAMES})
            for name in RATE_NAMES:
                row[name] = float(point[name])
                row[f"{name}_lo"], row[f"{name}_hi"] = _interval(boot[name], row[name])
            rows.append(row)
    return pd.DataFrame(rows)


def _comparison_stats(u: dict, p: dict) -> dict[str, np.ndarray]:
    """DIR, gaps and AOD from the rates of the unprivileged (`u`) and privileged (`p`) sides."""
    tpr_u, tpr_p = 1 - u["fnr"], 1 - p["fnr"]
    fpr_difference = u["fpr"] - p["fpr"]
    tpr_difference = tpr_u - tpr_p
    return {
        "dir": _ratio(1 - u["selection_rate"], 1 - p["selection_rate"]),
        "fpr_difference": fpr_difference,
        "tpr_difference": tpr_difference,
        "aod": 0.5 * (fpr_difference + tpr_difference),
        "aod_fpr_half": 0.5 * fpr_difference,
        "no_face_difference": u["no_face_rate"] - p["no_face_rate"],
    }


def _sides(values: pd.Series, unprivileged, privileged) -> tuple[np.ndarray, np.ndarray]:
    known = values != UNKNOWN
    u = values.isin(unprivileged) if unprivileged else known & ~values.isin(privileged)
    p = values.isin(privileged) if privileged else known & ~values.isin(unprivileged)
    return u.to_numpy(), p.to_numpy()


def _side_label(values, other) -> str:
    return " or ".join(values) if values else f"not {' or '.join(other)}"


def comparison_name(attribute: str, unprivileged, privileged) -> str:
    """A comparison's name, unprivileged side first like every table and gap in the report:
    Female vs Male, others vs White, age 0-2 vs others."""
    def side(values):
        return " or ".join(values) if values else "others"
    return f"{'age ' if attribute == 'age' else ''}{side(unprivileged)} vs {side(privileged)}"


def _equalized_odds(t: np.ndarray, p: np.ndarray, features: np.ndarray) -> dict:
    """fairlearn's equalized odds difference when every group has both classes; otherwise the
    FPR part only, said so (a TPR gap needs fakes in every group)."""
    from fairlearn.metrics import MetricFrame, equalized_odds_difference

    scored = ~np.isnan(p)
    t, p, features = t[scored], p[scored].astype(int), features[scored]
    if t.size == 0:
        return {"value": None, "basis": "unavailable: no faces found"}
    classes = pd.crosstab(features, t).reindex(columns=[0, 1], fill_value=0)
    if (classes > 0).all(axis=None):
        value = equalized_odds_difference(t, p, sensitive_features=features)
        return {"value": float(value),
                "basis": "fairlearn equalized_odds_difference (max of TPR and FPR gaps)"}
    fpr = MetricFrame(metrics=_point("fpr"), y_true=t, y_pred=p.astype(float),
                      sensitive_features=features).by_group.dropna()
    if len(fpr) < 2:
        return {"value": None, "basis": "unavailable: fewer than two groups with real faces"}
    return {"value": float(fpr.max() - fpr.min()),
            "basis": "FPR gap only (max - min over groups): some group has no fake faces"}


def binary_comparisons(y_true, y_pred, groups: pd.DataFrame, seed: int = 0,
                       n_boot: int = N_BOOT) -> list[dict]:
    """The seed's binary comparisons: DIR, gaps, AOD and equalized odds, with 95 % intervals.

    AOD = 0.5 * [(FPR_u - FPR_p) + (TPR_u - TPR_p)]; where a side has no fakes the TPR part,
    and so AOD, is unavailable and `aod_fpr_half` = 0.5 * (FPR_u - FPR_p) is reported instead.
    """
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.float64)
    groups = groups.reset_index(drop=True).astype(str)
    results = []
    for attribute, unprivileged, privileged in COMPARISONS:
        name = comparison_name(attribute, unprivileged, privileged)
        result = {"name": name, "attribute": attribute,
                  "unprivileged": _side_label(unprivileged, privileged),
                  "privileged": _side_label(privileged, unprivileged)}
        results.append(result)
        if attribute not in groups.columns:
            result["unavailable"] = f"no {attribute} column"
            continue
        u, v = _sides(groups[attribute], unprivileged, privileged)
        result.update(n_unprivileged=int(u.sum()), n_privileged=int(v.sum()))
        if not u.any() or not v.any():
            result["unavailable"] = "no faces on one side"
            continue
        rates_u, rates_p = _rates(t[u][None], p[u][None]), _rates(t[v][None], p[v][None])
        point = {k: float(x[0]) for k, x in _comparison_stats(rates_u, rates_p).items()}
        rng = keyed_rng(seed, "comparison", name)
        boot = _comparison_stats(_bootstrap(t[u], p[u], rng, n_boot),
                                 _bootstrap(t[v], p[v], rng, n_boot))
        for side, rates in (("unprivileged", rates_u), ("privileged", rates_p)):
            result[side + "_rates"] = {k: float(x[0]) for k, x in rates.items()}
        for key, value in point.items():
            result[key] = value
            result[key + "_ci"] = list(_interval(boot[key], value))
        sides = np.where(u, "unprivileged", np.where(v, "privileged", ""))
        both = u | v
        result["equalized_odds"] = _equalized_odds(t[both], p[both], sides[both])
        result["flags"] = _flags(result)
    return results


def _flags(result: dict) -> list[str]:
    flags = []
    ratio = result["dir"]
    if not np.isnan(ratio) and not FOUR_FIFTHS[0] <= ratio <= FOUR_FIFTHS[1]:
        lo, hi = result["dir_ci"]
        chance = "; its 95% CI includes 1" if lo <= 1 <= hi else ""
        flags.append(f"{result['name']}: disparate impact ratio {ratio:.2f} is outside the 4/5 rule "
                     f"({FOUR_FIFTHS[0]}..{FOUR_FIFTHS[1]}; favourable = called real){chance}")
    for key, label in GAPS.items():
        lo, hi = result[key + "_ci"]
        if not np.isnan(lo) and (lo > 0 or hi < 0):
            flags.append(f"{result['name']}: {label} {result[key]:+.3f} "
                         f"(unprivileged - privileged), 95% CI [{lo:+.3f}, {hi:+.3f}] excludes zero")
    return flags


def fairness_report(y_true, y_pred, groups: pd.DataFrame, seed: int = 0,
                    n_boot: int = N_BOOT) -> dict:
    """Everything `fakeface fairness` reports, from arrays alone (no model needed)."""
    table = group_metrics(y_true, y_pred, groups, seed, n_boot)
    comparisons = binary_comparisons(y_true, y_pred, groups, seed, n_boot)
    t, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.float64)
    labels = {attrs: groups[list(attrs)].astype(str).agg(" / ".join, axis=1).to_numpy()
              for attrs in _groupings(groups)}
    odds = {" x ".join(attrs): _equalized_odds(t, p, value) for attrs, value in labels.items()}
    return {
        "groups": table,
        "comparisons": comparisons,
        "equalized_odds": odds,
        "flags": [flag for c in comparisons for flag in c.get("flags", [])],
    }


# ------------------------------------------------------------------------------ output


def _clean(value):
    """JSON-ready: NaN becomes None (unavailable), numpy scalars become Python ones."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def plot_rates(table: pd.DataFrame, attribute: str, path: Path) -> Path:
    """Per-group FPR and FNR bars with 95 % CI whiskers (plots.group_rates)."""
    return plots.group_rates(table[table["attribute"] == attribute], attribute, path)


def plot_heatmap(table: pd.DataFrame, attrs: tuple[str, str], path: Path, metric: str = "fpr") -> Path:
    """A metric over an intersection (rows: first attribute, columns: second), with n per cell."""
    rows = table[table["attribute"] == " x ".join(attrs)]
    rows_order, columns_order = (sorted(rows[a].unique(), key=lambda v, a=a: _order((a,), (v,)))
                                 for a in attrs)
    grid, counts = (rows.pivot(index=attrs[0], columns=attrs[1], values=v)
                    .reindex(index=rows_order, columns=columns_order) for v in (metric, "n"))
    return plots.cell_heatmap(grid, counts, f"{metric.upper()} by {attrs[0]} x {attrs[1]}", path)


def _fmt(value, ci=None) -> str:
    """`text.format_value` with "n/a" for an unavailable rate."""
    return format_value(value, ci, missing="n/a")


def summary(report: dict) -> str:
    """The printed summary: per-group rates, detection failures, comparisons, flags."""
    table = report["groups"]
    lines = [f"Fairness of {report['model']} on {report['rows']} faces ({report['part']}); "
             f"threshold {report['threshold']:.3f}, {report['n_boot']} bootstrap resamples"]
    lines.append(f"{'attribute':9s} {'group':10s} {'n':>5s} {'no face':>8s}  "
                 f"{'FPR [95% CI]':26s} {'FNR [95% CI]':26s} accuracy")
    for row in table[table["attribute"].isin(("all",) + ATTRIBUTES)].itertuples():
        lines.append(f"{row.attribute:9s} {row.group:10s} {row.n:5d} {row.n_no_face:8d}  "
                     f"{_fmt(row.fpr, (row.fpr_lo, row.fpr_hi)):26s} "
                     f"{_fmt(row.fnr, (row.fnr_lo, row.fnr_hi)):26s} {_fmt(row.accuracy)}")
    lines.append("Binary comparisons (unprivileged vs privileged; favourable = called real):")
    for c in report["comparisons"]:
        if "unavailable" in c:
            lines.append(f"  {c['name']:18s} unavailable: {c['unavailable']}")
            continue
        aod = (f"AOD {_fmt(c['aod'], c['aod_ci'])}" if not math.isnan(c["aod"]) else
               f"AOD n/a (no fakes on a side); FPR half {_fmt(c['aod_fpr_half'], c['aod_fpr_half_ci'])}")
        odds = c["equalized_odds"]
        eod = "EOD (FPR only)" if odds["basis"].startswith("FPR") else "EOD"
        lines.append(f"  {c['name']:18s} DIR {_fmt(c['dir'], c['dir_ci'])}  {aod}  "
                     f"{eod} {_fmt(odds['value'])}")
    lines.append("Flags:" if report["flags"] else "Flags: none")
    lines += [f"  - {flag}" for flag in report["flags"]]
    return "\n".join(lines)


def write_report(report: dict, out: Path) -> Path:
    """fairness.json, by_group.csv and the plots into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    table = report["groups"]
    write_text_atomic(out / "by_group.csv", table.to_csv(index=False))
    write_text_atomic(out / "scores.csv", report["scores"].to_csv(index=False))
    plots = [plot_rates(table, a, out / f"rates_{a}.png") for a in ATTRIBUTES
             if (table["attribute"] == a).any()]
    plots += [plot_heatmap(table, attrs, out / f"heatmap_{'_x_'.join(attrs)}.png")
              for attrs in INTERSECTIONS if (table["attribute"] == " x ".join(attrs)).any()]
    payload = {k: v for k, v in report.items() if k not in ("groups", "scores")}
    payload["groups"] = table.to_dict(orient="records")
    payload["plots"] = [p.name for p in plots]
    write_text_atomic(out / "fairness.json", json.dumps(_clean(payload), indent=2))
    return out


# ----------------------------------------------------------------------------- assess


def _trained_on(model, labels_csv: Path) -> bool:
    used = model.config.data.fairness_labels if model.config else ""
    return bool(used) and labels_path(used, model.config.data.root).resolve() == labels_csv.resolve()



def assess(model_path, labels_csv, out=None, threshold: float | None = None,
           limit: int | None = None, seed: int = 0, labels_format: str | None = None,
           all_rows: bool = False, n_boot: int = N_BOOT, progress: bool = True) -> dict:
    """Score the labelled faces with a model and write the fairness report.

    Assesses the assessment part of `split_labels` (the faces training never sees) unless
    `all_rows`; `limit` takes a stratified subsample of that. Writes to `out` (default: the
    model's folder/fairness) and returns the report (JSON-ready except the DataFrames `groups`,
    one row per group, and `scores`, one row per face).
    """
    from fakeface_tf.artifacts import find_model, load_model

    if seed < 0 or n_boot < 1:
        raise FakefaceError(f"--seed must be >= 0 and --n-boot >= 1, got {seed} and {n_boot}")
    find_model(model_path)  # the cheap checks first: a wrong path fails in a second
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
    report = fairness_report(scored["label"].map(LABELS), scored["pred"], scored[list(ATTRIBUTES)],
                             seed, n_boot)
    report = {"model": str(model.path), "labels": str(labels_csv), "part": part, "rows": len(df),
              "threshold": threshold, "seed": seed, "n_boot": n_boot,
              "split": {"seed": SPLIT_SEED, "test_fraction": TEST_FRACTION},
              "definitions": DEFINITIONS,
              "no_face": scored.loc[scored["status"] != "ok", ["file", "status", "reason"]]
              .to_dict(orient="records"),
              **report, "scores": scored.drop(columns=["path"])}
    out = Path(out) if out else model.root / "fairness"
    write_report(report, out)
    log.info(summary(report))
    log.info(f"Report: {out}")
    return report


# --------------------------------------------------------------------------------- CLI


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The labels CSV and options `fairness` and `fairness-compare` share."""
    parser.add_argument("labels_csv", help="labels CSV: file,label,age,gender,race[,pair_id]")
    parser.add_argument("--out", default=None, help="output folder (default: beside the model, "
                        "in fairness/ or, for fairness-compare, RUN_B/fairness-compare/)")
    parser.add_argument("--format", choices=sorted(FORMATS), default=None,
                        help="labels CSV layout (default: fairface if it has a service_test "
                             "column and no label column, else utk)")
    parser.add_argument("--limit", type=int, default=None,
                        help="assess a stratified subsample of about N faces")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap and subsample seed")
    parser.add_argument("--n-boot", type=int, default=N_BOOT, help="bootstrap resamples")


def add_fairness_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run folder, saved_models/ entry, .keras file or SavedModel")
    add_common_arguments(parser)
    parser.add_argument("--threshold", type=float, default=None,
                        help="decision threshold (default: the model's threshold.json, else 0.5)")
    parser.add_argument("--all-rows", action="store_true",
                        help="assess every row, not only the held-out assessment part")


def run_fairness(args: argparse.Namespace) -> int:
    assess(args.model, args.labels_csv, out=args.out, threshold=args.threshold, limit=args.limit,
           seed=args.seed, labels_format=args.format, all_rows=args.all_rows, n_boot=args.n_boot)
    return 0
