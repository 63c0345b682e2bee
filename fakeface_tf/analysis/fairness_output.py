"""The fairness report as people read it: the printed summary, fairness.json, by_group.csv,
scores.csv and the per-group figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from fakeface_tf.analysis.fairness_metrics import ATTRIBUTES, INTERSECTIONS, group_order
from fakeface_tf.core import plots
from fakeface_tf.core.files import write_text_atomic
from fakeface_tf.core.text import format_value

REPORT_DIR = "fairness"  # beside the model, unless told otherwise
REPORT_FILE = "fairness.json"
GROUPS_FILE = "by_group.csv"
SCORES_FILE = "scores.csv"


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
    rows_order, columns_order = (sorted(rows[a].unique(), key=lambda v, a=a: group_order((a,), (v,)))
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
    write_text_atomic(out / GROUPS_FILE, table.to_csv(index=False))
    write_text_atomic(out / SCORES_FILE, report["scores"].to_csv(index=False))
    figures = [plot_rates(table, a, out / f"rates_{a}.png") for a in ATTRIBUTES
               if (table["attribute"] == a).any()]
    figures += [plot_heatmap(table, attrs, out / f"heatmap_{'_x_'.join(attrs)}.png")
                for attrs in INTERSECTIONS if (table["attribute"] == " x ".join(attrs)).any()]
    payload = {k: v for k, v in report.items() if k not in ("groups", "scores")}
    payload["groups"] = table.to_dict(orient="records")
    payload["plots"] = [p.name for p in figures]
    write_text_atomic(out / REPORT_FILE, json.dumps(_clean(payload), indent=2))
    return out
