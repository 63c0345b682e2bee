"""Every awkward input file: decoded when it can be, listed with a reason when it cannot."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fakeface_tf import cli
from fakeface_tf.data import faces, images, records

GOOD = "zoya_00011.jpg"
# file name -> (expected manifest status, words the reason must contain)
EXPECTED = {
    "good.jpg": ("ok", ""),
    "corrupt.jpg": ("unreadable", "truncated"),
    "zero.jpg": ("unreadable", "empty file"),
    "text.jpg": ("unreadable", "text"),
    "alpha.png": ("ok", ""),
    "cmyk.jpg": ("ok", ""),
    "one.png": ("too_small", "1x1"),
    "huge.jpg": ("ok", ""),
    "exif.jpg": ("ok", ""),
    "notes.txt": ("skipped", "extension"),
}


def make_bad_folder(folder, source) -> None:
    """real/ holds one file per awkward case, built from one sample face; fake/ one face."""
    real, fake = folder / "real", folder / "fake"
    real.mkdir(parents=True)
    fake.mkdir()
    data = source.read_bytes()
    face = Image.open(source).convert("RGB")
    shutil.copy(source, real / "good.jpg")
    shutil.copy(source, fake / "good.jpg")
    (real / "corrupt.jpg").write_bytes(data[: len(data) // 2])
    (real / "zero.jpg").write_bytes(b"")
    (real / "text.jpg").write_text("this is a text file, not a JPEG\n")
    rgba = face.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(real / "alpha.png")
    face.convert("CMYK").save(real / "cmyk.jpg")
    Image.new("RGB", (1, 1), (90, 60, 40)).save(real / "one.png")
    _huge_jpeg(source, real / "huge.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    face.rotate(90, expand=True).save(real / "exif.jpg", exif=exif)
    (real / "notes.txt").write_text("annotations")


def _huge_jpeg(source, path) -> None:
    """A 12000x12000 JPEG of the face, made in a child process: its 432 MB of pixels would
    otherwise stay in this test process's peak memory (the suite's goal is 4 GB)."""
    code = ("import sys; from PIL import Image; Image.open(sys.argv[1]).convert('RGB')"
            ".resize((12000, 12000), Image.BILINEAR).save(sys.argv[2], quality=70)")
    subprocess.run([sys.executable, "-c", code, str(source), str(path)], check=True, timeout=120)


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory, sample_root):
    root = tmp_path_factory.mktemp("bad")
    make_bad_folder(root / "src", sample_root / "faces" / "real" / GOOD)
    code = cli.main(["preprocess", str(root / "src"), str(root / "out"), "--workers", "1",
                     "--no-progress", "--split", "1,0,0"])
    with open(root / "out" / "manifest.csv", newline="") as f:
        manifest = {row["path"]: row for row in csv.DictReader(f)}
    return code, root, manifest


@pytest.mark.slow
def test_bad_input_run_exits_zero(bad_run):
    assert bad_run[0] == 0


def test_counts_are_printed(bad_run, capsys):
    # the module fixture ran before capsys of this test; re-run (all shards reused) to see output
    root = bad_run[1]
    assert cli.main(["preprocess", str(root / "src"), str(root / "out"), "--workers", "1",
                     "--no-progress", "--split", "1,0,0"]) == 0
    printed = capsys.readouterr().out
    assert "ok 6" in printed and "unreadable 3" in printed and "too_small 1" in printed


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_file_is_listed_with_status_and_reason(bad_run, name):
    status, words = EXPECTED[name]
    row = bad_run[2][f"real/{name}"]
    assert row["status"] == status
    assert words.lower() in row["reason"].lower()
    if status != "ok":
        assert row["reason"] and not row["shard"]


def test_good_files_are_in_the_records(bad_run):
    root, manifest = bad_run[1], bad_run[2]
    stored = {ex["path"].decode() for ex in records.read_all(root / "out")}
    ok = {path for path, row in manifest.items() if row["status"] == "ok"}
    assert stored == ok
    assert "fake/good.jpg" in stored


def test_exif_rotated_photo_loads_upright(bad_run):
    real = bad_run[1] / "src" / "real"
    upright = images.load_image(real / "good.jpg").astype(int)
    loaded = images.load_image(real / "exif.jpg").astype(int)
    assert loaded.shape == upright.shape
    assert np.abs(loaded - upright).mean() < 5


def test_huge_jpeg_is_decoded_reduced_and_its_face_found(bad_run):
    image = images.load_image(bad_run[1] / "src" / "real" / "huge.jpg")  # 12000x12000
    assert image.shape == (images.WORK_SIDE, images.WORK_SIDE, 3)
    crop = faces.extract_face(image)
    assert crop.ok
    assert crop.box[2] > 700  # box in the decoded image's coordinates, not the detector's


def test_huge_png_is_refused_with_its_size(tmp_path):
    Image.new("L", (8000, 8000)).save(tmp_path / "huge.png")
    with pytest.raises(images.ImageError, match=r"huge\.png: 8000x8000 is 64 megapixels"):
        images.load_image(tmp_path / "huge.png")


def test_alpha_is_composited_onto_white():
    pixels = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buffer, format="PNG")
    assert (images.load_image(buffer.getvalue()) == 255).all()


def test_sixteen_bit_gray_is_scaled_to_eight_bits(tmp_path):
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(tmp_path / "deep.png")
    image = images.load_image(tmp_path / "deep.png")
    assert image.shape == (8, 8, 3) and (image == 255).all()


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(images.ImageError, match="nothing.jpg: file not found"):
        images.load_image(tmp_path / "nothing.jpg")


def test_a_folder_or_a_path_through_a_file_is_not_an_image_file(tmp_path):
    (tmp_path / "folder.jpg").mkdir()
    (tmp_path / "file.jpg").write_bytes(b"x")
    for path in (tmp_path / "folder.jpg", tmp_path / "file.jpg" / "inner.jpg"):
        with pytest.raises(images.ImageError, match=f"{path.name}: file not found"):
            images.load_image(path)
