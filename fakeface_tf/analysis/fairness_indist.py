"""In-distribution fairness: the detector's per-group error rates on faces in its own format.

`fakeface fairness` scores UTKFace: real photos of known groups, but 200 px crops unlike
anything the detector trained on. This report scores the records the model was trained from
(its config's `data.path`), only their held-out splits (valid and test by default; a face of
the training split is never scored, and an attributes row outside the records is dropped, both
counted and logged):

- FPR by group on the FFHQ reals, grouped by `faces/real_ffhq_attributes.csv`: age and gender
  machine-estimated by the Microsoft Face API (see the data's SOURCES.md), not ground truth;
- FNR by group on the fakes (and on an extra folder of fakes, cut with the model's face
  options), grouped by each estimator of `group_estimators` (GEAR: age group, gender, race;
  the published FaceRes heads: age, gender), run on the detector's own crop, with each
  estimator's agreement with the Face API on the same reals (and GEAR's UTKFace accuracy).

Rates and intervals come from `fairness_metrics.group_metrics` (`DEFINITIONS["ci"]`). A record's
split is what `fakeface preprocess` wrote in the records' manifest.csv; a file is matched to an
attributes row by its resolved path (the manifest's `path` under preprocess.json's `src`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from fakeface_tf.analysis import group_estimators
from fakeface_tf.analysis.fairness_indist_output import write_report
from fakeface_tf.analysis.fairness_metrics import DEFINITIONS, group_metrics
from fakeface_tf.analysis.scoring import iter_batches
from fakeface_tf.core.config import data_root, records_dir
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.run_folder import FAIRNESS_INDIST_DIR
from fakeface_tf.data.labelled import UNKNOWN
from fakeface_tf.data.records import LABELS, source_folder
from fakeface_tf.models import artifacts
from fakeface_tf.preprocess.shards import MANIFEST_FILE

log = logging.getLogger(__name__)

ATTRIBUTES_CSV = "faces/real_ffhq_attributes.csv"  # relative to the data root
EXTRA_FAKES = "faces_extra"  # relative to the data root: fakes of another generator, fake/ only
UTKFACE_CSV = "fairness/labels.csv"
HELD_OUT = ("valid", "test")
ATTRIBUTE_COLUMNS = ("file", "age", "gender")
FACE_API = "the Microsoft Face API (DCGM/ffhq-features-dataset)"
MEASURES = {
    "fpr": "FPR on the detector's own held-out FFHQ reals, in groups machine-estimated by "
           f"{FACE_API}, not ground truth",
    "fnr": "FNR on held-out fakes, in groups estimated from a face crop of the detector's "
           "input by the estimator named (never ground truth)",
}


def record_splits(records: Path) -> pd.DataFrame:
    """The records' manifest (`path`, `split`, `label`, `status` per source file) with each
    file's resolved `source` path (the manifest's path under preprocess.json's `src`)."""
    manifest = records / MANIFEST_FILE
    try:
        table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise FakefaceError(f"{records}: cannot read the split of each face from "
                            f"{MANIFEST_FILE} ({exc})") from exc
    src = source_folder(records)
    missing = {"path", "split", "label", "status"} - set(table.columns)
    if missing:
        raise FakefaceError(f"{manifest}: missing column(s) {', '.join(sorted(missing))}")
    table["source"] = [str((Path(src) / p).resolve()) for p in table["path"]]
    return table[["path", "split", "label", "status", "source"]]


def load_attributes(csv_path: Path, root: Path) -> pd.DataFrame:
    """The attributes CSV (`file,age,gender[,age_estimate]`, `file` relative to `root`), with
    each row's resolved `source` path."""
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise FakefaceError(f"{csv_path}: not a readable CSV ({exc})") from exc
    missing = [c for c in ATTRIBUTE_COLUMNS if c not in table.columns]
    if missing:
        raise FakefaceError(f"{csv_path}: line 1 (header): missing column(s) {', '.join(missing)} "
                            f"(expected {','.join(ATTRIBUTE_COLUMNS)})")
    empty = table.index[(table[list(ATTRIBUTE_COLUMNS)] == "").any(axis=1)]
    if len(empty):
        raise FakefaceError(f"{csv_path}: line {empty[0] + 2}: an empty file, age or gender "
                            f"field (write {UNKNOWN} where not estimated)")
    table["source"] = [str((root / f).resolve()) for f in table["file"]]
    return table


