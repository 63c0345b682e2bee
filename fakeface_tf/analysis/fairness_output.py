"""The fairness report as people read it: the printed summary, fairness.json, by_group.csv,
scores.csv and the per-group figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from fakeface_tf.analysis.fairness_intervals import METHODS
from fakeface_tf.analysis.fairness_metrics import (
    ATTRIBUTES,
    INTERSECTIONS,
    group_order,
)
from fakeface_tf.core import plots
from fakeface_tf.core.files import write_text_atomic
from fakeface_tf.core.text import format_value

REPORT_DIR = "fairness"  # beside the model, unless told otherwise
REPORT_FILE = "fairness.json"
GROUPS_FILE = "by_group.csv"
SCORES_FILE = "scores.csv"
NO_FLAGS = "none: no gap's interval excludes zero"  # the summary's and the card's words


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


def _comparison_line(c: dict) -> str:
    """One available comparison as a table row (unprivileged minus privileged)."""
    aod = (_fmt(c["aod"], c["aod_ci"]) if not _missing(c["aod"]) else "n/a: no fakes on a side")
    odds = c["equalized_odds"]
    eod = _fmt(odds["value"], odds.get("ci")) + (" (FPR only)" if "only" in odds["basis"] else "")
    return (f"  {c['name']:18s} {c['n_unprivileged']:>5d}/{c['n_privileged']:<5d} "
            f"{_fmt(c['fpr_difference'], c['fpr_difference_ci']):25s} "
            f"{_fmt(c['dir'], c['dir_ci']):22s} {aod:25s} {eod}")


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def comparison_lines(comparisons: list[dict]) -> list[str]:
    """The binary comparisons as a table, or one line saying why there is none; unavailable
    comparisons are named with their reason in one line under the table."""
    available = [c for c in comparisons if "unavailable" not in c]
    missing = "; ".join(f"{c['name']} ({c['unavailable']})" for c in comparisons
                        if "unavailable" in c)
    if not available:
        why = missing or "the labels have none of the compared attributes"
        return [f"Binary comparisons: none available: {why}"]
    lines = ["Binary comparisons (unprivileged vs privileged, gaps unprivileged - privileged; "
             "favourable = called real):",
             f"  {'comparison':18s} {'n u/p':11s} {'FPR gap [95% CI]':25s} {'DIR [95% CI]':22s} "
             f"{'AOD [95% CI]':25s} EOD [95% CI]"]
    lines += [_comparison_line(c) for c in available]
    if missing:
        lines.append(f"  unavailable: {missing}")
    return lines


def summary(report: dict) -> str:
    """The printed summary: per-group rates, detection failures, comparisons, flags."""
    table = report["groups"]
    lines = [f"Fairness of {report['model']} on {report['rows']} faces ({report['part']}); "
             f"threshold {report['threshold']:.3f}",
             f"95% intervals: rates {METHODS['rate']}; gaps {METHODS['difference']}; "
             f"DIR {METHODS['ratio']}"]
    lines.append(f"{'attribute':9s} {'group':10s} {'n':>5s} {'no face':>8s}  "
                 f"{'FPR [95% CI]':26s} {'FNR [95% CI]':26s} accuracy")
    for row in table[table["attribute"].isin(("all",) + ATTRIBUTES)].itertuples():
        lines.append(f"{row.attribute:9s} {row.group:10s} {row.n:5d} {row.n_no_face:8d}  "
                     f"{_fmt(row.fpr, (row.fpr_lo, row.fpr_hi)):26s} "
                     f"{_fmt(row.fnr, (row.fnr_lo, row.fnr_hi)):26s} "
                     f"{_fmt(row.accuracy, (row.accuracy_lo, row.accuracy_hi))}")
    lines += comparison_lines(report["comparisons"])
    flags = report["flags"]
    lines.append("Flags (95% interval clear of zero, against the unprivileged side):" if flags
                 else f"Flags: {NO_FLAGS}")
    lines += [f"  - {flag}" for flag in flags]
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
