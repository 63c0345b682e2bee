"""`fakeface preprocess --runner beam`: Beam's DirectRunner writes the local runner's records,
manifest rows and summary, bad files included, from local paths or from URLs of a Beam file
system (`fakefs://`, standing in for gs://); a bad image is a row, never a failed bundle."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
from pathlib import Path

import pytest

from fakeface_tf import cli, preprocess
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data import records
from fakeface_tf.data.faces import FaceCrop, FaceOptions

try:
    from apache_beam.io.filesystem import FileMetadata
    from apache_beam.io.localfilesystem import LocalFileSystem
except ImportError:  # the tests that need Beam skip
    LocalFileSystem = object

NEEDS_BEAM = "Apache Beam is not installed (pip install -e '.[beam]')"
BEAM_ARGS = ["--runner=FnApiRunner", "--direct_running_mode=multi_processing",
             "--direct_num_workers=2"]
BAD = {"train/real/empty.jpg": "unreadable", "train/fake/notes.jpg": "unreadable",
       "train/real/truncated.jpg": "unreadable", "train/fake/scene.jpg": "no_face",
       "train/fake/readme.txt": "skipped"}


class FakeFileSystem(LocalFileSystem):
    """fakefs://NAME is the local file $FAKEFS_ROOT/NAME: cloud storage for the tests.

    Beam's FileSystems picks a file system by the URL's scheme among all the subclasses of
    FileSystem defined so far (FileSystem.get_all_subclasses), so defining this class registers
    fakefs:// in this process. Beam's worker processes learn of it from --beam_plugins, which
    `beam.file_system_plugins` fills in (this module, `test_beam`, importable there through
    PYTHONPATH), and find the root in the environment they inherit.
    """

    PREFIX = "fakefs://"

    @classmethod
    def scheme(cls):
        return "fakefs"

    def _local(self, path: str) -> str:
        if not path.startswith(self.PREFIX):
            return path  # LocalFileSystem.delete calls back with the local paths
        return os.path.join(os.environ["FAKEFS_ROOT"], path[len(self.PREFIX):])

    def _as(self, like: str, meta):
        """`meta` (of a local path) named as a URL when it was asked for by URL."""
        if not like.startswith(self.PREFIX):
            return meta
        path = self.PREFIX + os.path.relpath(meta.path, os.environ["FAKEFS_ROOT"])
        return FileMetadata(path, meta.size_in_bytes, meta.last_updated_in_seconds)

    def _list(self, dir_or_prefix):
        for meta in super()._list(self._local(dir_or_prefix)):
            yield self._as(dir_or_prefix, meta)

    def metadata(self, path):
        return self._as(path, super().metadata(self._local(path)))

    def mkdirs(self, path):
        return super().mkdirs(self._local(path))

    def create(self, path, *args, **kwargs):
        return super().create(self._local(path), *args, **kwargs)

    def open(self, path, *args, **kwargs):
        return super().open(self._local(path), *args, **kwargs)

    def exists(self, path):
        return super().exists(self._local(path))

    def size(self, path):
        return super().size(self._local(path))

    def rename(self, sources, destinations):
        return super().rename([self._local(p) for p in sources], [self._local(p) for p in destinations])

    def copy(self, sources, destinations):
        return super().copy([self._local(p) for p in sources], [self._local(p) for p in destinations])

    def delete(self, paths):
        return super().delete([self._local(p) for p in paths])


@pytest.fixture
def fakefs(monkeypatch, tmp_path):
    """fakefs://NAME is tmp_path/NAME in this test."""
    pytest.importorskip("apache_beam", reason=NEEDS_BEAM)
    monkeypatch.setenv("FAKEFS_ROOT", str(tmp_path))
    return tmp_path


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


def manifest(out, src=None) -> list[dict]:
    """manifest.csv's rows; with `src`, each reason's copy of that SRC path or URL reads SRC."""
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [{**row, "reason": row["reason"].replace(str(src), "SRC")} if src else row
            for row in rows]


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
                     "--color", "gray", "--level", "--view", "face", "--shard-size", "20", "--no-progress", "--runner", "beam", "--", *BEAM_ARGS])
    assert code == 0
    return root


@pytest.mark.slow
def test_records_are_the_local_runners(runs):
    local, beam = parsed(runs / "local"), parsed(runs / "beam")
    assert len(local) == 22 and beam == local
    assert ([p.rsplit("/", 1)[1] for p in records.shard_files(runs / "beam")]
            == [p.rsplit("/", 1)[1] for p in records.shard_files(runs / "local")])


@pytest.mark.slow
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
    out = shutil.copytree(runs / "beam", tmp_path / "out", symlinks=True)
    first = sorted(p.name for p in out.glob("*.tfrecord"))[0]
    (out / first).unlink()
    summary = preprocess.preprocess(runs / "src", out, FaceOptions(size=64), shard_size=20,
                                    progress=False, runner="beam",
                                    pipeline_args=["--direct_running_mode=in_memory",
                                                   "--direct_num_workers=1"])
    assert summary["shards_reused"] == len(summary["shards"]) - 1
    assert parsed(out) == parsed(runs / "local") and manifest(out) == manifest(runs / "local")


