"""The main job end to end on a miniature copy of the sample layout."""

import importlib.util
import json
import re
import shutil

import pandas as pd
import pytest

from fakeface_tf.cli import main
from fakeface_tf.core.run_folder import RunFolder
from fakeface_tf.training import tracking


@pytest.fixture(scope="module")
def mini_data(sample_root, tmp_path_factory):
    """faces/{real,fake} with 30 images each and a fairness/ set of 12 labelled faces."""
    root = tmp_path_factory.mktemp("mini_data")
    for label in ("real", "fake"):
        (root / "faces" / label).mkdir(parents=True)
        for path in sorted((sample_root / "faces" / label).glob("*.jpg"))[:30]:
            shutil.copy(path, root / "faces" / label / path.name)
    labels = pd.read_csv(sample_root / "fairness" / "labels.csv")
    picked = labels.groupby("gender").head(6)
    (root / "fairness" / "images").mkdir(parents=True)
    for name in picked.file:
        shutil.copy(sample_root / "fairness" / "images" / name, root / "fairness" / "images" / name)
    picked.to_csv(root / "fairness" / "labels.csv", index=False)
    return root


@pytest.mark.slow
def test_main_job_preprocesses_trains_evaluates_audits_and_writes_a_card(mini_data, tmp_path, capsys):
    runs = tmp_path / "runs"
    code = main(["main", "--data", str(mini_data), "--runs-dir", str(runs), "--workers", "1",
                 "--set", f"data.path={tmp_path / 'records'}", "data.image_size=48",
                 "training.epochs=1", "training.batch_size=8"])
    assert code == 0
    out = capsys.readouterr().out
    assert "test split: accuracy" in out and "model card:" in out
    assert re.search(r"Done in \d+ s \(preprocess \d+ s, train \d+ s, evaluate \d+ s, "
                     r"fairness \d+ s, card \d+ s\)", out)
    (run_dir,) = [p for p in runs.iterdir() if RunFolder(p).is_run()]  # beside: the MLflow store
    assert (tmp_path / "records" / "manifest.csv").is_file()
    assert (run_dir / "model.keras").is_file() and (run_dir / "threshold.json").is_file()
    assert list(run_dir.glob("eval-*/metrics.json")) and list(run_dir.glob("robustness-*/robustness.csv"))
    assert (run_dir / "fairness" / "fairness.json").is_file()
    assert "## " in (run_dir / "MODEL_CARD.md").read_text()
    published = tmp_path / "saved_models" / run_dir.name  # with the threshold that decides verdicts
    assert (published / "threshold.json").read_bytes() == (run_dir / "threshold.json").read_bytes()
    assert out.count(f"run folder: {run_dir}") == 1
    if importlib.util.find_spec("mlflow"):  # the [track] extra: the run's mirror has the reports
        known = json.loads(RunFolder(run_dir).mlflow_run.read_text())
        logged = tracking.mlflow_client(known["tracking_uri"]).get_run(known["run_id"]).data.metrics
        (test_eval,) = run_dir.glob("eval-*-test/metrics.json")
        figures = json.loads(test_eval.read_text())
        assert logged[f"{test_eval.parent.name}.accuracy"] == pytest.approx(figures["accuracy"])
        assert any(k.startswith("fairness.") for k in logged)
    assert out.rstrip().endswith(f"  fakeface predict IMAGE --model {published}\n"
                                 f"  fakeface serve --model {published}\n"
                                 f"  fakeface evaluate {published} {tmp_path / 'records'}")


def test_main_job_without_data_says_what_to_download(tmp_path, capsys):
    assert main(["main", "--data", str(tmp_path / "missing")]) == 2
    assert "140k Real and Fake Faces" in capsys.readouterr().err
