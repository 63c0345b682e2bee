"""Fairness statistics from arrays alone (no model): per-group rates with 95 % intervals, the
seed project's binary comparisons (DIR, AOD, equalized odds) and their flags.

`y_true` is 1 for fake, `y_pred` 1 for called fake and NaN where no face was found. The
orientation (positive = fake, favourable = called real, who is privileged) is in `DEFINITIONS`
and in `fairness.py`'s docstring. Every interval is analytic (`fairness_intervals`: Wilson for
rates, Newcombe for differences, Katz for ratios), so a group with no errors still gets an
honest width. (The percentile bootstrap these replace gave 0 [0, 0] to such groups, and a
lower bound above 0 to every max - min gap, however equal the groups.)
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, equalized_odds_difference

from fakeface_tf.analysis.fairness_intervals import (
    METHODS,
    absolute,
    katz_ratio,
    newcombe,
    square_and_add,
    wilson,
)
from fakeface_tf.data.labelled import AGE_BINS, UNKNOWN

ATTRIBUTES = ("age", "gender", "race")
INTERSECTIONS = (("race", "gender"), ("age", "gender"))
FOUR_FIFTHS = (0.8, 1.25)
COUNT_NAMES = ("n", "n_no_face", "n_real", "n_fake")
RATE_NAMES = ("accuracy", "fpr", "fnr", "selection_rate", "no_face_rate")
# each rate as (hits, out of): keys of `_counts`
RATE_COUNTS = {"accuracy": ("correct", "scored"), "fpr": ("fp", "n_real"), "fnr": ("fn", "n_fake"),
               "selection_rate": ("flagged", "scored"), "no_face_rate": ("n_no_face", "n")}

# (attribute, unprivileged values, privileged values); None = every other known value
COMPARISONS = (
    ("gender", ("Female",), ("Male",)),
    ("race", None, ("White",)),
    ("race", ("Black",), None),
    ("age", ("0-2",), None),
    ("age", ("3-9",), None),
    ("age", ("70+",), None),
)
CI_TEXT = (f"95%: rates {METHODS['rate']}; differences {METHODS['difference']}; AOD "
           f"{METHODS['aod']}; DIR {METHODS['ratio']}; equalized odds of a comparison: the larger "
           "of each bound over the |FPR gap| and |TPR gap| intervals; over all groups of an "
           "attribute: the same over every pair of groups (per-pair 95%, not simultaneous)")
DEFINITIONS = {
    "positive_class": "fake: FPR = real faces called fake, FNR = fakes called real, "
                      "selection rate = share called fake",
    "favourable": "called real",
    "privileged": "Male; White; everyone else in the Black, age 0-2, 3-9 and 70+ comparisons",
    "dir": "P(called real | unprivileged) / P(called real | privileged); 4/5 rule: 0.8..1.25",
    "aod": "0.5 * [(FPR_u - FPR_p) + (TPR_u - TPR_p)]; > 0: unprivileged flagged as fake more often",
    "aod_fpr_half": "0.5 * (FPR_u - FPR_p), reported where a side has no fakes",
    "ci": CI_TEXT,
    "flags": "a gap whose 95% interval lies wholly above 0 (FPR, TPR, AOD, no-face: the "
             "unprivileged side flagged as fake or missed more often), or a DIR below 0.8 whose "
             "interval lies wholly below 1",
    "null": "unavailable: the group has no faces of that class (never filled in)",
}
GAPS = {"fpr_difference": "FPR gap", "tpr_difference": "TPR gap", "aod": "AOD",
        "no_face_difference": "no-face gap"}


def _point(name: str):
    """One rate as a MetricFrame metric (fairlearn's FPR-only equalized odds)."""
    return lambda t, p: _rate(_counts(np.asarray(t), np.asarray(p, dtype=float)), name)


def _counts(t: np.ndarray, p: np.ndarray) -> dict[str, int]:
    """The counts every rate and interval is built from (`RATE_COUNTS`)."""
    scored = ~np.isnan(p)
    real, fake, flagged = (t == 0) & scored, (t == 1) & scored, p == 1
    return {"n": len(t), "n_no_face": int((~scored).sum()), "n_real": int(real.sum()),
            "n_fake": int(fake.sum()), "scored": int(scored.sum()),
            "correct": int(((t == p) & scored).sum()), "flagged": int(flagged.sum()),
            "fp": int((flagged & real).sum()), "fn": int((~flagged & fake).sum()),
            "tp": int((flagged & fake).sum())}


def _rate(counts: dict, name: str) -> float:
    hits, total = RATE_COUNTS[name]
    return counts[hits] / counts[total] if counts[total] else math.nan


def _groupings(groups: pd.DataFrame) -> list[tuple[str, ...]]:
    singles = [(a,) for a in ATTRIBUTES if a in groups.columns]
    return singles + [pair for pair in INTERSECTIONS if all(a in groups.columns for a in pair)]


def group_order(attrs, values) -> tuple:
    """Age bins in age order, other values alphabetically."""
    return tuple((AGE_BINS.index(v), v) if a == "age" and v in AGE_BINS else (len(AGE_BINS), v)
                 for a, v in zip(attrs, values))


def _group_row(attrs, values, counts: dict) -> dict:
    """One table row: the group, its counts, each rate with its Wilson interval."""
    row = {"attribute": " x ".join(attrs), "group": " / ".join(values),
           **{a: (dict(zip(attrs, values)).get(a, "")) for a in ATTRIBUTES}}
    row.update({k: counts[k] for k in COUNT_NAMES})
    for name, (hits, total) in RATE_COUNTS.items():
        row[name] = _rate(counts, name)
        row[f"{name}_lo"], row[f"{name}_hi"] = wilson(counts[hits], counts[total])
    return row


def group_metrics(y_true, y_pred, groups: pd.DataFrame) -> pd.DataFrame:
    """One row per group of each attribute and intersection (plus "all"): counts, rates and
    Wilson 95 % intervals (`<rate>_lo`, `<rate>_hi`).

    `y_true` is 1 for fake, `y_pred` 1 for called fake and NaN where no face was found
    (counted in `n_no_face`, left out of the other rates). Rates without cases are NaN.
    """
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.float64)
    groups = groups.reset_index(drop=True).astype(str)
    everyone = pd.DataFrame({"all": np.full(len(t), "all")})
    rows = []
    for attrs, table in [(("all",), everyone)] + [(g, groups) for g in _groupings(groups)]:
        positions = {k if isinstance(k, tuple) else (k,): v
                     for k, v in table.groupby(list(attrs)).indices.items()}
        for values in sorted(positions, key=lambda v: group_order(attrs, v)):
            idx = positions[values]
            rows.append(_group_row(attrs, values, _counts(t[idx], p[idx])))
    return pd.DataFrame(rows)


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


