"""Recall on fakes from other generators, counted honestly: for every evaluation beside a model
that scored fakes only (e.g. eval-faces_extra, eval-pairs_fake), how many faces were scored,
how many had no usable face, and how many were called fake, real or uncertain.

Rows are split by the source tag that starts each file name (`tpdneb_1.jpg` -> tpdneb; the
tags of ../shared/data/SOURCES.md), so each generator gets its own row. Recall is the share of
scored faces called fake: an uncertain verdict is not a catch, and faces with no usable face
are counted apart (they get no verdict at all).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from scipy.stats import binomtest

from fakeface_tf.analysis.evaluate import EVAL_PREFIX, SCORES_FILE
from fakeface_tf.core.files import read_json_object
from fakeface_tf.core.run_folder import METRICS_FILE
from fakeface_tf.core.text import markdown_table
from fakeface_tf.models.uncertainty import UNCERTAIN

# File-name source tag -> the generator that made those fakes (../shared/data/SOURCES.md).
GENERATORS = {
    "tpdnej": "StyleGAN2 (thispersondoesnotexist.com)",
    "tpdneb": "StyleGAN2 (thispersondoesnotexist.com)",
    "akpair": "StyleGAN2 via pSp (pixel2style2pixel reconstructions of real faces)",
    "ak140k": "StyleGAN (140k set)",
    "zoya": "StyleGAN (140k set)",
    "wfir": "StyleGAN (whichfaceisreal)",
    "roei": "StyleGAN variant (not stated)",
}
NOTE = ("Fakes-only folders scored at the model's threshold, one row per file source. Recall "
        "is the share of scored faces called fake (95% Wilson interval); an uncertain verdict "
        "is not a catch, and a face MTCNN could not find gets no verdict (no face). Fakes "
        "called real are the misses.")
COLUMNS = ("source", "generator", "faces scored", "no face", "called fake (recall)",
           "called real", "uncertain")


def source_tag(path: str) -> str:
    """The source tag of a file: its name up to the first underscore."""
    return Path(str(path)).name.split("_")[0]


def fake_only_evaluations(root: Path) -> list[tuple[Path, dict, pd.DataFrame]]:
    """(folder, metrics, scores) of every evaluation in `root` that scored fakes only and
    wrote a readable scores.csv, by folder name."""
    found = []
    for folder in sorted(p for p in Path(root).glob(f"{EVAL_PREFIX}-*") if p.is_dir()):
        metrics = read_json_object(folder / METRICS_FILE)
        counts = (metrics or {}).get("counts") or {}
        if not counts.get("fake") or counts.get("real"):
            continue
        try:
            scores = pd.read_csv(folder / SCORES_FILE)
        except (OSError, ValueError, pd.errors.ParserError):
            continue
        if {"path", "predicted"} <= set(scores.columns):
            found.append((folder, metrics, scores))
    return found


def _share(n: int, total: int, interval: bool = False) -> str:
    """`n (share)`, with the 95% Wilson interval when `interval`; `n` alone for no total."""
    if not total:
        return str(n)
    text = f"{n} ({n / total:.3f}"
    if interval:
        ci = binomtest(n, total).proportion_ci(method="wilson")
        text += f", 95% CI {ci.low:.3f}-{ci.high:.3f}"
    return text + ")"


def _row(source: str, generator: str, verdicts: pd.Series, no_face: int, has_band: bool) -> tuple:
    scored = len(verdicts)
    called = {v: int((verdicts == v).sum()) for v in ("fake", "real", UNCERTAIN)}
    uncertain = _share(called[UNCERTAIN], scored) if has_band else "no band"
    return (source, generator, scored, no_face, _share(called["fake"], scored, interval=True),
            _share(called["real"], scored), uncertain)


def _verdicts(scores: pd.DataFrame) -> pd.Series:
    """real / fake / uncertain per face: the `verdict` column, else the thresholded call."""
    if "verdict" in scores.columns:
        return scores["verdict"].astype(str)
    return scores["predicted"].map({1: "fake", 0: "real"}).astype(str)


def generalisation_table(root: Path) -> pd.DataFrame:
    """One row per fakes-only evaluation in `root` and source tag of its files (COLUMNS), plus
    the evaluation's total when it mixes tags; empty when there is no such evaluation."""
    rows = []
    for folder, metrics, scores in fake_only_evaluations(root):
        has_band = "verdict" in scores.columns
        tags = scores["path"].map(source_tag)
        verdicts = _verdicts(scores)
        rejected = (metrics.get("rejected") or {}).get("files") or []
        no_face = [source_tag(f.get("path", "")) for f in rejected if f.get("status") != "skipped"]
        names = sorted(set(tags) | set(no_face))
        for tag in names:
            rows.append(_row(f"{folder.name}: {tag}_*", GENERATORS.get(tag, "not recorded"),
                             verdicts[tags == tag], no_face.count(tag), has_band))
        if len(names) > 1:
            generators = sorted({GENERATORS.get(t, "not recorded") for t in names})
            rows.append(_row(f"{folder.name}: all", "; ".join(generators), verdicts,
                             len(no_face), has_band))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def generalisation_section(root: Path) -> str:
    """The model card's "Other generators" section in Markdown; "" when `root` holds no
    fakes-only evaluation."""
    frame = generalisation_table(root)
    if frame.empty:
        return ""
    rows = frame.itertuples(index=False)
    return "\n".join(["## Other generators", NOTE, "", markdown_table(frame.columns, rows)])