def held_out_reals(attributes: pd.DataFrame, splits: pd.DataFrame,
                   held_out=HELD_OUT) -> tuple[pd.DataFrame, dict]:
    """The attributes rows whose face is in a held-out split of the records (with its manifest
    `path`, `split` and `status`), and counts of what was dropped: rows of the training (or
    any other) split, and rows the records do not hold (whether trained on is unknown)."""
    merged = attributes.merge(splits.drop(columns="label"), on="source", how="left")
    counts = {"attribute_rows": len(attributes),
              "not_in_records": int(merged["split"].isna().sum()),
              "in_training_split": int((merged["split"] == "train").sum()),
              "in_other_splits": int((merged["split"].notna() & ~merged["split"].isin(
                  held_out + ("train",))).sum())}
    kept = merged[merged["split"].isin(held_out)].reset_index(drop=True)
    counts["held_out"] = len(kept)
    counts["held_out_no_face"] = int((kept["status"] != "ok").sum())
    log.info("Attributes: %d rows; dropped %d of the training split (never scored), %d not in "
             "the records, %d of other splits; %d held-out reals (%s), %d without a face crop",
             counts["attribute_rows"], counts["in_training_split"], counts["not_in_records"],
             counts["in_other_splits"], counts["held_out"], "+".join(held_out),
             counts["held_out_no_face"])
    if kept.empty:
        raise FakefaceError("no attributes row names a face of the records' "
                            f"{'/'.join(held_out)} splits: is the records' src the data root's "
                            "faces/ folder?")
    return kept, counts


def _scored_batch(model, estimators: dict, batch, split: str, source: str) -> pd.DataFrame:
    """Scores and group estimates of one batch's crops, plus a row per rejected file."""
    found = pd.DataFrame({"path": batch.paths, "split": split, "set": source,
                          "label": batch.labels, "status": "ok",
                          "prob": np.asarray(model.predict(batch.images), float).reshape(-1)})
    crops = group_estimators.face_crops(batch.images, model.face_options) if estimators else None
    for name, estimator in estimators.items():
        if len(batch.paths):
            est = estimator.estimate(crops)[list(estimator.attributes)]
            found = found.join(est.add_prefix(f"{name}_"))
    missed = pd.DataFrame([{"path": r["path"], "split": split, "set": source, "label": r["label"],
                            "status": r["status"], "prob": np.nan} for r in batch.rejected])
    return pd.concat([found, missed], ignore_index=True)


def _group_columns(estimators: dict) -> list[str]:
    return [f"{name}_{a}" for name, e in estimators.items() for a in e.attributes]


def score_faces(model, estimators: dict, data: Path, splits, source: str,
                progress: bool = True) -> pd.DataFrame:
    """Every face of `splits` of `data` (records, or an image folder cut with the model's face
    options): `path`, `split`, `set`, `label`, `status`, `prob` and `<estimator>_<attribute>`
    (UNKNOWN where no face was found)."""
    parts = [_scored_batch(model, estimators, batch, split, source)
             for split in splits for batch in iter_batches(model, data, split, progress=progress)]
    table = pd.concat(parts, ignore_index=True)
    for column in _group_columns(estimators):
        table[column] = table.get(column, pd.Series(dtype=object)).fillna(UNKNOWN)
    return table


def _never_trained_on(scored: pd.DataFrame, splits: pd.DataFrame, records: Path,
                      held_out) -> None:
    """Refuse outright if a scored record is assigned to a split outside `held_out`."""
    assigned = splits.set_index("path")["split"]
    wrong = scored["path"].map(assigned).dropna()
    wrong = wrong[~wrong.isin(held_out)]
    if len(wrong):
        raise FakefaceError(f"{records}: {len(wrong)} scored faces are in the {wrong.iloc[0]} "
                            f"split of {MANIFEST_FILE} (e.g. {wrong.index[0]}); refusing")


