"""The networks that estimate a fake face's group, and how well they do it.

Fakes have no recorded age, gender or race, so per-group FNR rests on estimates, and the
estimator's errors belong beside it. Two estimators run on a face crop of what the detector saw
(`face_crops`: for a detector of view "image", the face found again in the photo's square):

- GEAR (models/gear.py): age group, gender and race, on the Human library's crop box;
- the published FaceRes heads (models/faceres_groups.py): age (the labels' bins) and gender.

Each is checked against the Microsoft Face API estimates of the same held-out FFHQ reals
(`face_api_check`), and GEAR also against UTKFace's own labels (`utkface_check`), read as GEAR
was trained (each 200 px crop whole); the exact age comes from the file name
(`utk_<age>_<gender>_<race>_...`). GEAR was trained on a random 90 % of UTKFace, so most of
those faces were in its training set and that figure is an upper bound.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fakeface_tf.analysis.fairness_intervals import wilson
from fakeface_tf.data.face_cut import FaceOptions
from fakeface_tf.data.faces import extract_faces
from fakeface_tf.data.images import load_image
from fakeface_tf.data.labelled import AGE_BINS, load_labels
from fakeface_tf.models import faceres, faceres_groups, gear

log = logging.getLogger(__name__)

CHUNK = 256  # images decoded and estimated at a time
UTK_AGE = re.compile(r"utk_(\d+)_")  # the sample's UTKFace names keep UTKFace's age field
UTKFACE_CAVEAT = ("GEAR was trained on a random 90% of UTKFace, so most of these faces are "
                  "likely in its training set: an upper bound on its accuracy")
GEAR_BOX = gear.HUMAN_BOX  # the crop the Human library gives GEAR, here of the detector's crop


@dataclass
class Estimator:
    """A group estimator: `estimate(images)` -> DataFrame with `attributes` columns."""

    name: str
    describe: str
    estimate: Callable[[list], pd.DataFrame]
    attributes: tuple[str, ...]
    age_classes: tuple[str, ...]
    bin_age: Callable[[float], str]  # years -> one of age_classes
    model: object = None  # the network behind `estimate`


def load_estimators(names=("gear", "faceres")) -> dict[str, Estimator]:
    """The named estimators with their networks loaded (weights fetched on first use)."""
    found = {}
    if "gear" in names:
        model = gear.load()
        found["gear"] = Estimator("gear", "GEAR (age group, gender, race)",
                                  lambda x: gear.estimate(model, x, GEAR_BOX), tuple(gear.CLASSES),
                                  gear.AGE_GROUPS, gear.age_group, model)
    if "faceres" in names:
        heads = faceres_groups.load()
        found["faceres"] = Estimator("faceres", "the published FaceRes heads (age, gender)",
                                     lambda x: faceres_groups.estimate(heads, x),
                                     faceres_groups.ATTRIBUTES, AGE_BINS, faceres_groups.age_bin,
                                     heads)
    return found


def face_crops(images: np.ndarray, options: FaceOptions) -> np.ndarray:
    """The estimators' input: face crops, as they were trained on. A detector of view "face"
    already sees one; for view "image" the face is found again in the photo's square and cut
    as a face crop of the same size (the square itself where MTCNN finds none)."""
    if options.view == "face" or not len(images):
        return images
    crops = extract_faces(list(images), dataclasses.replace(options, view="face"))
    return np.stack([crop.image if crop.ok else image for crop, image in zip(crops, images)])


def licences(estimators: dict) -> list[str]:
    """The weights' provenance and licence of each estimator, for the report and the card."""
    notes = {"gear": gear.LICENSE_NOTE, "faceres": faceres.LICENSE_NOTE}
    return [notes[name] for name in estimators if name in notes]


def agreement(truth, estimate, classes) -> dict:
    """Accuracy with its Wilson 95 % interval, n, and the confusion matrix (rows: truth,
    columns: estimate, every class of `classes` present), over rows where both are known."""
    truth, estimate = pd.Series(truth, dtype=object), pd.Series(estimate, dtype=object)
    known = (truth.isin(classes) & estimate.isin(classes)).to_numpy()
    t, e = truth[known].to_numpy(), estimate[known].to_numpy()
    hits = int((t == e).sum())
    confusion = pd.crosstab(pd.Categorical(t, classes), pd.Categorical(e, classes), dropna=False)
    lo, hi = wilson(hits, len(t))
    return {"n": int(len(t)), "correct": hits, "accuracy": hits / len(t) if len(t) else None,
            "ci": [lo, hi], "classes": list(classes),
            "confusion": confusion.reindex(index=classes, columns=classes, fill_value=0)
            .to_numpy(dtype=int).tolist()}


def accuracy_text(entry: dict) -> str:
    """`0.840 [0.812, 0.864] (n=2054)`, or n/a."""
    if entry["accuracy"] is None:
        return "n/a"
    return f"{entry['accuracy']:.3f} [{entry['ci'][0]:.3f}, {entry['ci'][1]:.3f}] (n={entry['n']})"


def _binned(years, bin_age) -> list[str]:
    years = pd.to_numeric(pd.Series(years, dtype=object), errors="coerce")
    return [bin_age(y) if not np.isnan(y) else "" for y in years]


def face_api_check(reals: pd.DataFrame, estimator: Estimator) -> dict:
    """`estimator` against the Face API estimates of the same faces: `reals` has the Face API's
    `gender` and `age_estimate` (years) and the estimator's `<name>_gender` and `<name>_age`."""
    truth = _binned(reals.get("age_estimate", pd.Series([np.nan] * len(reals))), estimator.bin_age)
    return {"n": len(reals),
            "gender": agreement(reals["gender"], reals[f"{estimator.name}_gender"], gear.GENDERS),
            "age": agreement(truth, reals[f"{estimator.name}_age"], estimator.age_classes)}


def utkface_check(labels_csv: str | Path, model, progress: bool = True) -> dict:
    """GEAR (`model`) against a UTKFace labels CSV (`file,label,age,gender,race`): agreement
    per attribute (age where the file name gives the exact age)."""
    labels = load_labels(labels_csv, "utk")
    paths, parts = labels["path"].tolist(), []
    bar = tqdm(total=len(paths), desc="GEAR on UTKFace", unit="img", disable=not progress)
    for start in range(0, len(paths), CHUNK):
        images = [load_image(p) for p in paths[start:start + CHUNK]]
        parts.append(gear.estimate(model, images, gear.WHOLE_BOX))
        bar.update(len(images))
    bar.close()
    estimate = pd.concat(parts, ignore_index=True)
    years = labels["file"].str.extract(UTK_AGE, expand=False)
    result = {"labels": str(labels_csv), "n": len(labels), "input": "whole image",
              "caveat": UTKFACE_CAVEAT,
              "gender": agreement(labels["gender"], estimate["gender"], gear.GENDERS),
              "race": agreement(labels["race"], estimate["race"], gear.RACES),
              "age": agreement(_binned(years, gear.age_group), estimate["age"], gear.AGE_GROUPS)}
    log.info("GEAR on %d UTKFace faces: gender %s, race %s, age group %s", len(labels),
             *(accuracy_text(result[k]) for k in ("gender", "race", "age")))
    return result
