"""The in-distribution fairness report as people read it: the summary, fairness_indist.json,
fpr_by_group.csv, fnr_by_group.csv, scores.csv, GEAR's confusion matrices, the per-group
figures, and its section of the model card."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from fakeface_tf.core import plots
from fakeface_tf.core.files import write_text_atomic
from fakeface_tf.core.run_folder import (
    FAIRNESS_INDIST_DIR,
    FAIRNESS_INDIST_FILE,
    FNR_GROUPS_FILE,
    FPR_GROUPS_FILE,
    INDIST_SCORES_FILE,
)
from fakeface_tf.core.text import format_value

log = logging.getLogger(__name__)

TABLES = {"fpr_groups": FPR_GROUPS_FILE, "fnr_groups": FNR_GROUPS_FILE, "scores": INDIST_SCORES_FILE}
SINGLE = ("all", "age", "gender", "race")  # the summary and card leave intersections to the CSVs


def _fmt(row, rate: str) -> str:
    return format_value(row[rate], (row[f"{rate}_lo"], row[f"{rate}_hi"]), missing="n/a")


def table_lines(table: pd.DataFrame, rate: str) -> list[str]:
    """One line per group of each single attribute: n, faces not found, the rate [95% CI]."""
    lines = [f"  {'attribute':9s} {'group':10s} {'n':>5s} {'no face':>8s}  {rate.upper()} [95% CI]"]
    for _, row in table[table["attribute"].isin(SINGLE)].iterrows():
        lines.append(f"  {row['attribute']:9s} {row['group']:10s} {row['n']:5d} "
                     f"{row['n_no_face']:8d}  {_fmt(row, rate)}")
    return lines


def _check_line(name: str, check: dict, attrs) -> str:
    parts = ", ".join(f"{a} {format_value(check[a]['accuracy'], check[a]['ci'])} (n={check[a]['n']})"
                      for a in attrs if a in check)
    return f"  {name}: {parts}"


def _estimator_lines(report: dict) -> list[str]:
    """Each estimator's agreement with the Face API on the reals, and GEAR's on UTKFace."""
    lines = [_check_line(f"{name} vs the Face API on these reals", check, ("gender", "age"))
             for name, check in report["estimator"]["face_api"].items()]
    utk = report["estimator"]["utkface"]
    if utk:
        lines += [_check_line("gear vs UTKFace labels", utk, ("gender", "race", "age")),
                  f"  ({utk['caveat']})"]
    return lines


def summary(report: dict) -> str:
    """The printed summary: what each table measures, both tables, the estimators' accuracy."""
    counts = report["counts"]
    lines = [f"In-distribution fairness of {report['model']}: records {report['records']}, "
             f"splits {'+'.join(report['splits'])}, threshold {report['threshold']:.3f}",
             f"Dropped from {counts['attribute_rows']} attribute rows: "
             f"{counts['in_training_split']} of the training split (never scored), "
             f"{counts['not_in_records']} not in the records.",
             f"FPR by group: {report['measures']['fpr']}."]
    lines += table_lines(report["fpr_groups"], "fpr")
    lines.append(f"FNR by group: {report['measures']['fnr']}.")
    for (estimator, source), part in report["fnr_groups"].groupby(["estimator", "set"], sort=False):
        lines.append(f" fakes: {source}; {report['fake_groups'][estimator]}")
        lines += table_lines(part, "fnr")
    lines += ["Group estimators' agreement, 95% CI:"] + _estimator_lines(report)
    lines.append(f"Intervals: {report['ci']}")
    return "\n".join(lines)


def _confusion_csv(check: dict, path: Path) -> Path:
    frame = pd.DataFrame(check["confusion"], index=[f"true {c}" for c in check["classes"]],
                         columns=[f"estimated {c}" for c in check["classes"]])
    write_text_atomic(path, frame.to_csv())
    return path