def _extra_fakes(model, estimators: dict, folder: Path, splits: pd.DataFrame,
                 progress: bool) -> tuple[pd.DataFrame, int]:
    """The extra fakes, less any file the records hold (counted: it may be a training face)."""
    scored = score_faces(model, estimators, folder, ("test",), folder.name, progress)
    scored["split"] = ""
    known = set(splits["source"])
    inside = np.array([str(Path(p).resolve()) in known for p in scored["path"]], bool)
    if inside.any():
        log.info("Extra fakes: dropped %d files the records hold", int(inside.sum()))
    keep = ~inside & (scored["label"] == LABELS["fake"]).to_numpy()
    return scored[keep].reset_index(drop=True), int(inside.sum())


def _predicted(prob: pd.Series, threshold: float) -> np.ndarray:
    return np.where(prob.isna(), np.nan, (prob >= threshold).astype(float))


def _fpr_table(reals: pd.DataFrame, threshold: float) -> pd.DataFrame:
    return group_metrics(np.zeros(len(reals), int), _predicted(reals["prob"], threshold),
                         reals[["age", "gender"]])


def _fnr_table(fakes: pd.DataFrame, estimators: dict, threshold: float) -> pd.DataFrame:
    """`group_metrics` per estimator's groups and per set of fakes (generators differ), told
    apart by the `estimator` and `set` columns."""
    tables = []
    for name, estimator in estimators.items():
        columns = [f"{name}_{a}" for a in estimator.attributes]
        for source, part in fakes.groupby("set", sort=False):
            groups = part[columns].set_axis(list(estimator.attributes), axis=1)
            table = group_metrics(np.ones(len(part), int), _predicted(part["prob"], threshold),
                                  groups)
            tables.append(table.assign(estimator=name, set=source))
    return pd.concat(tables, ignore_index=True)


def _reals_scored(reals: pd.DataFrame, scored: pd.DataFrame, estimators: dict) -> pd.DataFrame:
    columns = ["path", "prob"] + _group_columns(estimators)
    return reals.merge(scored.loc[scored["label"] == LABELS["real"], columns], on="path", how="left")


def _records_of(model) -> Path:
    if model.config is None:
        raise FakefaceError(f"{model.root} has no config.yaml: which records it was trained on, "
                            "and so which faces it never saw, is unknown")
    return records_dir(model.config.data.path)


def _missed_fakes(splits: pd.DataFrame, held_out, estimators: dict) -> pd.DataFrame:
    """Fakes of the held-out splits that got no record (no usable face): one row each."""
    rows = splits[(splits["label"] == "fake") & (splits["status"] != "ok")
                  & splits["split"].isin(held_out)]
    return pd.DataFrame({"path": rows["path"], "split": rows["split"], "set": "records",
                         "label": LABELS["fake"], "status": rows["status"], "prob": np.nan,
                         **{c: UNKNOWN for c in _group_columns(estimators)}})


def _check_splits(held_out) -> tuple[str, ...]:
    held_out = tuple(held_out)
    bad = [s for s in held_out if s not in HELD_OUT]
    if bad or not held_out:
        raise FakefaceError(f"--splits must be among {', '.join(HELD_OUT)} (never train), "
                            f"got {','.join(held_out) or 'none'}")
    return held_out


def _estimator_labels(estimators: dict, checks: dict, utkface: dict | None) -> dict[str, str]:
    """Per estimator, the words that go with its table: who estimated, and how well."""
    labels = {}
    for name, estimator in estimators.items():
        text = (f"groups estimated by {estimator.describe}; gender agreement with {FACE_API} on "
                f"these reals {group_estimators.accuracy_text(checks[name]['gender'])}")
        if name == "gear" and utkface:
            text += (f"; gender accuracy on UTKFace "
                     f"{group_estimators.accuracy_text(utkface['gender'])}, race "
                     f"{group_estimators.accuracy_text(utkface['race'])} (an upper bound: GEAR "
                     "trained on most of UTKFace)")
        labels[name] = text
    return labels


