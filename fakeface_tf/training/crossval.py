"""Which frozen-feature recipe is best, beyond the noise of one split: seeded, identity-grouped,
stratified k-fold cross-validation on the records' training and validation faces.

Each recipe is an L2 logistic regression on standardised frozen features (`features.py`) of
one backbone or several concatenated; its strength C is picked inside each training fold by
an inner grouped 3-fold search over CV_C (ROC-AUC), and reported per fold. Folds come from
sklearn's StratifiedGroupKFold: the faces of one identity (the FFHQ id of real faces named by
it, `identity`) never straddle two folds, nor does one source file. Every recipe sees the same
folds, so per-fold differences between recipes are paired: `summarise` reports each recipe's
mean and standard deviation over folds, and its mean paired gain over a baseline recipe with
that gain's standard deviation across folds. The test split is never read.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fakeface_tf.core import run_folder
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.training.crossval_plot import plot

log = logging.getLogger(__name__)

# Real FFHQ faces named by their FFHQ id (data/SOURCES.md: `zoya_` stems are the id, `wfir_01099`
# is FFHQ 01099); faces/real_ffhq_attributes.csv's `ffhq_id` column agrees (tests check it).
FFHQ_NAME = re.compile(r"(?:zoya|wfir)_(\d{5})")
# recipe -> ((backbone, view), ...): concatenated in this order. Views: features.Faces.view.
RECIPES = {
    "faceres": (("faceres", "plain"),),  # what the current probe fits
    "faceres_flip": (("faceres", "flip"),),  # the same, averaged with the mirror image
    "nsfw_mixed5": (("inception_nsfw", "flip"),),  # nsfwjs InceptionV3 mixed5 mean + std
    "fused": (("faceres", "flip"), ("inception_nsfw", "flip")),
    "faceres_whole": (("faceres_whole", "flip"),),  # FaceRes on the whole image at 224 px
    "crop_whole": (("faceres", "flip"), ("faceres_whole", "flip")),  # the face and its image
    "mobilefacenet": (("mobilefacenet", "flip"),),  # MobileFaceNet embedding + a mid block's stats
    "faceres_mobilefacenet": (("faceres", "flip"), ("mobilefacenet", "flip")),
}
CV_C = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)  # inverse L2 strengths searched per fold
INNER_FOLDS = 3
COVERAGE = 0.85  # the share decided in issue 24's goal: accuracy on the surest 85 % of faces
METRICS = ("accuracy", "auc", "accuracy_at_coverage")


def identity(path: str) -> str:
    """The group a face belongs to: `ffhq:<id>` for FFHQ-id-named faces, else its file."""
    found = FFHQ_NAME.fullmatch(PurePosixPath(path).stem)
    return f"ffhq:{found[1]}" if found else f"file:{path}"


def folds(paths, labels, k: int = 5, seed: int = 0) -> np.ndarray:
    """The fold (0..k-1) of each face: stratified by label, grouped by `identity`, seeded."""
    labels = np.asarray(labels)
    groups = np.array([identity(p) for p in paths])
    fewest = min(len(np.unique(groups[labels == c])) for c in np.unique(labels))
    if k < 2 or fewest < k or len(np.unique(labels)) != 2:
        raise FakefaceError(f"--folds {k}: needs 2 <= folds <= the identities of each class "
                            f"(fewest: {fewest}) and both classes present")
    split = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    fold = np.full(len(labels), -1)
    for i, (_, test) in enumerate(split.split(np.zeros(len(labels)), labels, groups)):
        fold[test] = i
    return fold


def fit_score(x_train, y_train, groups, x_test, seed: int) -> tuple[np.ndarray, float]:
    """Scores (logits) of `x_test` from a standardised L2 logistic regression fitted on the
    training fold, its C picked by an inner grouped search; returns (scores, C)."""
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    inner = StratifiedGroupKFold(n_splits=INNER_FOLDS, shuffle=True, random_state=seed)
    search = GridSearchCV(model, {"logisticregression__C": list(CV_C)}, scoring="roc_auc",
                          cv=inner, refit=True)
    search.fit(x_train, y_train, groups=groups)
    return search.decision_function(x_test), float(search.best_params_["logisticregression__C"])


def surest_accuracy(labels, scores, coverage: float = COVERAGE) -> float:
    """Accuracy at logit 0 on the `coverage` share of faces the model is surest of (largest
    |logit|): what a verdict that abstains on the rest would get right."""
    labels, scores = np.asarray(labels), np.asarray(scores, float)
    kept = np.argsort(-np.abs(scores), kind="stable")[:max(1, round(coverage * len(scores)))]
    return accuracy_score(labels[kept], scores[kept] > 0)


def crossvalidate(matrices: dict[str, np.ndarray], labels, paths, k: int = 5,
                  seed: int = 0) -> pd.DataFrame:
    """One row per (recipe, fold): accuracy at P(fake) = 0.5, ROC-AUC, accuracy on the surest
    COVERAGE of faces, the C picked, the fold's sizes. `matrices`: recipe -> (faces,
    features), rows in the order of `labels`."""
    labels, paths = np.asarray(labels), np.asarray(paths)
    fold, groups = folds(paths, labels, k, seed), np.array([identity(p) for p in paths])
    rows = []
    for recipe, x in matrices.items():
        for i in range(k):
            train, test = fold != i, fold == i
            scores, c = fit_score(x[train], labels[train], groups[train], x[test], seed)
            rows.append({"recipe": recipe, "fold": i,
                         "accuracy": accuracy_score(labels[test], scores > 0),
                         "auc": roc_auc_score(labels[test], scores),
                         "accuracy_at_coverage": surest_accuracy(labels[test], scores), "C": c,
                         "train_faces": int(train.sum()), "test_faces": int(test.sum())})
            log.info("%s fold %d: accuracy %.4f, AUC %.4f (C=%g)", recipe, i,
                     rows[-1]["accuracy"], rows[-1]["auc"], c)
    return pd.DataFrame(rows)


def corrected_p(gains) -> float:
    """Two-sided p of a mean k-fold gain by Nadeau and Bengio's corrected resampled t-test:
    folds share training faces, so the variance is inflated by test/train (1/(k-1)) on top of
    1/k. NaN for no variation (a recipe against itself)."""
    gains = np.asarray(gains, float)
    k, var = len(gains), np.var(gains, ddof=1)
    if k < 2 or var == 0:
        return float("nan")
    t = gains.mean() / np.sqrt((1 / k + 1 / (k - 1)) * var)
    return float(2 * stats.t.sf(abs(t), k - 1))


def summarise(cv: pd.DataFrame, baselines=("faceres",)) -> pd.DataFrame:
    """Per recipe: each metric's mean and standard deviation over folds, and for each baseline
    recipe present, the mean paired gain (recipe - baseline, fold by fold), the standard
    deviation of those per-fold gains (ddof=1) and the gain's `corrected_p`."""
    table = pd.DataFrame({"recipe": list(dict.fromkeys(cv["recipe"]))})
    for metric in (m for m in METRICS if m in cv):  # older cv.csv files lack the newest
        by_fold = cv.pivot(index="fold", columns="recipe", values=metric)
        table[f"{metric}_mean"] = [by_fold[r].mean() for r in table["recipe"]]
        table[f"{metric}_sd"] = [by_fold[r].std(ddof=1) for r in table["recipe"]]
        for base in (b for b in baselines if b in by_fold):
            gains = by_fold.sub(by_fold[base], axis=0)
            table[f"{metric}_gain_vs_{base}"] = [gains[r].mean() for r in table["recipe"]]
            table[f"{metric}_gain_sd_vs_{base}"] = [gains[r].std(ddof=1) for r in table["recipe"]]
            table[f"{metric}_p_vs_{base}"] = [corrected_p(gains[r]) for r in table["recipe"]]
    table["folds"] = [int((cv["recipe"] == r).sum()) for r in table["recipe"]]
    return table


