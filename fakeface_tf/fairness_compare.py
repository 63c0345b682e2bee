"""`fakeface fairness-compare RUN_A RUN_B LABELS_CSV`: before/after fairness of two models.

Both models are assessed (`fairness.assess`) on the same held-out labelled faces; the table
per group shows n, accuracy, FPR and FNR of each and their change.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from fakeface_tf.fairness import ATTRIBUTES, N_BOOT, add_common_arguments, assess
from fakeface_tf.files import write_text_atomic


def compare(run_a, run_b, labels_csv, out=None, limit: int | None = None, seed: int = 0,
            labels_format: str | None = None, n_boot: int = N_BOOT,
            progress: bool = True) -> pd.DataFrame:
    """Before/after table per group (n, FPR, FNR, accuracy) of two models on the same
    assessment faces; each model's full report lands in `out`/a and `out`/b."""
    from fakeface_tf.artifacts import find_model, model_root

    for run in (run_a, run_b):  # both checked before the first one loads and is scored
        find_model(run)
    out = Path(out) if out else model_root(run_b) / "fairness-compare"
    kwargs = dict(limit=limit, seed=seed, labels_format=labels_format, n_boot=n_boot, progress=progress)
    tables = [assess(run, labels_csv, out=out / side, **kwargs)["groups"]
              for side, run in (("a", run_a), ("b", run_b))]
    keys = ["attribute", "group"]
    columns = ["n", "accuracy", "fpr", "fnr"]
    table = tables[0][keys + columns].merge(tables[1][keys + columns], on=keys, how="outer",
                                            suffixes=("_a", "_b"), sort=False)
    for metric in ("accuracy", "fpr", "fnr"):
        table[f"{metric}_change"] = table[f"{metric}_b"] - table[f"{metric}_a"]
    write_text_atomic(out / "compare.csv", table.to_csv(index=False))
    print(f"\nA = {run_a}\nB = {run_b}")
    print(table[table["attribute"].isin(("all",) + ATTRIBUTES)].to_string(
        index=False, na_rep="n/a", float_format=lambda v: f"{v:.3f}"))
    print(f"Table: {out / 'compare.csv'}")
    return table


# --------------------------------------------------------------------------------- CLI


def add_fairness_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", help="the model before (e.g. trained without fairness faces)")
    parser.add_argument("run_b", help="the model after")
    add_common_arguments(parser)


def run_fairness_compare(args: argparse.Namespace) -> int:
    compare(args.run_a, args.run_b, args.labels_csv, out=args.out, limit=args.limit,
            seed=args.seed, labels_format=args.format, n_boot=args.n_boot)
    return 0