def _score_everything(model, estimators, records, splits, held_out, extra, root, progress):
    """(scored records, every fake to judge, extra files dropped as records)."""
    scored = score_faces(model, estimators, records, held_out, "records", progress)
    _never_trained_on(scored, splits, records, held_out)
    fakes = [scored[scored["label"] == LABELS["fake"]], _missed_fakes(splits, held_out, estimators)]
    dropped = 0
    if extra:
        extra_fakes, dropped = _extra_fakes(model, estimators, _under(root, extra), splits, progress)
        fakes.append(extra_fakes)
    return scored, pd.concat(fakes, ignore_index=True), dropped


def assess(model_path, out=None, attributes=None, extra_fakes: str | None = EXTRA_FAKES,
           utkface: str | None = UTKFACE_CSV, held_out=HELD_OUT, threshold: float | None = None,
           estimators=("gear", "faceres"), progress: bool = True) -> dict:
    """Score the held-out records (and `extra_fakes`, a folder under the data root or a path;
    None skips it), write the report into `out` (default `<model>/fairness-indist`) and return
    it (JSON-ready except the DataFrames `fpr_groups`, `fnr_groups` and `scores`)."""
    held_out = _check_splits(held_out)
    model = artifacts.load_model(model_path)
    records = _records_of(model)
    root = data_root(model.config.data.root or None)
    attributes_csv = Path(attributes) if attributes else root / ATTRIBUTES_CSV
    splits = record_splits(records)
    reals, counts = held_out_reals(load_attributes(attributes_csv, root), splits, held_out)
    found = group_estimators.load_estimators(estimators)
    threshold = model.threshold if threshold is None else float(threshold)
    scored, fakes, counts["extra_in_records"] = _score_everything(
        model, found, records, splits, held_out, extra_fakes, root, progress)
    reals = _reals_scored(reals, scored, found)
    utk = (group_estimators.utkface_check(_under(root, utkface), found["gear"].model, progress)
           if utkface and "gear" in found else None)
    checks = {name: group_estimators.face_api_check(reals, e) for name, e in found.items()}
    fakes["path"] = [_from_root(p, root) for p in fakes["path"]]
    if utk:
        utk["labels"] = _from_root(utk["labels"], root)
    report = {"model": str(model.path), "records": str(records), "splits": list(held_out),
              "threshold": threshold, "attributes": _from_root(attributes_csv, root),
              "counts": {**counts, "fakes": {k: int(v) for k, v in fakes.groupby("set").size().items()}},
              "measures": MEASURES, "fake_groups": _estimator_labels(found, checks, utk),
              "gear_box": list(group_estimators.GEAR_BOX), "ci": DEFINITIONS["ci"],
              "licences": group_estimators.licences(found),
              "estimator": {"utkface": utk, "face_api": checks},
              "fpr_groups": _fpr_table(reals, threshold),
              "fnr_groups": _fnr_table(fakes, found, threshold),
              "scores": _scores(reals, fakes, threshold)}
    write_report(report, Path(out) if out else model.root / FAIRNESS_INDIST_DIR)
    return report


def _from_root(path, root: Path) -> str:
    """`path` relative to the data root when it lies under it: reports name no machine path."""
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def _under(root: Path, path: str) -> Path:
    """`path` as given if it exists, else under the data root."""
    given = Path(path).expanduser()
    return given if given.exists() or given.is_absolute() else root / given


def _scores(reals: pd.DataFrame, fakes: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """One row per face scored or missed: where it came from, its verdict, every estimate
    (`age`, `gender` of a real are the Face API's)."""
    reals = reals.assign(set="records", label=LABELS["real"])
    both = pd.concat([reals, fakes], ignore_index=True)
    both["pred"] = _predicted(both["prob"], threshold)
    first = ["set", "split", "path", "label", "status", "prob", "pred", "age", "gender"]
    rest = [c for c in both.columns if "_" in c and c.split("_")[0] in ("gear", "faceres")]
    return both.reindex(columns=first + rest)
