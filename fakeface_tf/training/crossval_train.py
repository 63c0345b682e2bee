"""A trained recipe (a config, fine-tuning and all) under the same folds as the frozen probes.

For each of crossval.py's folds, a records folder is written whose `test` split is the fold's
held-out faces, whose `valid` split is an identity-grouped tenth of the other folds (the
epoch a run keeps is picked on it, as `fakeface train` picks on the records' validation
split), and whose `train` split is the rest. The config trains on it as `fakeface train`
would, and the kept model scores the held-out faces with the probes' metrics (accuracy at
P(fake) 0.5, ROC-AUC, accuracy on the surest faces), so its rows pair with theirs fold by
fold. The probes fit on every face outside the fold; a trained recipe gives a tenth of those
to choosing its epoch, so the pairing is, if anything, unfair to it.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from fakeface_tf.core.config import Config, apply_overrides
from fakeface_tf.data import records as rec
from fakeface_tf.training.crossval import folds, identity, surest_accuracy

log = logging.getLogger(__name__)

SPLITS = ("train", "valid")  # the faces cross-validated, in crossval's (features.py's) order
INNER_FOLDS = 10  # the validation split: one of this many identity-grouped parts of the rest
SHARD_FACES = 64  # faces per shard of a fold's records


def _raw(records: Path):
    """(serialized example, path, label) of every face of SPLITS, in shard order."""
    import tensorflow as tf

    wanted = {k: rec.features()[k] for k in ("path", "label")}
    for split in SPLITS:
        for raw in tf.data.TFRecordDataset(rec.shard_files(records, split)):
            parsed = tf.io.parse_single_example(raw, wanted)
            yield raw.numpy(), parsed["path"].numpy().decode(), int(parsed["label"])


def fold_splits(paths, labels, fold: int, k: int = 5, seed: int = 0) -> np.ndarray:
    """Each face's split in fold `fold`'s records: test (held out), valid or train."""
    labels = np.asarray(labels)
    outer = folds(paths, labels, k, seed)
    split = np.where(outer == fold, "test", "train").astype(object)
    rest = np.flatnonzero(outer != fold)
    inner = StratifiedGroupKFold(n_splits=INNER_FOLDS, shuffle=True, random_state=seed)
    groups = [identity(paths[i]) for i in rest]
    _, valid = next(inner.split(np.zeros(len(rest)), labels[rest], groups))
    split[rest[valid]] = "valid"
    return split


def _with_split(serialized: bytes, split: str) -> bytes:
    import tensorflow as tf

    example = tf.train.Example.FromString(serialized)
    example.features.feature["split"].bytes_list.value[:] = [split.encode()]
    return example.SerializeToString()


def write_fold(records: Path, out: Path, splits: np.ndarray) -> Path:
    """The faces of `records` re-split as `splits` says (in `_raw`'s order) into `out`,
    SHARD_FACES to a shard, streamed: at most one shard per split is held in memory."""
    out.mkdir(parents=True, exist_ok=True)
    totals = {s: math.ceil((splits == s).sum() / SHARD_FACES) for s in ("train", "valid", "test")}
    pending = {s: [] for s in totals}
    written = {s: 0 for s in totals}

    def flush(split: str) -> None:
        name = rec.shard_name(split, written[split], totals[split])
        rec.write(out / name, pending[split])
        pending[split], written[split] = [], written[split] + 1

    for (serialized, _, _), split in zip(_raw(records), splits):
        pending[split].append(_with_split(serialized, split))
        if len(pending[split]) == SHARD_FACES:
            flush(split)
    for split in totals:
        if pending[split]:
            flush(split)
    if (records / rec.SUMMARY_FILE).is_file():  # the cut, which training checks
        summary = json.loads((records / rec.SUMMARY_FILE).read_text())
        summary["records"] = {s: int((splits == s).sum()) for s in totals}
        (out / rec.SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return out


def held_out_scores(run_dir: Path, fold_records: Path) -> tuple[np.ndarray, np.ndarray]:
    """(labels, logits) of the fold's held-out faces under the run's kept model."""
    from fakeface_tf.data import datasets
    from fakeface_tf.models import artifacts

    model = artifacts.load_model(run_dir)
    labels, logits = [], []
    for images, batch_labels in datasets.make_dataset(fold_records, "test", batch_size=64,
                                                      training=False):
        p = np.clip(np.asarray(model.predict(images.numpy()), float).reshape(-1), 1e-7, 1 - 1e-7)
        logits.append(np.log(p / (1 - p)))
        labels.append(batch_labels.numpy().reshape(-1))
    return np.concatenate(labels).astype(int), np.concatenate(logits)


def crossvalidate(cfg: Config, records: Path, out: Path, k: int = 5, seed: int = 0,
                  progress: bool = True, keep_records: bool = False) -> pd.DataFrame:
    """One row per fold for `cfg` (recipe = its name), as crossval.crossvalidate gives the
    probes; each fold's run folder stays under out/runs."""
    from fakeface_tf.training.train import train  # TensorFlow and Keras

    paths, labels = zip(*[(path, label) for _, path, label in _raw(records)])
    paths, labels = np.array(paths), np.array(labels)
    rows = []
    for i in range(k):
        splits = fold_splits(paths, labels, i, k, seed)
        fold_records = write_fold(records, out / f"fold{i}-records", splits)
        fold_cfg = apply_overrides(cfg, [
            f"data.path={fold_records}", f"name={cfg.name}-fold{i}"])
        run_dir = train(fold_cfg, runs_dir=out / "runs", progress=progress)
        y, scores = held_out_scores(run_dir, fold_records)
        rows.append({"recipe": cfg.name, "fold": i, "accuracy": accuracy_score(y, scores > 0),
                     "auc": roc_auc_score(y, scores), "accuracy_at_coverage": surest_accuracy(y, scores),
                     "C": np.nan, "train_faces": int((splits == "train").sum()),
                     "test_faces": int((splits == "test").sum()), "run": str(run_dir)})
        log.info("%s fold %d: accuracy %.4f, AUC %.4f (%s)", cfg.name, i, rows[-1]["accuracy"],
                 rows[-1]["auc"], run_dir)
        if not keep_records:
            shutil.rmtree(fold_records)
    return pd.DataFrame(rows)