def _figures(report: dict, out: Path) -> list[Path]:
    """Per-group bars: FPR by the Face API's groups; FNR of the records' fakes by each
    estimator's groups."""
    figures = []
    fpr, fnr = report["fpr_groups"], report["fnr_groups"]
    parts = [("fpr", "Face API", fpr, ("age", "gender"))]
    parts += [(f"fnr_{name}", name, fnr[(fnr["estimator"] == name) & (fnr["set"] == "records")],
               ("age", "gender", "race")) for name in fnr["estimator"].unique()]
    for stem, who, table, attrs in parts:
        for attr in attrs:
            rows = table[table["attribute"] == attr]
            if len(rows):
                figures.append(plots.group_rates(rows, f"{attr} ({who} estimate)",
                                                 out / f"{stem}_{attr}.png"))
    return figures


def write_report(report: dict, out: Path) -> Path:
    """Every file of the report into `out`; the summary goes to the log."""
    out.mkdir(parents=True, exist_ok=True)
    for key, name in TABLES.items():
        write_text_atomic(out / name, report[key].to_csv(index=False))
    payload = {k: v for k, v in report.items() if k not in TABLES}
    for key in ("fpr_groups", "fnr_groups"):
        payload[key] = json.loads(report[key].to_json(orient="records"))  # NaN -> null
    utk = report["estimator"]["utkface"] or {}
    payload["confusion_files"] = [_confusion_csv(utk[a], out / f"gear_utkface_{a}.csv").name
                                  for a in ("gender", "race", "age") if a in utk]
    payload["plots"] = [p.name for p in _figures(report, out)]
    write_text_atomic(out / FAIRNESS_INDIST_FILE, json.dumps(payload, indent=2))
    log.info(summary(report))
    log.info("Report: %s", out)
    return out


def _card_table(rows: list[dict], rate: str) -> list[str]:
    rows = [r for r in rows if r.get("attribute") in SINGLE]
    lines = [f"| attribute | group | n | no face | {rate.upper()} [95% CI] |", "|---|---|---|---|---|"]
    lines += [f"| {r['attribute']} | {r['group']} | {r['n']} | {r['n_no_face']} | "
              f"{format_value(r[rate], (r[f'{rate}_lo'], r[f'{rate}_hi']), missing='n/a')} |"
              for r in rows]
    return lines


def _other_fakes(rows: list[dict], where: str) -> list[str]:
    """One line per set of fakes beyond the records (another generator): its overall FNR."""
    overall = {r["set"]: r for r in rows if r["set"] != "records" and r["attribute"] == "all"}
    return [f"\nFakes of {name} (another generator): FNR "
            f"{format_value(r['fnr'], (r['fnr_lo'], r['fnr_hi']), missing='n/a')} on {r['n']}; "
            f"per group in `{where}`." for name, r in overall.items()]


def card_section(root: Path) -> str:
    """The model card's "In-distribution fairness" section, from fairness_indist.json."""
    lines = ["## In-distribution fairness"]
    try:
        report = json.loads((root / FAIRNESS_INDIST_DIR / FAIRNESS_INDIST_FILE).read_text())
    except (OSError, ValueError):
        return "\n".join(lines + ["No report (run `fakeface fairness-indist MODEL`)."])
    try:
        lines.append(f"Held-out splits {'+'.join(report['splits'])} of the training records "
                     f"(no training face scored), threshold {format_value(report['threshold'])}.")
        lines += ["", f"FPR: {report['measures']['fpr']}.", ""] + _card_table(report["fpr_groups"], "fpr")
        lines += ["", f"FNR: {report['measures']['fnr']}."]
        for estimator in dict.fromkeys(r["estimator"] for r in report["fnr_groups"]):
            rows = [r for r in report["fnr_groups"] if r["estimator"] == estimator]
            lines += ["", f"Held-out fakes; {report['fake_groups'][estimator]}.", ""]
            lines += _card_table([r for r in rows if r["set"] == "records"], "fnr")
        lines += _other_fakes(report["fnr_groups"], FNR_GROUPS_FILE)
        lines += ["", f"Intervals: {report['ci']}."] + [f"- {n}" for n in report.get("licences", [])]
    except (KeyError, TypeError) as exc:
        lines.append(f"`{FAIRNESS_INDIST_FILE}` unreadable: missing {exc}")
    return "\n".join(lines)
