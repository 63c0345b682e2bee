"""GEAR rebuilt in Keras: parity with TF.js itself, its age bins, its cache and fetch, and its
measured accuracy on a fixed UTKFace subset; the FaceRes heads' agreement with the Face API."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fakeface_tf.core import config
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.models import faceres_groups, gear, npm_package

REFERENCE = Path(__file__).with_name("gear_tfjs_reference.json")  # gear_tfjs_reference.js made it
UTK_EVERY = 20  # the fixed UTKFace subset: every 20th row of fairness/labels.csv
UTK_GENDER_CORRECT = 85  # measured: 85 of the 103 (0.825)
FFHQ_FIRST = 100  # the fixed FFHQ subset: the first reals (by file) with a Face API gender
FACERES_GENDER_AGREE = 98  # measured: 98 of the 100


@pytest.fixture(scope="module")
def net():
    """GEAR with its published weights (fetched with npm into the project cache on first use)."""
    return gear.load()


def _pil_198(sample_root, files) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(sample_root / f).convert("RGB").resize((198, 198),
                                                                                  Image.BILINEAR))
                     for f in files])


@pytest.mark.slow
def test_gear_matches_its_tfjs_reference_within_1e4(net, sample_root):
    reference = json.loads(REFERENCE.read_text())
    images = _pil_198(sample_root, reference["files"])
    assert hashlib.sha256(images.tobytes()).hexdigest() == reference["input_sha256"]
    got = net.predict(images.astype(np.float32), verbose=0)
    for key in ("age", "gender", "race"):
        np.testing.assert_allclose(got[key], reference[key], atol=1e-4, err_msg=key)


def test_age_groups_follow_the_upstream_bins():
    ages = (0, 20, 21, 25, 26, 30, 31, 40, 41, 50, 51, 60, 61, 116)
    assert [gear.age_group(a) for a in ages] == [
        "0-20", "0-20", "21-25", "21-25", "26-30", "26-30", "31-40", "31-40", "41-50", "41-50",
        "51-60", "51-60", "61+", "61+"]


def test_faceres_age_bins_are_the_labels_bins():
    assert [faceres_groups.age_bin(y) for y in (0, 2.9, 3, 9.99, 10, 29.5, 69.9, 70, 99)] == [
        "0-2", "0-2", "3-9", "3-9", "10-19", "20-29", "60-69", "70+", "70+"]


def test_estimate_names_the_most_likely_class_of_each_head(net):
    images = [np.full((120, 90, 3), 128, np.uint8), np.zeros((198, 198, 3), np.uint8)]
    table = gear.estimate(net, images, gear.HUMAN_BOX)
    probs = net.predict(gear.prepare(images, gear.HUMAN_BOX), verbose=0)
    for key, names in gear.CLASSES.items():
        assert list(table[key]) == [names[i] for i in np.argmax(probs[key], 1)]
        np.testing.assert_allclose(table[f"{key}_p"], np.max(probs[key], 1), rtol=1e-6)


def test_a_batch_of_one_size_is_cut_as_each_image_alone():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (200, 200, 3), dtype=np.uint8) for _ in range(3)]
    alone = np.concatenate([gear.prepare([image], gear.HUMAN_BOX) for image in images])
    np.testing.assert_allclose(gear.prepare(images, gear.HUMAN_BOX), alone, atol=1e-4)
    mixed = gear.prepare([images[0], images[1][:150]], gear.HUMAN_BOX)
    np.testing.assert_allclose(mixed[0], alone[0], atol=1e-4)


@pytest.mark.slow
def test_gear_gender_accuracy_on_a_fixed_utkface_subset_is_the_measured_value(net, sample_root):
    labels = pd.read_csv(sample_root / "fairness" / "labels.csv").iloc[::UTK_EVERY]
    images = [np.asarray(_open(sample_root / "fairness" / "images" / f)) for f in labels["file"]]
    table = gear.estimate(net, images, gear.WHOLE_BOX)
    correct = int((table["gender"].to_numpy() == labels["gender"].to_numpy()).sum())
    assert (len(labels), correct) == (103, UTK_GENDER_CORRECT)


@pytest.mark.slow
def test_faceres_heads_agree_with_the_face_api_on_a_fixed_ffhq_subset(sample_root):
    attrs = pd.read_csv(sample_root / "faces" / "real_ffhq_attributes.csv")
    attrs = attrs[attrs["gender"].isin(["Male", "Female"])].sort_values("file").head(FFHQ_FIRST)
    images = [np.asarray(_open(sample_root / f).resize((224, 224))) for f in attrs["file"]]
    table = faceres_groups.estimate(faceres_groups.load(), images)
    agree = int((table["gender"].to_numpy() == attrs["gender"].to_numpy()).sum())
    assert agree == FACERES_GENDER_AGREE


def _open(path):
    from PIL import Image

    return Image.open(path).convert("RGB")


def test_cached_weights_are_reused_without_running_npm(net, monkeypatch):
    cached = gear.weights_file()

    def no_subprocess(*args, **kwargs):
        raise AssertionError("npm must not run when the weights are cached")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert gear.weights_file() == cached


def test_missing_npm_says_what_to_install_or_where_to_put_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv(config.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FakefaceError, match=r"GEAR weights need npm .*gear.json and gear.bin"):
        gear.weights_file()
    assert not (tmp_path / gear.CACHE_NAME / gear.WEIGHTS_NAME).exists()


def test_a_changed_package_file_is_refused_by_its_checksum(tmp_path):
    for name in ("gear.json", "gear.bin"):
        (tmp_path / name).write_bytes(b"not the published file")
    with pytest.raises(FakefaceError, match="gear.json: SHA-256 differs"):
        npm_package.verified(tmp_path, gear.SOURCES, "pkg")


def test_hand_placed_package_files_are_converted_without_npm(net, tmp_path, monkeypatch):
    (tmp_path / gear.CACHE_NAME).mkdir()
    for name in ("gear.json", "gear.bin"):
        shutil.copy(config.cache_dir(gear.CACHE_NAME) / name, tmp_path / gear.CACHE_NAME / name)
    monkeypatch.setenv(config.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    model = gear.reference_model()
    model.load_weights(gear.weights_file())
    for ours, theirs in zip(model.weights, net.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