def _comparison_stats(u: dict, v: dict) -> dict[str, tuple[float, float, float]]:
    """(point, lo, hi) of DIR, the gaps and AOD from the counts of the unprivileged (`u`) and
    privileged (`v`) sides; NaN where a side lacks the faces a statistic needs."""
    stats = {
        "dir": katz_ratio(u["scored"] - u["flagged"], u["scored"], v["scored"] - v["flagged"],
                          v["scored"]),
        "fpr_difference": newcombe(u["fp"], u["n_real"], v["fp"], v["n_real"]),
        "tpr_difference": newcombe(u["tp"], u["n_fake"], v["tp"], v["n_fake"]),
        "no_face_difference": newcombe(u["n_no_face"], u["n"], v["n_no_face"], v["n"]),
    }
    stats["aod_fpr_half"] = tuple(0.5 * x for x in stats["fpr_difference"])
    stats["aod"] = (tuple(0.5 * x for x in square_and_add(
        [(u["fp"], u["n_real"], 1), (v["fp"], v["n_real"], -1),
         (u["tp"], u["n_fake"], 1), (v["tp"], v["n_fake"], -1)]))
        if min(u["n_real"], v["n_real"], u["n_fake"], v["n_fake"]) > 0 else (math.nan,) * 3)
    return stats


def _comparison_odds(stats: dict) -> dict:
    """max(|FPR gap|, |TPR gap|) (fairlearn's equalized odds difference for two groups), with
    each bound the larger over the two gaps' Newcombe intervals mapped through |.|: if both
    gaps lie in their intervals, the max lies in this one (so its coverage is at least 90 %,
    by Bonferroni, and near 95 % when one gap dominates). FPR only where a side has no fakes."""
    parts = [absolute(*stats[key]) for key in ("fpr_difference", "tpr_difference")]
    parts = [part for part in parts if not math.isnan(part[0])]
    if not parts:
        return {"value": None, "ci": [None, None], "basis": "unavailable: no real faces on a side"}
    basis = ("max(|FPR gap|, |TPR gap|)" if len(parts) == 2 else
             "|FPR gap| only: a side has no fake faces")
    return {"value": max(x[0] for x in parts), "ci": [max(x[1] for x in parts),
                                                      max(x[2] for x in parts)], "basis": basis}


