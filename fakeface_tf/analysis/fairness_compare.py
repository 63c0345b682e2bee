"""`fakeface fairness-compare RUN_A RUN_B LABELS_CSV`: before/after fairness of two models.

Both models are assessed (`fairness.assess`) on the same held-out labelled faces; the table
per group shows n, accuracy, FPR and FNR of each and their change.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fakeface_tf.analysis.fairness import assess
from fakeface_tf.analysis.fairness_metrics import ATTRIBUTES
from fakeface_tf.analysis.scoring import check_inputs
from fakeface_tf.core.files import write_text_atomic
from fakeface_tf.models.artifacts import model_root

OUT_DIR = "fairness-compare"  # in RUN_B's folder, unless told otherwise
TABLE_FILE = "compare.csv"


def compare(run_a, run_b, labels_csv, out=None, limit: int | None = None, seed: int = 0,
            labels_format: str | None = None, progress: bool = True) -> pd.DataFrame:
    """Before/after table per group (n, FPR, FNR, accuracy) of two models on the same
    assessment faces; each model's full report lands in `out`/a and `out`/b, the table in
    `out`/compare.csv (its folder in the table's `attrs["out"]`)."""
    check_inputs([run_a, run_b])  # both checked before the first one loads and is scored
    out = Path(out) if out else model_root(run_b) / OUT_DIR
    kwargs = dict(limit=limit, seed=seed, labels_format=labels_format, progress=progress)
    tables = [assess(run, labels_csv, out=out / side, **kwargs)["groups"]
              for side, run in (("a", run_a), ("b", run_b))]
    keys = ["attribute", "group"]
    columns = ["n", "accuracy", "fpr", "fnr"]
    table = tables[0][keys + columns].merge(tables[1][keys + columns], on=keys, how="outer",
                                            suffixes=("_a", "_b"), sort=False)
    for metric in ("accuracy", "fpr", "fnr"):
        table[f"{metric}_change"] = table[f"{metric}_b"] - table[f"{metric}_a"]
    write_text_atomic(out / TABLE_FILE, table.to_csv(index=False))
    table.attrs["out"] = str(out)
    return table


def summary(table: pd.DataFrame) -> str:
    """The single-attribute rows of the before/after table as aligned text."""
    return table[table["attribute"].isin(("all",) + ATTRIBUTES)].to_string(
        index=False, na_rep="n/a", float_format=lambda v: f"{v:.3f}")
