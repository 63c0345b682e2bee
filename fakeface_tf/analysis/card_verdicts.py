"""The model card's sections on how verdicts are made: the threshold, the "uncertain" band
and its guarantee, and the calibration of P(fake)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fakeface_tf.analysis import calibration
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.files import read_json_object
from fakeface_tf.core.run_folder import RunFolder
from fakeface_tf.core.text import format_value, markdown_table
from fakeface_tf.models.calibration import read_calibration
from fakeface_tf.models.uncertainty import read_band


def threshold_section(root: Path) -> str:
    saved = read_json_object(RunFolder(root).threshold)
    if not saved:
        return "## Decision threshold\n0.5 (default; no threshold.json beside the model)."
    extra = f", target FPR {saved['target_fpr']}" if saved.get("target_fpr") is not None else ""
    return (f"## Decision threshold\n{format_value(saved.get('threshold'))}, chosen by "
            f"{saved.get('method', '?')}{extra} on {saved.get('data', '?')} "
            f"[{saved.get('split', '?')}] ({saved.get('created', '?')}); inference uses it.")


def band_section(root: Path, evaluations: list[dict]) -> str:
    """The "uncertain" band's guarantee and its condition, in plain words, and what it cost
    in evaluations beside the model; nothing when the model has no conformal.json."""
    try:
        band = read_band(root)
    except FakefaceError as exc:
        return f"## Uncertain verdicts\n{exc}"
    if band is None:
        return ""
    lines = ["## Uncertain verdicts",
             f"On faces like the calibration faces ({band.source or 'source not recorded'}, "
             f"{band.n_calibration} faces), the set of verdicts it gives contains the right one at "
             f"least {1 - band.alpha:.0%} of the time; P(fake) between {band.low:.3f} and "
             f"{band.high:.3f} is reported as uncertain. Fitted by {band.method} at alpha "
             f"{band.alpha}; on other faces (other generators, cameras, compression) the "
             "guarantee does not hold."]
    for m in evaluations:
        if m.get("coverage") is not None:
            lines.append(f"- {m.get('split', '?')} split of {m.get('data', '?')}: coverage "
                         f"{format_value(m['coverage'])} (share given a verdict), accuracy on "
                         f"decided faces {format_value(m.get('decided_accuracy'))}, "
                         f"{m.get('uncertain', '?')} uncertain.")
    return "\n".join(lines)


def calibration_section(root: Path) -> str:
    """The calibration map beside the model and its before/after table; nothing without one."""
    try:
        fitted = read_calibration(root)
    except FakefaceError as exc:
        return f"## Calibration\n{exc}"
    report = root / calibration.REPORT_DIR
    if fitted is None and not (report / calibration.TABLE_FILE).is_file():
        return ""
    if fitted is None:
        lines = ["## Calibration",
                 "P(fake) is the model's raw output: neither temperature nor Platt scaling, "
                 "fitted on the validation faces, beat it in log loss on held-out validation "
                 f"folds (`fakeface calibrate`). ECE uses {calibration.N_BINS} equal-width bins; "
                 "`test_ece_if_calibrated` is the ECE perfectly calibrated scores would still "
                 "show on this many faces, its noise floor."]
    else:
        lines = ["## Calibration",
                 f"P(fake) is calibrated by {fitted.describe()}, fitted on {fitted.n_fit} faces "
                 f"({fitted.source or 'source not recorded'}) and applied whenever the model loads; "
                 "the threshold and the uncertain band were mapped through the same increasing "
                 f"map, so no verdict changed. ECE uses {calibration.N_BINS} equal-width bins of "
                 "P(fake); `test_ece_if_calibrated` is the ECE perfectly calibrated scores would "
                 "still show on this many faces (labels drawn from the scores), its noise floor. "
                 "Isotonic regression is shown for comparison only (not shipped)."]
    try:
        frame = pd.read_csv(report / calibration.TABLE_FILE)
        lines += ["", markdown_table(frame.columns, frame.itertuples(index=False))]
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        lines.append(f"\nNo readable `{calibration.REPORT_DIR}/{calibration.TABLE_FILE}`: {exc}")
    if (report / calibration.FIGURE_FILE).is_file():
        lines += ["", f"![reliability]({calibration.REPORT_DIR}/{calibration.FIGURE_FILE})"]
    return "\n".join(lines)
