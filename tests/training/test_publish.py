"""A published model folder answers as its run folder does: it carries every file that decides a
verdict (`VERDICT_FILES`), so `fakeface predict` gives the same verdict and P(fake) from both."""

from __future__ import annotations

import json

import pytest

from fakeface_tf.cli import main
from fakeface_tf.core.run_folder import VERDICT_FILES, RunFolder
from fakeface_tf.models.artifacts import save_threshold
from fakeface_tf.models.uncertainty import Band, write_band
from fakeface_tf.training.finalise import publish


def _predict(capsys, model, face) -> dict:
    assert main(["predict", str(face), "--model", str(model), "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.slow
def test_published_copy_gives_the_run_folders_verdict_and_probability(tiny_run_copy, sample_root,
                                                                      tmp_path, capsys):
    face = sorted((sample_root / "faces" / "real").glob("*.jpg"))[0]
    p = _predict(capsys, tiny_run_copy, face)["probability"]
    # A threshold on the other side of P(fake) than 0.5: the saved threshold and the default
    # 0.5 give different verdicts, so a copy without threshold.json would answer differently.
    threshold = (p + 1) / 2 if p >= 0.5 else p / 2
    save_threshold(tiny_run_copy, threshold, "given")
    write_band(tiny_run_copy, Band(low=0.0, high=min(p, threshold) / 2, alpha=0.05,
                                   n_calibration=100, source="test"))

    copy = publish(RunFolder(tiny_run_copy), tmp_path / "saved_models")

    present = [name for name in VERDICT_FILES if (tiny_run_copy / name).is_file()]
    assert {"face_cut.json", "threshold.json", "conformal.json"} <= set(present)
    for name in present:
        assert (copy / name).read_bytes() == (tiny_run_copy / name).read_bytes(), name
    from_run, from_copy = _predict(capsys, tiny_run_copy, face), _predict(capsys, copy, face)
    assert from_run["verdict"] == ("fake face" if p >= threshold else "real face")
    assert from_run["threshold"] == pytest.approx(threshold)
    assert from_run["band"] is not None
    for key in ("verdict", "probability", "threshold", "band"):
        assert from_copy[key] == from_run[key], key