def recipe_matrices(recipes, loaded: dict) -> dict[str, np.ndarray]:
    """recipe -> its feature matrix (backbones' views side by side); `loaded`: backbone ->
    features.Faces, all over the same faces in the same order."""
    first = next(iter(loaded.values()))
    for name, faces in loaded.items():
        if not np.array_equal(faces.paths, first.paths):
            raise FakefaceError(f"{name} features are not over the same faces as the others")
    return {r: np.concatenate([loaded[b].view(v) for b, v in RECIPES[r]], axis=1) for r in recipes}


def check_recipes(recipes, baselines, trained=()) -> None:
    """A FakefaceError naming an unknown recipe or baseline (`trained`: configs' names, which
    must not be a probe's)."""
    for name in set(trained) & set(RECIPES):
        raise FakefaceError(f"trained config {name!r} has a probe recipe's name: rename it "
                            "(--set name=...)")
    for name in [*recipes, *baselines]:
        if name not in RECIPES and name not in trained:
            raise FakefaceError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")


def run(records, out, recipes=tuple(RECIPES), k: int = 5, seed: int = 0,
        baselines=("faceres",), progress: bool = True, trained: pd.DataFrame | None = None
        ) -> dict[str, Path]:
    """Cross-validate `recipes` on `records` and write cv.csv, cv_summary.csv, the folds and
    the plot into `out`; returns their paths. `trained`: rows of trained recipes on the same
    folds (crossval_train.crossvalidate), reported beside the probes."""
    # TensorFlow and the backbones load only here: the split and summary need neither
    from fakeface_tf.training import features

    trained_names = [] if trained is None else list(dict.fromkeys(trained["recipe"]))
    check_recipes(recipes, baselines, trained_names)
    backbones = list(dict.fromkeys(b for r in recipes for b, _ in RECIPES[r]))
    loaded = {b: features.load(b, records, progress) for b in backbones}
    faces = loaded[backbones[0]]
    cv = crossvalidate(recipe_matrices(recipes, loaded), faces.labels, faces.paths, k, seed)
    if trained is not None:
        cv = pd.concat([cv, trained], ignore_index=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {"cv": out / run_folder.CV_FILE, "summary": out / run_folder.CV_SUMMARY_FILE,
               "folds": out / run_folder.CV_FOLDS_FILE, "plot": out / run_folder.CV_PLOT_FILE}
    cv.to_csv(written["cv"], index=False)
    summarise(cv, baselines).to_csv(written["summary"], index=False)
    pd.DataFrame({"path": faces.paths, "label": faces.labels,
                  "identity": [identity(p) for p in faces.paths],
                  "fold": folds(faces.paths, faces.labels, k, seed)}).to_csv(written["folds"], index=False)
    plot(cv, written["plot"], f"{k}-fold CV (seed {seed}, identity-grouped) on {Path(records).name}")
    return written
