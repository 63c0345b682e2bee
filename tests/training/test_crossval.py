"""Cross-validation of frozen-feature recipes: the grouped split, the paired summary, the fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.training import crossval


def _faces(n: int = 60):
    """Paths and labels with FFHQ-id twins (zoya_/wfir_ of one id) among the reals."""
    paths, labels = [], []
    for i in range(n):
        if i % 2:
            paths.append(f"fake/roei_fake_{i}.jpg")
        elif i % 6 == 0:
            paths.append(f"real/wfir_{i - 2:05d}.jpg")  # the same FFHQ id as the face before it
        else:
            paths.append(f"real/zoya_{i:05d}.jpg")
        labels.append(i % 2)
    return np.array(paths), np.array(labels)


def test_folds_are_the_same_for_a_seed_and_differ_for_another():
    paths, labels = _faces()
    first = crossval.folds(paths, labels, k=5, seed=0)
    assert np.array_equal(first, crossval.folds(paths, labels, k=5, seed=0))
    assert not np.array_equal(first, crossval.folds(paths, labels, k=5, seed=1))


def test_every_face_is_in_exactly_one_fold_and_no_identity_straddles_two():
    paths, labels = _faces()
    fold = crossval.folds(paths, labels, k=5, seed=3)
    assert set(fold) == set(range(5))  # every face placed, every fold used
    groups = pd.DataFrame({"group": [crossval.identity(p) for p in paths], "fold": fold})
    assert groups.groupby("group")["fold"].nunique().max() == 1
    twins = groups[groups["group"] == "ffhq:00004"]
    assert len(twins) == 2 and twins["fold"].nunique() == 1  # zoya_00004 and wfir_00004
    for f in range(5):  # stratified: both classes in every held-out fold
        assert set(labels[fold == f]) == {0, 1}


def test_identity_reads_ffhq_ids_from_names_and_falls_back_to_the_file():
    assert crossval.identity("real/zoya_01099.jpg") == crossval.identity("real/wfir_01099.jpg")
    assert crossval.identity("fake/zoya_00AUP94LQS.jpg") == "file:fake/zoya_00AUP94LQS.jpg"
    assert crossval.identity("real/roei_real_12.jpg") == "file:real/roei_real_12.jpg"


def test_identity_agrees_with_the_ffhq_ids_of_the_attributes_table(sample_root):
    table = pd.read_csv(sample_root / "faces" / "real_ffhq_attributes.csv", dtype=str)
    got = [crossval.identity(f.removeprefix("faces/")) for f in table["file"]]
    assert got == [f"ffhq:{i}" for i in table["ffhq_id"]]


def test_too_many_folds_for_the_identities_is_refused():
    paths, labels = _faces(8)
    with pytest.raises(FakefaceError, match="--folds 6"):
        crossval.folds(paths, labels, k=6)


def test_summary_gain_is_the_mean_and_sd_of_per_fold_differences():
    cv = pd.DataFrame({"recipe": ["faceres"] * 3 + ["fused"] * 3, "fold": [0, 1, 2] * 2,
                       "accuracy": [0.80, 0.90, 0.70, 0.85, 0.92, 0.78],
                       "auc": [0.90, 0.95, 0.85, 0.90, 0.96, 0.86]})
    row = crossval.summarise(cv).set_index("recipe")
    assert row.loc["fused", "accuracy_mean"] == pytest.approx(0.85)
    assert row.loc["fused", "accuracy_sd"] == pytest.approx(0.07)
    assert row.loc["fused", "accuracy_gain_vs_faceres"] == pytest.approx(0.05)  # (.05+.02+.08)/3
    assert row.loc["fused", "accuracy_gain_sd_vs_faceres"] == pytest.approx(0.03)
    assert row.loc["fused", "auc_gain_vs_faceres"] == pytest.approx(0.02 / 3)  # (0+.01+.01)/3
    assert row.loc["faceres", "accuracy_gain_vs_faceres"] == 0.0
    assert row.loc["faceres", "accuracy_gain_sd_vs_faceres"] == 0.0
    assert list(row["folds"]) == [3, 3]
    # Nadeau-Bengio: t = 0.05 / sqrt((1/3 + 1/2) * 0.03^2) = 1.826 on 2 degrees of freedom
    assert row.loc["fused", "accuracy_p_vs_faceres"] == pytest.approx(0.2094, abs=1e-4)
    assert np.isnan(row.loc["faceres", "accuracy_p_vs_faceres"])


@pytest.mark.slow  # 114 small regressions: the C search of 2 recipes x 3 folds
def test_crossvalidate_scores_every_recipe_on_every_fold_and_reports_its_c(tmp_path):
    paths, labels = _faces(60)
    rng = np.random.default_rng(0)
    signal = rng.normal(0, 1, (60, 4)) + labels[:, None] * 1.5
    noise = rng.normal(0, 1, (60, 4))
    cv = crossval.crossvalidate({"faceres": signal, "fused": noise}, labels, paths, k=3)
    assert len(cv) == 6 and set(cv["C"]) <= set(crossval.CV_C)
    assert (cv["train_faces"] + cv["test_faces"] == 60).all()
    means = cv.groupby("recipe")["auc"].mean()
    assert means["faceres"] > 0.9 and means["fused"] < 0.75
    assert crossval.plot(cv, tmp_path / "cv.png", "test").stat().st_size > 10_000


def test_recipes_of_faces_not_in_the_same_order_are_refused():
    from types import SimpleNamespace

    a = SimpleNamespace(paths=np.array(["a", "b"]))
    b = SimpleNamespace(paths=np.array(["b", "a"]))
    with pytest.raises(FakefaceError, match="not over the same faces"):
        crossval.recipe_matrices(["fused"], {"faceres": a, "inception_nsfw": b})
    with pytest.raises(FakefaceError, match="unknown recipe 'vgg'"):
        crossval.check_recipes(["vgg"], [])


@pytest.mark.slow  # runs a toy backbone over the tiny records
def test_features_are_computed_once_per_face_and_view_then_read_from_the_cache(
        tiny_records, tmp_path, monkeypatch):
    import keras

    from fakeface_tf.core import config
    from fakeface_tf.training import features

    monkeypatch.setenv(config.CACHE_ENV, str(tmp_path))
    inputs = keras.Input((32, 32, 1))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs[:, :, :16]))
    calls = []

    def backbone():  # the mean of the left half: plain and mirrored views differ
        return model, lambda images: (calls.append(len(images)), np.asarray(model(images)))[1]

    monkeypatch.setitem(features.BACKBONES, "toy", backbone)
    faces = features.load("toy", tiny_records, progress=False)
    assert faces.features.shape == (96, 2, 1) and sum(calls) == 2 * 96  # 64 train + 32 valid
    assert faces.paths[0] == "train/0.jpg" and faces.paths[-1] == "valid/31.jpg"
    assert not np.allclose(faces.view("plain"), faces.features[:, 1])
    np.testing.assert_allclose(faces.view("flip"), faces.features.mean(axis=1))
    calls.clear()
    again = features.load("toy", tiny_records, progress=False)
    assert calls == [] and np.array_equal(again.features, faces.features)
    assert np.array_equal(again.labels, faces.labels) and list(again.paths) == list(faces.paths)


@pytest.mark.slow  # a toy backbone over the tiny records' source images
def test_a_whole_image_backbone_sees_the_source_images_not_the_crops(tiny_records, tmp_path,
                                                                      monkeypatch):
    import json
    import shutil

    import keras
    from PIL import Image

    from fakeface_tf.core import config
    from fakeface_tf.data.records import SUMMARY_FILE
    from fakeface_tf.training import features

    monkeypatch.setenv(config.CACHE_ENV, str(tmp_path / "cache"))
    records = shutil.copytree(tiny_records, tmp_path / "records")
    src = tmp_path / "src"
    shade = {}
    for split, n in (("train", 64), ("valid", 32)):
        (src / split).mkdir(parents=True)
        for j in range(n):  # a flat grey image each: its whole-image mean is its shade
            shade[f"{split}/{j}.jpg"] = (j * 7 + (split == "valid") * 3) % 250
            # PNG bytes under the records' .jpg name: lossless, so the mean is the shade
            Image.new("RGB", (48, 40), (shade[f"{split}/{j}.jpg"],) * 3).save(
                src / split / f"{j}.jpg", format="PNG")
    inputs = keras.Input((features.WHOLE_SIDE, features.WHOLE_SIDE, 3))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs[..., :1]))
    monkeypatch.setitem(features.BACKBONES, "toy_whole", lambda: (model, lambda x: np.asarray(model(x))))
    monkeypatch.setattr(features, "WHOLE_IMAGE", {"toy_whole"})
    with pytest.raises(FakefaceError, match="settings.src"):
        features.load("toy_whole", records, progress=False)
    (records / SUMMARY_FILE).write_text(json.dumps({"settings": {"src": str(src)}}))
    faces = features.load("toy_whole", records, progress=False)
    expected = np.array([shade[p] for p in faces.paths], np.float32)
    np.testing.assert_allclose(faces.features[:, 0, 0], expected, atol=1.0)
    np.testing.assert_allclose(faces.features[:, 1, 0], expected, atol=1.0)


def test_surest_accuracy_keeps_the_faces_with_the_largest_logits():
    labels = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 0])
    scores = np.array([5.0, -4.0, 3.0, -2.0, 1.5, -1.2, 0.9, 0.8, -0.1, 0.05])  # last 3 wrong
    assert crossval.surest_accuracy(labels, scores, coverage=0.7) == 1.0  # 7 surest: all right
    assert crossval.surest_accuracy(labels, scores, coverage=0.8) == pytest.approx(7 / 8)
    assert crossval.surest_accuracy(labels, scores, coverage=1.0) == pytest.approx(0.7)
