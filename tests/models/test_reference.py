"""The shipped reference detector: loads anywhere, agrees with itself, and still detects."""

import json
import subprocess
import sys

import numpy as np
import pytest

from fakeface_tf import preprocess
from fakeface_tf.data import faces
from fakeface_tf.models import artifacts

REF = artifacts.REFERENCE
# Measured on the sample's test split by scripts/reference.sh (see MODEL_CARD.md); the model is
# deterministic, so a drift of more than 0.01 is a regression (or a rebuilt model: update both).
TEST_ACCURACY, TEST_AUC = 0.894, 0.957


@pytest.fixture(scope="module")
def reference():
    return artifacts.load_model(REF)


@pytest.fixture(scope="module")
def test_split(sample_root, reference):
    """The sample's own test split, cut exactly as for the reference's training."""
    items, _, _ = preprocess.find_items(sample_root / "faces")
    items = [i for i in items if i.split == "test"]
    crops = faces.crop_files([i.path for i in items], reference.face_options, progress=False)
    kept = [(c.image, i.label == "fake") for c, i in zip(crops, items) if c.ok]
    return np.stack([k[0] for k in kept]), np.array([k[1] for k in kept], dtype=int)


def test_reference_ships_everything_the_card_promises():
    for name in ("model.keras", "saved_model", "config.yaml", "metrics.json", "threshold.json",
                 "MODEL_CARD.md"):
        assert (REF / name).exists(), name
    size = sum(p.stat().st_size for p in REF.rglob("*") if p.is_file())
    # FaceRes' 3.2 M float32 weights are 12.4 MiB in model.keras and again in saved_model
    # (each weight once); the plots, galleries and reports add about 4 MiB: 29.1 MiB in all.
    assert size < 30 * 2**20


@pytest.mark.slow
def test_reference_loads_in_a_fresh_process_with_plain_keras_and_as_savedmodel(test_split, tmp_path,
                                                                               reference):
    images = test_split[0][:6]
    np.save(tmp_path / "crops.npy", images)
    script = f"""
import json, numpy as np, keras, tensorflow as tf
images = np.load({str(tmp_path / 'crops.npy')!r})
model = keras.models.load_model({str(REF / 'model.keras')!r})
saved = tf.saved_model.load({str(REF / 'saved_model')!r})
serve = saved.signatures["serving_default"]
from_keras = model.predict(images.astype("float32"), verbose=0).ravel()
from_saved = list(serve(tf.constant(images)).values())[0].numpy().ravel()
print(json.dumps({{"keras": from_keras.tolist(), "saved": from_saved.tolist()}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    scores = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(scores["keras"], scores["saved"], atol=1e-5)
    np.testing.assert_allclose(scores["keras"], reference.predict(images), atol=1e-5)


@pytest.mark.slow
def test_reference_scores_its_measured_accuracy_and_auc_on_the_sample_test_split(test_split, reference):
    from sklearn.metrics import roc_auc_score

    images, labels = test_split
    assert 0 < labels.mean() < 1
    scores = reference.predict(images)
    assert ((scores >= reference.threshold) == labels).mean() == pytest.approx(TEST_ACCURACY, abs=0.01)
    assert roc_auc_score(labels, scores) == pytest.approx(TEST_AUC, abs=0.01)
