"""Ensembles (fakeface_tf.training.ensemble): averaged logits in one flat, portable, explainable model."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from fakeface_tf.cli import main
from fakeface_tf.core.config import Config, apply_overrides
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data import records
from fakeface_tf.models.artifacts import member_prefixes
from fakeface_tf.models.registry import build_model
from fakeface_tf.serving.inference import EXPLAIN_METHODS, Detector
from fakeface_tf.training.ensemble import ensemble
from fakeface_tf.training.train import train

from conftest import tiny_config


def _fast(seed: int, size: int = 64) -> keras.Model:
    keras.utils.set_random_seed(seed)
    cfg = apply_overrides(Config(), ["model.name=fast", "model.freq_branch=true",
                                     f"data.image_size={size}", "model.filters=8", "data.color=rgb"])
    return build_model(cfg)


def _logit(model: keras.Model, images: np.ndarray, name: str = "logit") -> np.ndarray:
    cut = keras.Model(model.inputs, model.get_layer(name).output)
    return cut.predict(images, verbose=0).ravel()


def test_ensemble_logit_is_the_mean_of_its_members_logits():
    members = [_fast(1), _fast(2)]
    images = np.random.default_rng(0).uniform(0, 255, (4, 64, 64, 3)).astype("float32")
    model = ensemble(members, name="fast+fast")  # named after a folder; TF refuses "+"
    assert model.name == "fast_fast"
    expected = np.mean([_logit(m, images) for m in members], axis=0)
    np.testing.assert_allclose(_logit(model, images), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.predict(images, verbose=0).ravel(), 1 / (1 + np.exp(-expected)),
                               rtol=1e-4)
    assert member_prefixes(model) == ["m0_", "m1_"]
    assert member_prefixes(members[0]) == [""]
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)  # flat graph


@pytest.mark.slow
def test_ensemble_loads_in_plain_keras_in_a_fresh_process(tmp_path):
    model = ensemble([_fast(1), _fast(2)])
    model.save(tmp_path / "e.keras")
    images = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.save(tmp_path / "x.npy", images)
    script = (f"import keras, numpy as np; m = keras.models.load_model({str(tmp_path / 'e.keras')!r}); "
              f"print(m.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0).ravel().tolist())")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(fresh, model.predict(images, verbose=0).ravel(), rtol=1e-5)


def test_members_with_other_input_shapes_are_refused():
    with pytest.raises(FakefaceError, match="member 1"):
        ensemble([_fast(1, 64), _fast(2, 32)])
    with pytest.raises(FakefaceError, match="at least two"):
        ensemble([_fast(1)])


@pytest.mark.slow
def test_every_method_explains_an_ensemble_from_all_members(tmp_path, sample_root):
    ensemble([_fast(1), _fast(2)]).save(tmp_path / "e.keras")
    detector = Detector.load(tmp_path / "e.keras")
    face = sorted((sample_root / "faces" / "fake").glob("*.jpg"))[0]
    for method in EXPLAIN_METHODS:
        heat = detector.predict(face, explain=method).heatmap
        assert heat.shape == (64, 64) and heat.min() == 0.0 and heat.max() == 1.0
    assert len(detector._explainer.penultimates) == 2
    assert {name[:3] for name in detector._explainer.penultimates} == {"m0_", "m1_"}


@pytest.mark.slow
def test_cli_ensembles_two_runs_into_a_scored_model_folder(tiny_records, tmp_path, capsys):
    runs = [train(tiny_config(tiny_records, "training.epochs=1", f"training.seed={seed}"),
                  tmp_path / "runs", progress=False) for seed in (1, 2)]
    out = tmp_path / "ens"
    assert main(["ensemble", str(runs[0]), str(runs[1]), "--out", str(out)]) == 0
    assert "ensemble of 2" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["members"] == 2 and metrics["member1_run"] == runs[1].name
    assert {"model.keras", "saved_model", "config.yaml", "env.json"} <= {p.name for p in out.iterdir()}
    # The recorded validation figures are the saved ensemble's own on the valid split.
    valid = records.read_all(tiny_records, "valid")
    model = keras.models.load_model(out / "model.keras")
    scores = model.predict(np.stack([ex["image"] for ex in valid]).astype("float32"), verbose=0).ravel()
    labels = np.array([ex["label"] for ex in valid])
    assert metrics["accuracy"] == pytest.approx(np.mean((scores > 0.5) == labels))
    auc = keras.metrics.AUC()  # Keras' 200-bucket AUC, as training reports it (not sklearn's exact one)
    auc.update_state(labels, scores)
    assert metrics["auc"] == pytest.approx(float(auc.result()), abs=1e-6)


@pytest.mark.slow
def test_cli_refuses_members_cut_differently(tiny_records, tmp_path, capsys):
    first = train(tiny_config(tiny_records, "training.epochs=1"), tmp_path / "runs", progress=False)
    second = train(tiny_config(tiny_records, "training.epochs=1", "data.margin=0.5"),
                   tmp_path / "runs", progress=False)
    assert main(["ensemble", str(first), str(second), "--out", str(tmp_path / "e")]) == 2
    assert "same crops" in capsys.readouterr().err
