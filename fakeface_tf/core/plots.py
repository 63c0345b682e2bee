"""Shared figures: confusion matrix, ROC, PR, reliability, score histograms, risk-coverage,
learning curves, image galleries and per-condition bars. Each function draws one PNG and
returns its path.

Figures are built with `matplotlib.figure.Figure` (no pyplot), so no global backend state
is touched and the functions are safe to call from the web app's worker threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullLocator
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

CLASS_COLORS = {"real": "tab:blue", "fake": "tab:red"}


def _save(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


def _has_both_classes(y_true: np.ndarray) -> bool:
    return len(np.unique(y_true)) == 2


def _unavailable(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def confusion_matrix(matrix: Sequence[Sequence[int]], path: str | Path,
                     title: str = "Confusion matrix (positive = fake)") -> Path:
    """2x2 counts laid out rows predicted fake/real, columns actual fake/real."""
    matrix = np.asarray(matrix, dtype=int)
    fig = Figure(figsize=(4.2, 3.8))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(1, matrix.max()))
    for (i, j), value in np.ndenumerate(matrix):
        dark = value > matrix.max() / 2
        ax.text(j, i, str(value), ha="center", va="center", fontsize=14,
                color="white" if dark else "black")
    ax.set_xticks([0, 1], ["actual fake", "actual real"])
    ax.set_yticks([0, 1], ["predicted fake", "predicted real"])
    ax.set_title(title)
    return _save(fig, path)


def _two_class_figure(y_true: np.ndarray, draw, path: str | Path, title: str, what: str) -> Path:
    """A curve that needs both classes; with one class the panel says it is unavailable."""
    fig = Figure(figsize=(4.5, 4.2))
    ax = fig.subplots()
    if _has_both_classes(y_true):
        draw(ax)
    else:
        _unavailable(ax, f"{what} unavailable: only one class present")
    ax.set_title(title)
    return _save(fig, path)


def roc_curve(y_true, scores, path: str | Path, title: str = "ROC curve") -> Path:
    """True positive rate (fakes caught) against false positive rate (reals called fake)."""
    y_true, scores = np.asarray(y_true), np.asarray(scores)

    def draw(ax):
        fpr, tpr, _ = sk_roc_curve(y_true, scores, pos_label=1)
        ax.plot(fpr, tpr, label=f"AUC = {roc_auc_score(y_true, scores):.3f}")
        ax.plot([0, 1], [0, 1], "--", color="gray", label="chance")
        ax.set_xlabel("false positive rate (real called fake)")
        ax.set_ylabel("true positive rate (fake caught)")
        ax.legend(loc="lower right")

    return _two_class_figure(y_true, draw, path, title, "ROC")


def pr_curve(y_true, scores, path: str | Path, title: str = "Precision-recall curve") -> Path:
    """Precision against recall for the fake class, with the no-skill line at the fake rate."""
    y_true, scores = np.asarray(y_true), np.asarray(scores)

    def draw(ax):
        precision, recall, _ = precision_recall_curve(y_true, scores, pos_label=1)
        ap = average_precision_score(y_true, scores)
        ax.step(recall, precision, where="post", label=f"AP = {ap:.3f}")
        ax.axhline(y_true.mean(), ls="--", color="gray", label="no skill")
        ax.set_xlabel("recall (fake caught)")
        ax.set_ylabel("precision (called fake and is fake)")
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower left")

    return _two_class_figure(y_true, draw, path, title, "precision-recall")


def reliability_diagram(y_true, scores, path: str | Path, n_bins: int = 10,
                        title: str = "Reliability diagram") -> Path:
    """Observed fake fraction per score bin against the mean score; the diagonal is perfect."""
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    fig = Figure(figsize=(4.5, 5.2))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    if len(y_true):
        observed, predicted = calibration_curve(y_true, scores, n_bins=n_bins, pos_label=1)
        top.plot([0, 1], [0, 1], "--", color="gray", label="perfectly calibrated")
        top.plot(predicted, observed, "o-", label="model")
        top.legend(loc="upper left")
    top.set_ylabel("fraction actually fake")
    top.set_title(title)
    bottom.hist(scores, bins=n_bins, range=(0, 1), color="gray")
    bottom.set_xlabel("predicted P(fake)")
    bottom.set_ylabel("images")
    return _save(fig, path)


def score_histograms(y_true, scores, path: str | Path, threshold: float | None = None,
                     title: str = "Scores per class") -> Path:
    """Distribution of P(fake) for real and for fake images, with the decision threshold."""
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    bins = np.linspace(0, 1, 26)
    for name, label in (("real", 0), ("fake", 1)):
        part = scores[y_true == label]
        ax.hist(part, bins=bins, alpha=0.6, color=CLASS_COLORS[name], label=f"{name} (n={len(part)})")
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("predicted P(fake)")
    ax.set_ylabel("images")
    ax.legend()
    ax.set_title(title)
    return _save(fig, path)


def risk_coverage(coverage, accuracy, path: str | Path, band_point: tuple[float, float] | None = None,
                  title: str = "Risk-coverage: abstaining on the least sure faces") -> Path:
    """Accuracy on the decided faces against the share decided, the least sure (closest to the
    threshold) left undecided first; `band_point` marks (coverage, accuracy) of the "uncertain" band."""
    coverage, accuracy = np.asarray(coverage, dtype=float), np.asarray(accuracy, dtype=float)
    fig = Figure(figsize=(5.0, 4.2))
    ax = fig.subplots()
    if len(coverage):
        ax.plot(coverage, accuracy, label="abstain on the least sure")
        ax.axhline(accuracy[-1], ls="--", color="gray", label=f"all decided: {accuracy[-1]:.3f}")
    else:
        _unavailable(ax, "no scored faces")
    if band_point is not None and band_point[1] is not None:
        ax.plot(*band_point, "o", color="tab:red", label=f"uncertain band: coverage "
                f"{band_point[0]:.3f}, accuracy {band_point[1]:.3f}")
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("coverage (share of faces given a verdict)")
    ax.set_ylabel("accuracy on the decided faces")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def learning_curves(history: str | Path | pd.DataFrame, path: str | Path,
                    title: str = "Learning curves") -> Path:
    """One panel per metric of a Keras history (CSV or frame): training and validation."""
    if isinstance(history, pd.DataFrame):
        frame = history
    else:
        try:
            frame = pd.read_csv(history)
        except pd.errors.EmptyDataError:
            frame = pd.DataFrame()
    x = frame["epoch"] + 1 if "epoch" in frame else np.arange(1, len(frame) + 1)
    names = [c for c in frame.columns if not frame.empty
             and c not in ("epoch", "lr", "learning_rate") and not c.startswith("val_")]
    cols = max(1, min(3, len(names)))
    rows = max(1, -(-len(names) // cols))
    fig = Figure(figsize=(4 * cols, 3.3 * rows + 0.4))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes[len(names):]:
        ax.axis("off")
    if not names:
        _unavailable(axes[0], "no epochs recorded in the history")
    for ax, name in zip(axes, names):
        ax.plot(x, frame[name], "o-", label="train")
        if f"val_{name}" in frame:
            ax.plot(x, frame[f"val_{name}"], "o-", label="validation")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.legend()
    fig.suptitle(title)
    return _save(fig, path)


def image_gallery(images: Sequence[np.ndarray], captions: Sequence[str], path: str | Path,
                  title: str = "", cols: int = 4) -> Path:
    """A grid of uint8 crops (HxWx1 or HxWx3) with one caption each; says so when empty."""
    n = len(images)
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    # Each row gets room for its crops and a two-line caption, so captions never overlap.
    fig = Figure(figsize=(max(2.4 * cols, 6.0), 3.0 * rows + 0.6))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    if n == 0:
        _unavailable(axes[0], "none")
    for ax, image, caption in zip(axes, images, captions):
        image = np.asarray(image)
        gray = image.ndim == 2 or image.shape[-1] == 1
        ax.imshow(image.squeeze(-1) if image.ndim == 3 and gray else image,
                  cmap="gray" if gray else None, vmin=0, vmax=255)
        ax.set_title(caption, fontsize=8, wrap=True)
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi=96)


def condition_bars(frame: pd.DataFrame, path: str | Path, metrics: Sequence[str] = ("accuracy", "roc_auc"),
                   label: str = "condition", title: str = "") -> Path:
    """Grouped bars of `metrics` per row of `frame` (e.g. per robustness condition or group)."""
    x = np.arange(len(frame))
    width = 0.8 / len(metrics)
    fig = Figure(figsize=(max(6, 0.8 * len(frame) + 2), 4))
    ax = fig.subplots()
    for i, metric in enumerate(metrics):
        values = pd.to_numeric(frame[metric], errors="coerce").to_numpy(dtype=float)
        ax.bar(x + (i - (len(metrics) - 1) / 2) * width, np.nan_to_num(values), width, label=metric)
    ax.set_xticks(x, frame[label].astype(str), rotation=30, ha="right")
    ax.set_ylim(0, 1.18)  # headroom for the legend above bars at 1.0
    ax.axhline(0.5, color="gray", ls=":", lw=1, label="chance (0.5)")
    ax.legend(loc="upper right", ncols=len(metrics) + 1)
    ax.set_title(title)
    return _save(fig, path)


def data_curve(table: pd.DataFrame, path: str | Path, title: str = "What more training faces buy") -> Path:
    """Test ROC-AUC and accuracy against the number of training faces (log2 axis)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for column, label, marker in (("roc_auc", "ROC-AUC", "o"), ("accuracy", "accuracy", "s")):
        ax.plot(table["train_faces"], table[column], marker=marker, label=label)
        for x, y in zip(table["train_faces"], table[column]):
            ax.annotate(f"{y:.3f}", (x, y), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize=8)
    ax.margins(x=0.08, y=0.15)  # room for the value labels
    ax.set_xscale("log", base=2)
    ax.set_xticks(table["train_faces"], [f"{n}\n({f:.0%})" for n, f in
                                          zip(table["train_faces"], table["train_fraction"])])
    ax.set_xlabel("training faces (share of the training split)")
    ax.set_ylabel("score on the test split")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