@pytest.fixture(scope="module")
def cloud_run(runs):
    """`runs`' folder with SRC and OUT as fakefs:// URLs, through Beam's 2 worker processes:
    listing, image reads and every write go through Beam's FileSystems, as with gs://."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FAKEFS_ROOT", str(runs))
        here = str(Path(__file__).parent)  # the workers import this module (--beam_plugins)
        patch.setenv("PYTHONPATH", os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH"))
                                                    if p))
        code = cli.main(["preprocess", "fakefs://src/", "fakefs://cloud", "--size", "64",
                         "--color", "gray", "--level", "--view", "face", "--shard-size", "20", "--no-progress", "--runner", "beam", "--",
                         *BEAM_ARGS])
    assert code == 0
    return runs / "cloud"


@pytest.mark.slow
def test_cloud_paths_give_the_local_runners_records_and_manifest(runs, cloud_run):
    assert parsed(cloud_run) == parsed(runs / "local")
    rows = manifest(cloud_run, "fakefs://src")
    assert rows == manifest(runs / "local", runs / "src")
    assert any(row["reason"].startswith("SRC/train/") for row in rows)  # reasons name the URL
    assert (sorted(p.name for p in cloud_run.glob("*.tfrecord"))
            == sorted(p.name for p in (runs / "local").glob("*.tfrecord")))
    assert not [p for p in cloud_run.rglob("*") if ".tmp" in p.name]  # every temp renamed
    local, cloud = (json.loads((folder / "preprocess.json").read_text())
                    for folder in (runs / "local", cloud_run))
    assert cloud["settings"].pop("src") == "fakefs://src" and cloud.pop("beam_stages")
    local["settings"].pop("src")
    for key in ("runner", "workers", "seconds"):
        local.pop(key), cloud.pop(key)
    assert cloud == local


@pytest.mark.slow
def test_resume_on_cloud_paths_redoes_only_a_lost_shard_and_clears_temp_files(runs, cloud_run,
                                                                              fakefs):
    shutil.copytree(cloud_run, fakefs / "out", symlinks=True)
    shutil.copytree(runs / "src", fakefs / "src", symlinks=True)
    lost = records.shard_name("test", 0, 1)
    (fakefs / "out" / lost).unlink()
    stale = [fakefs / "out" / f".{lost}.0123abcd.tmp",
             fakefs / "out" / ".parts" / f".{lost}.csv.1.tmp"]
    for path in stale:  # temp objects of a worker killed between upload and rename
        path.write_bytes(b"half")
    summary = preprocess.preprocess("fakefs://src", "fakefs://out", FaceOptions(size=64),
                                    shard_size=20, progress=False, runner="beam",
                                    pipeline_args=["--direct_running_mode=in_memory",
                                                   "--direct_num_workers=1"])
    assert summary["shards_reused"] == len(summary["shards"]) - 1
    assert not any(path.exists() for path in stale)
    assert parsed(fakefs / "out") == parsed(runs / "local")
    assert manifest(fakefs / "out", "fakefs://src") == manifest(runs / "local", runs / "src")


def test_a_url_beam_cannot_serve_is_an_error_naming_it(tmp_path, capsys):
    pytest.importorskip("apache_beam", reason=NEEDS_BEAM)
    (tmp_path / "src" / "real").mkdir(parents=True)
    for src, out in (("nosuchfs://bucket/faces", tmp_path / "out"),
                     (tmp_path / "src", "nosuchfs://bucket/records")):
        with pytest.raises(FakefaceError, match="nosuchfs://bucket/.* no file system for nosuchfs://"):
            preprocess.preprocess(src, out, runner="beam", progress=False)
    args = ["preprocess", "nosuchfs://bucket/faces", str(tmp_path / "out")]
    assert cli.main([*args, "--runner", "beam"]) == 2
    assert "nosuchfs://bucket/faces: Apache Beam has no file system" in capsys.readouterr().err
    assert cli.main(args) == 2  # the local runner reads local paths only
    assert "nosuchfs://bucket/faces" in capsys.readouterr().err


def test_a_failing_image_is_a_manifest_row_not_a_failed_bundle(monkeypatch):
    pytest.importorskip("apache_beam", reason=NEEDS_BEAM)
    from fakeface_tf.preprocess import beam

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

    def no_file_system(paths, options, **kwargs):  # the run's error, not an image's
        raise FakefaceError("gs://b/x.jpg: Apache Beam has no file system for gs:// here")

    monkeypatch.setattr(beam, "crop_files", no_file_system)
    with pytest.raises(FakefaceError, match="no file system"):
        beam.crop_batch(items, FaceOptions(), detector=None)


@pytest.mark.parametrize("where", ["local", "url"])
def test_a_retried_shard_write_gives_the_same_file_once(tmp_path, monkeypatch, where):
    pytest.importorskip("apache_beam", reason=NEEDS_BEAM)
    from fakeface_tf.preprocess import beam

    monkeypatch.setenv("FAKEFS_ROOT", str(tmp_path.parent))
    out = str(tmp_path) if where == "local" else f"fakefs://{tmp_path.name}"
    (tmp_path / preprocess.PARTS_DIR).mkdir()
    batches = [(start, [f"record {start + i}".encode() for i in range(2)],
                [{"path": f"{start + i}.jpg", "status": "ok"} for i in range(2)])
               for start in (0, 16, 32)]
    name = records.shard_name("train", 0, 1)
    beam.write_batches((name, batches), out)
    first = (tmp_path / name).read_bytes()
    random.Random(0).shuffle(batches)  # a retry may see the batches in another order
    beam.write_batches((name, batches), out)  # renamed over the first: no duplicate, no temp
    assert (tmp_path / name).read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, preprocess.PARTS_DIR])
    assert os.listdir(tmp_path / preprocess.PARTS_DIR) == [f"{name}.csv"]
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
