"""What more training faces buy: test accuracy and ROC-AUC of runs that differ only in
`data.train_fraction`, each at its own validation-picked threshold (`fakeface learning-curve`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fakeface_tf.analysis.metrics import choose_threshold, compute_metrics
from fakeface_tf.analysis.scoring import check_inputs, has_split, score_dataset
from fakeface_tf.core import plots
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.files import write_text_atomic
from fakeface_tf.models import artifacts

TABLE_FILE = "learning_curve.csv"
FIGURE_FILE = "learning_curve.png"


def _point(run, data: str | Path, split: str, progress: bool) -> dict:
    """One row of the curve: the run's training faces and its scores on `split`."""
    # Imported here: the data pipeline loads TensorFlow, which the path checks before the
    # first model loads must not wait for (tests/cli/test_cli.py).
    from fakeface_tf.data import datasets

    loaded = artifacts.load_model(run)
    if loaded.config is None:
        raise FakefaceError(f"{run}: a learning-curve point needs a run folder with config.yaml")
    fraction = loaded.config.data.train_fraction
    records = datasets.records_path(loaded.config)
    faces = sum(datasets.count_examples(records, "train", fraction).values())
    threshold = loaded.threshold
    if has_split(data, "valid"):  # picked here, not saved: the run's own threshold stays
        threshold = choose_threshold(*score_dataset(loaded, data, "valid", keep_worst=0,
                                                    progress=progress)[:2])
    y_true, scores, _ = score_dataset(loaded, data, split, keep_worst=0, progress=progress)
    metrics = compute_metrics(y_true, scores, threshold)
    return {"run": Path(run).name, "train_fraction": fraction, "train_faces": faces,
            "accuracy": metrics["accuracy"], "roc_auc": metrics["roc_auc"],
            "threshold": threshold, "test_faces": len(y_true)}


def learning_curve(run_dirs: list, data: str | Path, out: str | Path, split: str = "test",
                   progress: bool = True) -> pd.DataFrame:
    """Test accuracy (at each run's own validation-picked threshold) and ROC-AUC of runs that
    differ only in `data.train_fraction`: what more training faces buy. Writes
    `learning_curve.csv` and `learning_curve.png` into `out` and returns the table."""
    check_inputs(run_dirs, data, split)  # every path checked before the first model loads
    rows = [_point(run, data, split, progress) for run in run_dirs]
    table = pd.DataFrame(rows).sort_values("train_faces").reset_index(drop=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / TABLE_FILE, table.to_csv(index=False))
    plots.data_curve(table, out / FIGURE_FILE,
                     title=f"What more training faces buy ({split} split, {table['test_faces'].iloc[0]} faces)")
    return table
