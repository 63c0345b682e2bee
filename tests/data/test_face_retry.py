"""The face cut's second try (FaceOptions.retry 1): MTCNN misses faces that fill the frame
(tight crops, most often of small children); a second look at the image padded on every side
finds them, without taking a non-face for a face or changing a face the first try found."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from fakeface_tf.core.config import REPO_ROOT, load_config
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data import face_cut, faces
from fakeface_tf.data.images import load_image

CUT = faces.FaceOptions(size=224, color="rgb", level=False)  # the reference's on the face, retry 1
FIRST_TRY_ONLY = dataclasses.replace(CUT, retry=0)
# A UTKFace 1-year-old whose face fills the 200 px frame: no face on the first try.
CHILD = "fairness/images/utk_1_0_2_20161219142306002.jpg"
# A dog: its padded copy shows MTCNN a small confident "face" that the frame-filling rule refuses.
DOG = "nonface/cnnd_200_biggan_real.jpg"
REFERENCE = REPO_ROOT / "saved_models" / "reference"
RECORDS = REPO_ROOT / "data" / "records_rgb224_nolevel"  # cut before the retry: view face, retry 0


def _sample(sample_root, name: str):
    path = sample_root / name
    if not path.is_file():
        pytest.skip(f"{path} is absent: the sample data (SOURCES.md) is not installed here")
    return path


def _both(path, options=CUT):
    """The crop of `path` without and with the second try."""
    image = load_image(path)
    first_only = dataclasses.replace(options, retry=0)
    return faces.extract_face(image, first_only), faces.extract_face(image, options)


def test_a_tight_child_face_mtcnn_misses_is_found_on_the_padded_second_try(sample_root):
    first, second = _both(_sample(sample_root, CHILD))
    assert first.status == "no_face"
    assert second.ok and second.reason == "found on the second try"
    # MTCNN's box runs past the top of the frame; it is clipped to the image (measured: 14.7, 0,
    # 185.3, 200 at confidence 0.964) and the keypoints come back into the original's pixels.
    assert second.box == pytest.approx((14.7, 0.0, 185.3, 200.0), abs=1.0)
    assert second.confidence == pytest.approx(0.964, abs=0.01)
    (lx, ly), (rx, ry) = second.keypoints["left_eye"], second.keypoints["right_eye"]
    assert 0 < lx < rx < 200 and 0 < ly < 100 and 0 < ry < 100 < second.keypoints["mouth_left"][1]
    assert second.image.shape == (224, 224, 3)


def test_a_nonface_stays_not_a_face_though_its_padded_copy_shows_a_small_face(sample_root,
                                                                                monkeypatch):
    first, second = _both(_sample(sample_root, DOG))
    assert first.status == second.status == "low_confidence"
    assert (second.reason, second.box, second.confidence) == (first.reason, first.box, first.confidence)
    monkeypatch.setattr(faces, "RETRY_MIN_FILL", 0.0)  # without the rule that the face fills the frame
    assert _both(sample_root / DOG)[1].ok  # the dog would pass: the rule is what keeps it out


@pytest.mark.slow
def test_every_nonface_and_mtcnn_miss_keeps_its_status(sample_root):
    """SOURCES.md: nonface/ holds no people; mtcnn_misses/ (faces MTCNN missed upstream) is
    for the no-face path. The second try changes neither."""
    paths = [p for folder in ("nonface", "mtcnn_misses")
             for p in sorted((sample_root / folder).glob("*.jpg"))]
    if not paths:
        pytest.skip(f"{sample_root}/nonface and mtcnn_misses are absent")
    before, after = (faces.crop_files(paths, o, progress=False) for o in (FIRST_TRY_ONLY, CUT))
    assert not any(c.ok for c in before)
    assert [(c.status, c.reason) for c in after] == [(c.status, c.reason) for c in before]


@pytest.mark.parametrize("level", [False, True])
def test_a_face_found_on_the_first_try_is_cut_identically_with_and_without_the_retry(sample_root,
                                                                                      level):
    found = [p for folder in ("real", "fake")
             for p in sorted((sample_root / "faces" / folder).glob("*.jpg"))[:3]]
    paths = [*found, _sample(sample_root, CHILD)]  # retried in the same batch as the found faces
    options = dataclasses.replace(CUT, level=level)
    before, after = (faces.crop_files(paths, dataclasses.replace(options, retry=r), progress=False)
                     for r in (0, 1))
    for a, b in zip(before[:-1], after[:-1]):
        assert a.ok and b.ok and a.image.tobytes() == b.image.tobytes()
        fields = ("box", "keypoints", "angle", "confidence", "reason")
        assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
        np.testing.assert_array_equal(a.transform, b.transform)
    assert not before[-1].ok and after[-1].ok


def test_a_new_cut_records_its_retry_and_an_unknown_retry_is_refused(tmp_path):
    face_cut.save_cut(tmp_path, faces.FaceOptions())
    assert json.loads((tmp_path / "face_cut.json").read_text())["retry"] == face_cut.RETRY == 1
    assert face_cut.read_cut(tmp_path).retry == 1
    with pytest.raises(FakefaceError, match=r"face retry must be 0 or 1 \(a newer cut\?\), got 2"):
        faces.extract_face(np.zeros((64, 64, 3), np.uint8), faces.FaceOptions(retry=2))


def test_cuts_saved_before_the_retry_keep_the_first_try_only_and_still_train(tmp_path):
    """A face_cut.json and a preprocess.json written before the field existed read as retry 0,
    and a training on such records (data/records_rgb224_nolevel) is not refused."""
    from fakeface_tf.training.inputs import training_cut  # loads TensorFlow

    if not (REFERENCE / "face_cut.json").is_file() or not (RECORDS / "preprocess.json").is_file():
        pytest.skip("saved_models/reference or data/records_rgb224_nolevel is absent")
    old = {k: v for k, v in json.loads((REFERENCE / "face_cut.json").read_text()).items() if k != "retry"}
    (tmp_path / "face_cut.json").write_text(json.dumps(old))
    assert "retry" not in json.loads((RECORDS / "preprocess.json").read_text())["settings"]["face"]
    assert face_cut.read_cut(tmp_path).retry == face_cut.read_cut(RECORDS).retry == 0
    cut = training_cut(load_config(REPO_ROOT / "configs" / "faceres_face.yaml", [f"data.path={RECORDS}"]))
    assert cut == face_cut.read_cut(RECORDS) and cut.retry == 0


@pytest.mark.slow
def test_the_shipped_reference_loads_with_the_second_try_in_its_cut():
    from fakeface_tf.models.artifacts import load_model  # loads Keras and the model

    if not (REFERENCE / "face_cut.json").is_file():
        pytest.skip("saved_models/reference is absent")
    shipped = dataclasses.replace(CUT, retry=1, detector="mtcnn 1.0.0", view="image")
    assert load_model(REFERENCE).face_options == shipped
