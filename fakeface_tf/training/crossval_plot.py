"""The cross-validation figure: each recipe's per-fold accuracy and ROC-AUC, folds joined
across recipes (the comparison is paired), with the mean and standard deviation over folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

PANELS = (("accuracy", "accuracy at P(fake) = 0.5"), ("auc", "ROC-AUC"))


def plot(cv: pd.DataFrame, path: str | Path, title: str) -> Path:
    """Two panels (accuracy, AUC): a grey line per fold through the recipes, the mean +- sd
    in black with its value written beside it. Returns `path`."""
    recipes = list(dict.fromkeys(cv["recipe"]))
    x = np.arange(len(recipes))
    fig = Figure(figsize=(max(7.0, 1.6 * len(recipes) + 3), 4.2))
    for ax, (metric, label) in zip(fig.subplots(1, 2), PANELS):
        by_fold = cv.pivot(index="fold", columns="recipe", values=metric)[recipes]
        for fold, row in by_fold.iterrows():
            ax.plot(x, row.to_numpy(), color="0.6", lw=0.8, marker=".",
                    label="one fold" if fold == by_fold.index[0] else None)
        mean, sd = by_fold.mean().to_numpy(), by_fold.std(ddof=1).to_numpy()
        ax.errorbar(x, mean, yerr=sd, fmt="o", color="black", capsize=4, label="mean +- sd")
        for xi, m, s in zip(x, mean, sd):
            ax.annotate(f"{m:.3f}\n+-{s:.3f}", (xi, m), textcoords="offset points",
                        xytext=(10, -8), fontsize=7)
        ax.set_xticks(x, recipes, rotation=20, ha="right")
        ax.set_xlim(-0.5, len(recipes) - 0.2)
        ax.set_xlabel("recipe (logistic regression on frozen features)")
        ax.set_ylabel(f"{label}, held-out fold")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
