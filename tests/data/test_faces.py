"""Face finding, levelling and cropping (fakeface_tf.data.faces) on real sample photographs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data import faces, images

ROTATION = 15.0  # degrees, counter-clockwise as displayed (cv2 convention)


@pytest.fixture(scope="module")
def frontal(sample_root) -> np.ndarray:
    """A frontal FFHQ face whose eyes are level to within a degree."""
    return images.load_image(sample_root / "faces" / "real" / "zoya_00011.jpg")


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)


@pytest.fixture(scope="module")
def rotated_crops(frontal):
    options = faces.FaceOptions(color="rgb", size=128)
    return faces.extract_faces([frontal, rotate(frontal, ROTATION)], options)


def test_rotated_face_angle_matches_applied_rotation(rotated_crops):
    upright, tilted = rotated_crops
    assert upright.ok and tilted.ok
    # A counter-clockwise turn lifts the right eye: the eye line angle drops by ROTATION.
    assert tilted.angle - upright.angle == pytest.approx(-ROTATION, abs=2.0)


def test_rotated_face_comes_back_level_when_redetected(rotated_crops):
    tilted = rotated_crops[1]
    again = faces.extract_face(tilted.image, faces.FaceOptions(color="rgb", min_face=10))
    assert again.ok
    assert abs(again.angle) < 2.0


def test_transform_maps_eye_keypoints_onto_one_row(rotated_crops):
    tilted = rotated_crops[1]
    left, right = (tilted.transform @ np.array([*tilted.keypoints[k], 1.0])
                   for k in ("left_eye", "right_eye"))
    assert left[1] == pytest.approx(right[1], abs=1e-6)
    assert 0 < left[0] < right[0] < 128


def test_crop_is_centred_on_the_face_box(rotated_crops):
    upright = rotated_crops[0]
    x, y, w, h = upright.box
    centre = upright.transform @ np.array([x + w / 2, y + h / 2, 1.0])
    assert centre == pytest.approx([64, 64], abs=1e-6)


def test_gray_crop_has_one_channel_of_the_requested_size(frontal):
    crop = faces.extract_face(frontal, faces.FaceOptions(size=64, color="gray"))
    assert crop.ok
    assert crop.image.shape == (64, 64, 1) and crop.image.dtype == np.uint8
    assert crop.confidence >= 0.9 and crop.reason == ""


def test_batched_and_single_extraction_agree(frontal, rotated_crops):
    single = faces.extract_face(frontal, faces.FaceOptions(color="rgb", size=128))
    assert single.box == pytest.approx(rotated_crops[0].box, abs=0.5)
    assert np.abs(single.image.astype(int) - rotated_crops[0].image).max() <= 2


def test_one_pixel_image_is_too_small():
    crop = faces.extract_face(np.zeros((1, 1, 3), np.uint8))
    assert crop.status == "too_small" and "1x1" in crop.reason


def test_flat_image_has_no_face():
    crop = faces.extract_face(np.full((96, 96, 3), 128, np.uint8))
    assert crop.status == "no_face" and crop.reason


def test_face_below_min_face_is_too_small(frontal):
    crop = faces.extract_face(frontal, faces.FaceOptions(min_face=200))
    assert crop.status == "too_small" and "min_face" in crop.reason
    assert crop.box[2] > 0  # the face was found, just too small


def test_bad_color_option_is_a_clear_error(frontal):
    with pytest.raises(FakefaceError, match="gray or rgb"):
        faces.extract_face(frontal, faces.FaceOptions(color="blue"))


def test_crop_files_reports_unreadable_files(tmp_path, sample_root):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a picture")
    good = sample_root / "faces" / "real" / "zoya_00011.jpg"
    crops = faces.crop_files([good, bad], faces.FaceOptions(), progress=False)
    assert [c.status for c in crops] == ["ok", "unreadable"]
    assert "bad.jpg" in crops[1].reason and "text" in crops[1].reason


def test_unlevelled_cut_copies_whole_pixels_without_interpolation():
    image = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    matrix, side = faces.crop_transform((40.3, 50.7, 50.0, 50.0), 0.0, margin=0.2, size=70)
    assert side == 70 and np.allclose(matrix[:, :2], np.eye(2))
    left, top = -matrix[0, 2], -matrix[1, 2]
    assert left == int(left) and top == int(top)
    cut = cv2.warpAffine(image, matrix, (70, 70), flags=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(cut, image[int(top):int(top) + 70, int(left):int(left) + 70])


def test_level_false_keeps_the_face_unrotated(sample_root):
    image = images.load_image(sample_root / "faces" / "real" / "zoya_00011.jpg")
    crop = faces.extract_face(image, faces.FaceOptions(level=False))
    assert crop.ok and crop.angle == 0.0


def test_bounded_nms_keeps_exactly_the_boxes_mtcnns_nms_keeps():
    """mtcnn_bounded.nms, a few IoU rows at a time, against mtcnn's own N x N NMS: random boxes
    in three images, ties in confidence, empty boxes, both overlap rules, sorted or not."""
    from mtcnn.utils.bboxes import smart_nms_from_bboxes

    from fakeface_tf.data import mtcnn_bounded

    rng = np.random.default_rng(1)
    for trial in range(12):
        n = int(rng.integers(0, 600))
        corner = rng.uniform(0, 200, (n, 2))
        size = rng.uniform(0, 40, (n, 2)) * (rng.random((n, 1)) > 0.05)  # some empty boxes
        boxes = np.column_stack([rng.integers(0, 3, n), corner, corner + size, rng.random(n)])
        boxes[:, 5] = np.round(boxes[:, 5], 1 if trial % 2 else 6)
        for method in ("union", "min"):
            for initial_sort in (True, False):
                with np.errstate(divide="ignore", invalid="ignore"):
                    expected = smart_nms_from_bboxes(boxes.copy(), 0.5, method=method,
                                                     initial_sort=initial_sort)
                found = mtcnn_bounded.nms(boxes.copy(), 0.5, method, initial_sort)
                assert found.tobytes() == expected.tobytes(), (trial, method, initial_sort)
        first = mtcnn_bounded.nms(boxes.copy(), 0.5, limit=5)
        expected = smart_nms_from_bboxes(boxes.copy(), 0.5)
        assert first.tobytes() == mtcnn_bounded.first_per_image(expected, 5).tobytes()


def test_bounded_detector_finds_what_mtcnn_finds_on_sample_photos(sample_root):
    """The capped, chunked stages change nothing on ordinary photos: the same detections, bit
    for bit, as mtcnn's own MTCNN, for faces batched together and for textures that make PNet
    propose hundreds of windows."""
    from mtcnn import MTCNN

    from fakeface_tf.data import mtcnn_bounded

    paths = sorted((sample_root / "faces" / "real").glob("*.jpg"))[:4]
    paths += sorted((sample_root / "faces" / "fake").glob("*.jpg"))[:4]
    textures = [sample_root / "nonface" / f"skimage_{name}.jpg"
                for name in ("gravel", "grass", "motorcycle_left")]
    bounded, plain = faces.mtcnn_detector(), MTCNN()
    for group in (paths, textures):
        shown = [faces._detection_input(images.load_image(p))[0] for p in group]
        with np.errstate(divide="ignore", invalid="ignore"):  # mtcnn's NMS on empty boxes
            assert repr(faces._detect(shown, bounded)) == repr(faces._detect(shown, plain))
    windows = bounded.stages[0].windows  # the last group's: the textures
    assert 0 < windows <= mtcnn_bounded.PNET_WINDOWS
    assert max(bounded.stages[0].proposals) < mtcnn_bounded.MAX_PROPOSALS


def test_image_view_of_a_square_photo_is_the_whole_photo_area_resized(frontal):
    crop = faces.extract_face(frontal, faces.FaceOptions(color="rgb", size=224, level=True, view="image"))
    assert crop.ok and crop.angle == 0.0  # never levelled: the photo is kept as it is
    np.testing.assert_array_equal(crop.image, cv2.resize(frontal, (224, 224), interpolation=cv2.INTER_AREA))
    assert crop.box != (0.0, 0.0, 0.0, 0.0)  # the face's own box, for drawing, not the view's


def test_image_view_of_a_wide_photo_is_the_square_nearest_the_face(frontal):
    wide = np.concatenate([np.full((256, 300, 3), 90, np.uint8), frontal], axis=1)  # face on the right
    crop = faces.extract_face(wide, faces.FaceOptions(color="rgb", size=256, level=False, view="image"))
    x, y, w, h = crop.box
    left = round(x + w / 2 - 128)  # a square of the photo's height, centred on the face
    assert crop.ok and 0 < left < 556 - 256  # not clamped: the face sits inside
    np.testing.assert_array_equal(crop.image, wide[:, left:left + 256])
    assert faces.image_square((100, 400), (0.0, 10.0, 20.0, 20.0)) == (0.0, 0.0, 100.0, 100.0)
    assert faces.image_square((100, 400), (190.0, 40.0, 20.0, 20.0)) == (150.0, 0.0, 100.0, 100.0)


def test_unknown_view_is_a_clear_error(frontal):
    with pytest.raises(FakefaceError, match="view must be face or image"):
        faces.extract_face(frontal, faces.FaceOptions(view="body"))


def test_a_cut_saved_before_views_reads_as_the_face_view():
    assert faces.FaceOptions.from_dict({"size": 224, "color": "rgb"}).view == "face"
