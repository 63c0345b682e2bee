"""`fakeface preprocess --runner beam`: Beam's DirectRunner writes the local runner's records,
manifest rows and summary, bad files included; a bad image is a row, never a failed bundle."""

from __future__ import annotations

import csv
import json
import random

import pytest

from fakeface_tf import cli, preprocess, records
from fakeface_tf.faces import FaceCrop, FaceOptions

NEEDS_BEAM = "Apache Beam is not installed (pip install -e '.[beam]')"
BEAM_ARGS = ["--runner=FnApiRunner", "--direct_running_mode=multi_processing",
             "--direct_num_workers=2"]
BAD = {"train/real/empty.jpg": "unreadable", "train/fake/notes.jpg": "unreadable",
       "train/real/truncated.jpg": "unreadable", "train/fake/scene.jpg": "no_face",
       "train/fake/readme.txt": "skipped"}


def bad_folder(sample_root, src):
    """train/ and test/ with sample faces, plus an empty file, a text file named .jpg, a
    truncated JPEG, a scene without a face and a .txt file."""
    for split, per_class in (("train", 9), ("test", 2)):
        for label in ("real", "fake"):
            (src / split / label).mkdir(parents=True)
            found = sorted((sample_root / "faces" / label).glob("*.jpg"))
            for path in found[:per_class] if split == "train" else found[-per_class:]:
                (src / split / label / path.name).symlink_to(path)
    train = src / "train"
    (train / "real" / "empty.jpg").write_bytes(b"")
    (train / "fake" / "notes.jpg").write_text("not pixels, just a note\n")
    jpeg = sorted((sample_root / "faces" / "real").glob("*.jpg"))[20].read_bytes()
    (train / "real" / "truncated.jpg").write_bytes(jpeg[:len(jpeg) // 3])
    (train / "fake" / "scene.jpg").symlink_to(sorted((sample_root / "nonface").glob("*.jpg"))[0])
    (train / "fake" / "readme.txt").write_text("not an image\n")


def parsed(folder) -> list[tuple]:
    """Every record in `folder`'s shards as sorted (feature, value) tuples, order-free."""
    return sorted(tuple(sorted((k, v.tobytes() if hasattr(v, "tobytes") else v)
                               for k, v in ex.items())) for ex in records.read_all(folder))


def manifest(out) -> list[dict]:
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sample_root):
    """The same folder through the local runner (1 process) and Beam (2 worker processes).
    Shards of 20 files: the first train shard is two MTCNN batches, the others one each."""
    pytest.importorskip("apache_beam", reason=NEEDS_BEAM)
    root = tmp_path_factory.mktemp("beam")
    bad_folder(sample_root, root / "src")
    preprocess.preprocess(root / "src", root / "local", FaceOptions(size=64), workers=1,
                          shard_size=20, progress=False)
    code = cli.main(["preprocess", str(root / "src"), str(root / "beam"), "--size", "64",
                     "--shard-size", "20", "--no-progress", "--runner", "beam", "--", *BEAM_ARGS])
    assert code == 0
    return root


def test_records_are_the_local_runners(runs):
    local, beam = parsed(runs / "local"), parsed(runs / "beam")
    assert len(local) == 22 and beam == local
    assert ([p.rsplit("/", 1)[1] for p in records.shard_files(runs / "beam")]
            == [p.rsplit("/", 1)[1] for p in records.shard_files(runs / "local")])


def test_manifest_rows_are_the_local_runners_with_every_bad_file(runs):
    rows = manifest(runs / "beam")
    assert rows == manifest(runs / "local")
    status = {row["path"]: row["status"] for row in rows}
    assert {path: status[path] for path in BAD} == BAD
    assert all(row["reason"] for row in rows if row["status"] != "ok")


def test_summary_is_the_local_runners_but_for_timing(runs):
    local, beam = (json.loads((runs / name / "preprocess.json").read_text())
                   for name in ("local", "beam"))
    assert beam["runner"] == "beam" and local["runner"] == "local"
    stages = beam.pop("beam_stages")  # worker time per stage, from Beam's metrics
    assert stages["cut_calls"] == 4 and stages["write_calls"] == 3 and stages["setup_calls"] >= 1
    for key in ("runner", "workers", "seconds"):
        local.pop(key), beam.pop(key)
    assert beam == local


def test_resume_on_beam_redoes_only_a_lost_shard(runs, tmp_path):
    import shutil

    out = shutil.copytree(runs / "beam", tmp_path / "out", symlinks=True)
    first = sorted(p.name for p in out.glob("*.tfrecord"))[0]
    (out / first).unlink()
    summary = preprocess.preprocess(runs / "src", out, FaceOptions(size=64), shard_size=20,
                                    progress=False, runner="beam",
                                    pipeline_args=["--direct_running_mode=in_memory",
                                                   "--direct_num_workers=1"])
    assert summary["shards_reused"] == len(summary["shards"]) - 1
    assert parsed(out) == parsed(runs / "local") and manifest(out) == manifest(runs / "local")


def test_a_failing_image_is_a_manifest_row_not_a_failed_bundle(monkeypatch):
    pytest.importorskip("apache_beam", reason=NEEDS_BEAM)
    from fakeface_tf import beam

    def crop_files(paths, options, **kwargs):
        if any("poison" in p for p in paths):
            raise ValueError("decoder bug")
        return [FaceCrop("no_face", "MTCNN found no face") for _ in paths]

    monkeypatch.setattr(beam, "crop_files", crop_files)
    items = [preprocess.Item(f"/src/real/{n}.jpg", f"real/{n}.jpg", "real", "train")
             for n in ("a", "poison", "c")]
    crops = beam.crop_batch(items, FaceOptions(), detector=None)
    assert [c.status for c in crops] == ["no_face", "unreadable", "no_face"]
    assert "poison.jpg" in crops[1].reason and "ValueError: decoder bug" in crops[1].reason


def test_a_retried_shard_write_gives_the_same_file_once(tmp_path):
    pytest.importorskip("apache_beam", reason=NEEDS_BEAM)
    from fakeface_tf import beam

    (tmp_path / preprocess.PARTS_DIR).mkdir()
    batches = [(start, [f"record {start + i}".encode() for i in range(2)],
                [{"path": f"{start + i}.jpg", "status": "ok"} for i in range(2)])
               for start in (0, 16, 32)]
    name = records.shard_name("train", 0, 1)
    beam.write_batches((name, batches), str(tmp_path))
    first = (tmp_path / name).read_bytes()
    random.Random(0).shuffle(batches)  # a retry may see the batches in another order
    beam.write_batches((name, batches), str(tmp_path))
    assert (tmp_path / name).read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, preprocess.PARTS_DIR])
    rows = list(csv.DictReader(open(tmp_path / preprocess.PARTS_DIR / f"{name}.csv")))
    assert [r["path"] for r in rows] == [f"{n}.jpg" for n in (0, 1, 16, 17, 32, 33)]


def test_beam_options_need_the_beam_runner(tmp_path, capsys):
    (tmp_path / "src" / "real").mkdir(parents=True)
    args = ["preprocess", str(tmp_path / "src"), str(tmp_path / "out")]
    assert cli.main([*args, "--", "--direct_num_workers=2"]) == 2
    assert "--runner beam" in capsys.readouterr().err
    assert cli.main([*args, "--runner", "beam", "--workers", "2"]) == 2
    assert "--direct_num_workers" in capsys.readouterr().err
    assert cli.main(["runs", "--", "x"]) == 2
    assert "no arguments after --" in capsys.readouterr().err