SCORE_END = 0.001  # the score bar runs from 0.1 % to 99.9 % P(fake); values beyond sit at its ends
SCORE_TICKS = (0.01, 0.1, 0.5, 0.9, 0.99)


def probability_text(probability: float) -> str:
    """P(fake) as a percentage a person reads right: one decimal, and "< 0.1%" / "> 99.9%"
    beyond the score bar's ends rather than a rounded "0.0%" or "100.0%"."""
    if probability < SCORE_END:
        return "< 0.1%"
    if probability > 1 - SCORE_END:
        return "> 99.9%"
    return f"{100 * probability:.1f}%"


def score_bar(ax, probability: float, threshold: float, band: tuple[float, float] | None = None) -> None:
    """P(fake) as a bar on a log-odds axis (matplotlib's logit scale: 0.1 % to 99.9 %), so 0.2 %
    and 99.8 % show as plainly as 50 %; the value written at the bar's end, the threshold
    marked and labelled, the "uncertain" band (low, high) hatched."""
    low, high = SCORE_END, 1 - SCORE_END
    shown = float(np.clip(probability, low, high))
    ax.set_xscale("logit")
    ax.set_xlim(low, high)
    ax.set_ylim(-0.5, 0.9)
    uncertain = band is not None and band[0] <= probability <= band[1]
    side = "fake" if probability >= threshold else "real"
    ax.barh(0, shown - low, left=low, height=0.5, color="tab:orange" if uncertain else CLASS_COLORS[side])
    if band is not None:
        ax.axvspan(max(band[0], low), min(band[1], high), ymax=0.55, fill=False, hatch="///",
                   edgecolor="tab:orange", label="uncertain band")
        ax.legend(loc="upper right", fontsize=7, frameon=False)
    ax.axvline(threshold, ymax=0.7, color="black", lw=1.5)
    ax.text(threshold, 0.42, f"threshold {probability_text(threshold)}", ha="center", va="bottom",
            fontsize=8)
    right = shown < 0.5  # the value sits beside the bar's end, on the emptier side
    ax.text(shown, 0, f" P(fake) {probability_text(probability)} ", ha="left" if right else "right",
            va="center", fontsize=9, fontweight="bold", color="black" if right else "white",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8} if right else None)
    ax.set_xticks(SCORE_TICKS, labels=[f"{100 * t:g}%" for t in SCORE_TICKS], fontsize=7)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_yticks([])
    ax.set_xlabel("P(fake), log-odds scale (real \u2190 \u2192 fake)", fontsize=8)