def _compare(t: np.ndarray, p: np.ndarray, values: pd.Series, spec) -> dict:
    """One binary comparison: counts, rates, every statistic with its interval, flags."""
    attribute, unprivileged, privileged = spec
    u, v = _sides(values, unprivileged, privileged)
    result = {"n_unprivileged": int(u.sum()), "n_privileged": int(v.sum())}
    if not u.any() or not v.any():
        return {**result, "unavailable": "no faces on one side"}
    counts_u, counts_p = _counts(t[u], p[u]), _counts(t[v], p[v])
    for side, counts in (("unprivileged", counts_u), ("privileged", counts_p)):
        result[side + "_rates"] = {name: _rate(counts, name) for name in RATE_NAMES}
    stats = _comparison_stats(counts_u, counts_p)
    for key, (point, lo, hi) in stats.items():
        result[key], result[key + "_ci"] = point, [lo, hi]
    result["equalized_odds"] = _comparison_odds(stats)
    return result


def binary_comparisons(y_true, y_pred, groups: pd.DataFrame) -> list[dict]:
    """The seed's binary comparisons: DIR, gaps, AOD and equalized odds, with 95 % intervals
    (`DEFINITIONS["ci"]`).

    AOD = 0.5 * [(FPR_u - FPR_p) + (TPR_u - TPR_p)]; where a side has no fakes the TPR part,
    and so AOD, is unavailable and `aod_fpr_half` = 0.5 * (FPR_u - FPR_p) is reported instead.
    """
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.float64)
    groups = groups.reset_index(drop=True).astype(str)
    results = []
    for spec in COMPARISONS:
        attribute, unprivileged, privileged = spec
        result = {"name": comparison_name(*spec), "attribute": attribute,
                  "unprivileged": _side_label(unprivileged, privileged),
                  "privileged": _side_label(privileged, unprivileged)}
        if attribute not in groups.columns:
            result["unavailable"] = f"no {attribute} column"
        else:
            result.update(_compare(t, p, groups[attribute], spec))
        if "unavailable" not in result:
            result["flags"] = _flags(result)
        results.append(result)
    return results


def _flags(result: dict) -> list[str]:
    """Only what counts against the unprivileged side with its interval clear of no effect:
    a DIR under 0.8 whose interval lies below 1, a gap whose interval lies above 0."""
    flags = []
    ratio, (lo, hi) = result["dir"], result["dir_ci"]
    if ratio < FOUR_FIFTHS[0] and hi < 1:
        flags.append(f"{result['name']}: disparate impact ratio {ratio:.2f}, 95% CI [{lo:.2f}, "
                     f"{hi:.2f}], is below the 4/5 rule's {FOUR_FIFTHS[0]} (favourable = called real)")
    for key, label in GAPS.items():
        lo, hi = result[key + "_ci"]
        if lo > 0:
            flags.append(f"{result['name']}: {label} {result[key]:+.3f} "
                         f"(unprivileged - privileged), 95% CI [{lo:+.4f}, {hi:+.4f}] excludes zero")
    return flags


def _equalized_odds(t: np.ndarray, p: np.ndarray, features: np.ndarray) -> dict:
    """fairlearn's equalized odds difference when every group has both classes; otherwise the
    FPR part only, said so (a TPR gap needs fakes in every group)."""
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


def _attribute_odds(t: np.ndarray, p: np.ndarray, labels: np.ndarray) -> dict:
    """`_equalized_odds` over every group of one attribute (the largest |gap| over all pairs of
    groups), its interval built like a comparison's: each bound is the largest over all pairs
    (and over FPR and TPR) of that pair's |gap| Newcombe bound, so the point always lies inside
    and two groups give exactly their comparison's interval. Each pair's interval is 95 %; their
    max is not a simultaneous 95 % interval: a rough range, read with the per-pair gaps."""
    odds = _equalized_odds(t, p, labels)
    if odds["value"] is None:
        return {**odds, "ci": [None, None]}
    rates = [("fp", "n_real")] + ([] if odds["basis"].startswith("FPR") else [("tp", "n_fake")])
    counts = [_counts(t[labels == g], p[labels == g]) for g in sorted(set(labels))]
    bounds = [absolute(*newcombe(a[hits], a[total], b[hits], b[total]))
              for hits, total in rates for a, b in combinations(counts, 2)]
    bounds = [b for b in bounds if not math.isnan(b[0])]
    return {**odds, "ci": [max(b[1] for b in bounds), max(b[2] for b in bounds)]}


def fairness_report(y_true, y_pred, groups: pd.DataFrame) -> dict:
    """Everything `fakeface fairness` reports, from arrays alone (no model needed)."""
    table = group_metrics(y_true, y_pred, groups)
    comparisons = binary_comparisons(y_true, y_pred, groups)
    t, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.float64)
    odds = {}
    for attrs in _groupings(groups):
        labels = groups[list(attrs)].astype(str).agg(" / ".join, axis=1).to_numpy()
        odds[" x ".join(attrs)] = _attribute_odds(t, p, labels)
    return {
        "groups": table,
        "comparisons": comparisons,
        "equalized_odds": odds,
        "flags": [flag for c in comparisons for flag in c.get("flags", [])],
    }
