"""Fairness statistics from arrays alone (no model): per-group rates with bootstrap intervals,
the seed project's binary comparisons (DIR, AOD, equalized odds) and their flags.

`y_true` is 1 for fake, `y_pred` 1 for called fake and NaN where no face was found. The
orientation (positive = fake, favourable = called real, who is privileged) is in `DEFINITIONS`
and in `fairness.py`'s docstring.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, equalized_odds_difference

from fakeface_tf.data.labelled import AGE_BINS, UNKNOWN, keyed_rng

ATTRIBUTES = ("age", "gender", "race")
INTERSECTIONS = (("race", "gender"), ("age", "gender"))
FOUR_FIFTHS = (0.8, 1.25)
N_BOOT = 1000
BOOT_CELLS = 2**21  # resampled faces drawn at once in a bootstrap (about 50 MB, whatever n)
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


def group_order(attrs, values) -> tuple:
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
        for values, point in sorted(found, key=lambda item: group_order(attrs, item[0])):
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