def explanation(image: np.ndarray, heatmap: np.ndarray, path: str | Path, title: str,
                colormap: str = "jet", opacity: float = 0.6, probability: float | None = None,
                threshold: float = 0.5, band: tuple[float, float] | None = None) -> Path:
    """The heatmap blended onto the image, with a colour bar saying what the colours mean and
    the verdict in the title, so the PNG stands alone; with `probability`, the score bar
    (`score_bar`) beneath it."""
    height, width = image.shape[:2]
    side, bar_height = 5.2 / max(height, width), 0.0 if probability is None else 1.1
    fig = Figure(figsize=(side * width + 1.2, side * height + 0.6 + bar_height))
    if probability is None:
        ax = fig.add_subplot()
    else:
        ax, bar_ax = fig.subplots(2, 1, height_ratios=[side * height, bar_height])
        score_bar(bar_ax, probability, threshold, band)
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), colormap), ax=ax, fraction=0.046, pad=0.03,
                       alpha=opacity)
    bar.set_label("weight in the verdict (0 = none, 1 = most)", fontsize=8)
    return _save(fig, path)


def group_rates(rows: pd.DataFrame, attribute: str, path: str | Path) -> Path:
    """Per-group FPR and FNR bars with 95 % CI whiskers. The y axis fits the bars, and a rate
    no group has (FNR where the data holds only real faces) gets no bar and no legend entry."""
    x = np.arange(len(rows))
    fig = Figure(figsize=(max(6.0, 0.8 * len(rows) + 2), 3.6))
    ax = fig.add_subplot()
    top, missing = 0.0, []
    for offset, metric, label, color in ((-0.2, "fpr", "FPR (real called fake)", "tab:red"),
                                         (0.2, "fnr", "FNR (fake called real)", "tab:blue")):
        values = rows[metric].to_numpy(dtype=float)
        known = ~np.isnan(values)
        if not known.any():
            missing.append(metric.upper())
            continue
        high = rows[f"{metric}_hi"].to_numpy(dtype=float)[known]
        err = np.vstack([values[known] - rows[f"{metric}_lo"].to_numpy(dtype=float)[known],
                         high - values[known]])
        ax.bar(x[known] + offset, values[known], 0.4, yerr=np.abs(err), capsize=3, label=label,
               color=color)
        top = max(top, np.nanmax(high), np.nanmax(values[known]))
        for position in x[~known] + offset:
            ax.text(position, 0.0, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(x, [f"{g}\nn={n}" for g, n in zip(rows["group"], rows["n"])], fontsize=8)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_ylim(0, min(1.05, max(0.05, top * 1.3)))
    ax.set_ylabel("rate")
    note = f"; {' and '.join(missing)} not measurable: no such faces" if missing else "; n/a: no such faces"
    ax.set_title(f"Error rates by {attribute}, 95% Wilson CI{note}", fontsize=10)
    ax.legend(fontsize=8, ncol=2, loc="upper right")
    return _save(fig, path, dpi=120)


def cell_heatmap(grid: pd.DataFrame, counts: pd.DataFrame, title: str, path: str | Path) -> Path:
    """A rate per cell of a two-way table (0..1 in reds), each cell labelled with its value and n."""
    fig = Figure(figsize=(1.4 * grid.shape[1] + 2.5, 0.5 * grid.shape[0] + 1.5))
    ax = fig.add_subplot()
    values = grid.to_numpy(dtype=float)
    image = ax.imshow(values, cmap="Reds", vmin=0, vmax=1, aspect="auto")
    for (i, j), value in np.ndenumerate(values):
        n = counts.iloc[i, j]
        text = "n/a" if np.isnan(value) else f"{value:.2f}"
        ax.text(j, i, f"{text}\nn={0 if pd.isna(n) else int(n)}", ha="center", va="center",
                fontsize=7, color="white" if value > 0.6 else "black")
    ax.set_xticks(range(grid.shape[1]), grid.columns)
    ax.set_yticks(range(grid.shape[0]), grid.index)
    ax.set_title(title)
    fig.colorbar(image, ax=ax)
    return _save(fig, path, dpi=120)


def auc_axis(values) -> tuple[float, float]:
    """AUC axis limits that do not magnify small gaps: from chance (0.5, or below it) to 1."""
    low = min([0.5, *(float(v) for v in values if v == v)])
    return (np.floor(low * 20) / 20, 1.0)


def run_curves(histories: dict[str, pd.DataFrame], path: str | Path) -> Path:
    """Training/validation loss and validation AUC per epoch of each run (name -> history)."""
    fig = Figure(figsize=(12, 4.5))
    ax_loss, ax_auc = fig.subplots(1, 2)
    for name, history in histories.items():
        epochs = history["epoch"] + 1
        line, = ax_loss.plot(epochs, history["val_loss"], label=name)
        ax_loss.plot(epochs, history["loss"], linestyle="--", color=line.get_color())
        ax_auc.plot(epochs, history["val_auc"], color=line.get_color(), label=name)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss (dashed: training, solid: validation)")
    every_auc = [v for history in histories.values() for v in history["val_auc"]]
    ax_auc.set(xlabel="epoch", ylabel="validation AUC", title="validation AUC (axis from chance, 0.5)",
               ylim=auc_axis(every_auc))
    ax_auc.legend(fontsize="small", loc="lower right")
    return _save(fig, path, dpi=120)
