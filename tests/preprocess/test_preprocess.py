"""`fakeface preprocess`: layouts, deterministic splits, record round trip, resume, CLI errors."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from fakeface_tf import cli, preprocess
from fakeface_tf.core import files
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data import datasets, faces, records
from fakeface_tf.preprocess.shards import csv_text, write_shard
from fakeface_tf.preprocess.summary import status_counts, write_manifest


def link_faces(sample_root, folder, per_class: int) -> list[str]:
    """Symlink the first `per_class` sample faces of each class into folder/{real,fake}/."""
    names = []
    for label in ("real", "fake"):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for path in sorted((sample_root / "faces" / label).glob("*.jpg"))[:per_class]:
            (folder / label / path.name).symlink_to(path)
            names.append(f"{label}/{path.name}")
    return names


def read_manifest(out) -> list[dict]:
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, sample_root):
    """Six faces (3 real, 3 fake) in shards of two, all in train, one worker."""
    root = tmp_path_factory.mktemp("small")
    link_faces(sample_root, root / "src", per_class=3)
    options = faces.FaceOptions(size=64)
    summary = preprocess.preprocess(root / "src", root / "out", options, workers=1, shard_size=2,
                                    split=(1.0, 0.0, 0.0), progress=False)
    return root, options, summary


def test_records_round_trip_bit_identical_with_labels(small_run):
    root, options, _ = small_run
    examples = records.read_all(root / "out", "train")
    assert len(examples) == 6
    rels = [ex["path"].decode() for ex in examples]
    assert rels == sorted(rels)
    for start in range(0, 6, 2):  # recrop each shard's pair exactly as the worker batched it
        shard = examples[start:start + 2]
        expected = faces.crop_files([root / "src" / ex["path"].decode() for ex in shard], options,
                                    progress=False)
        for ex, crop in zip(shard, expected):
            rel = ex["path"].decode()
            assert ex["image"].dtype == np.uint8 and np.array_equal(ex["image"], crop.image)
            assert ex["label"] == records.LABELS[rel.split("/")[0]]
            assert ex["split"] == b"train"
            assert ex["box"] == pytest.approx(crop.box, abs=0.01)


def test_summary_counts_and_files(small_run):
    root, _, summary = small_run
    assert summary["records"] == {"train": 6, "valid": 0, "test": 0}
    assert summary["counts"]["train"]["real"]["ok"] == 3
    assert summary["shards"] == [records.shard_name("train", i, 3) for i in range(3)]
    saved = json.loads((root / "out" / "preprocess.json").read_text())
    assert saved["settings"]["face"]["size"] == 64 and saved["versions"]["numpy"] == np.__version__
    assert len(read_manifest(root / "out")) == 6


def test_resume_redoes_only_the_unfinished_shards(small_run):
    root, options, _ = small_run
    out = root / "out"
    names = [records.shard_name("train", i, 3) for i in range(3)]
    before = {n: os.stat(out / n).st_mtime_ns for n in names}
    manifest_before = read_manifest(out)
    # A killed run: shard 1 never renamed (only its temp file exists), shard 2 lost its
    # manifest part.
    temp = files.temp_path(out / names[1])
    (out / names[1]).rename(temp)
    (out / preprocess.PARTS_DIR / f"{names[2]}.csv").unlink()
    summary = preprocess.preprocess(root / "src", out, options, workers=1, shard_size=2,
                                    split=(1.0, 0.0, 0.0), progress=False)
    after = {n: os.stat(out / n).st_mtime_ns for n in names}
    assert summary["shards_reused"] == 1
    assert after[names[0]] == before[names[0]]
    assert after[names[1]] != before[names[1]] and after[names[2]] != before[names[2]]
    assert not temp.exists()
    assert read_manifest(out) == manifest_before
    assert len(records.read_all(out, "train")) == 6


def test_rerun_with_other_settings_is_refused(small_run):
    root, _, _ = small_run
    with pytest.raises(FakefaceError, match="other settings"):
        preprocess.preprocess(root / "src", root / "out", faces.FaceOptions(size=32), workers=1,
                              shard_size=2, split=(1.0, 0.0, 0.0), progress=False)


def test_hash_split_is_deterministic_and_follows_fractions():
    rels = [f"real/{i:05d}.jpg" for i in range(3000)]
    first = [preprocess.hash_split(r, 7, (0.8, 0.1, 0.1)) for r in rels]
    assert first == [preprocess.hash_split(r, 7, (0.8, 0.1, 0.1)) for r in rels]
    assert first != [preprocess.hash_split(r, 8, (0.8, 0.1, 0.1)) for r in rels]
    share = {s: first.count(s) / len(rels) for s in records.SPLITS}
    assert share["train"] == pytest.approx(0.8, abs=0.03)
    assert share["valid"] == pytest.approx(0.1, abs=0.03)


def test_split_layout_is_kept_and_found_one_level_down(tmp_path):
    for split in ("train", "valid", "test"):
        for label in ("real", "fake"):
            folder = tmp_path / "real-vs-fake" / split / label
            folder.mkdir(parents=True)
            (folder / f"{split}_{label}.jpg").write_bytes(b"x")
    items, skipped, layout = preprocess.find_items(tmp_path, seed=0)
    assert layout == "split folders" and not skipped
    assert {(i.split, i.label) for i in items} == {(s, lab) for s in records.SPLITS
                                                   for lab in ("real", "fake")}
    assert all(i.rel.startswith(f"{i.split}/{i.label}/") for i in items)


def test_plan_is_sorted_chunks_per_split(tmp_path):
    items = [preprocess.Item(f"/x/{n}", n, "real", "train") for n in ("c", "a", "e", "b", "d")]
    plan = preprocess.plan_shards(items, shard_size=2)
    assert [(name, [i.rel for i in chunk]) for name, chunk in plan] == [
        ("train-00000-of-00003.tfrecord", ["a", "b"]),
        ("train-00001-of-00003.tfrecord", ["c", "d"]),
        ("train-00002-of-00003.tfrecord", ["e"]),
    ]


def test_missing_src_exits_2_with_one_line(tmp_path, capsys):
    assert cli.main(["preprocess", str(tmp_path / "absent"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "SRC not found" in err and "absent" in err


def test_unwritable_out_exits_2_with_one_line(tmp_path, capsys):
    (tmp_path / "src" / "real").mkdir(parents=True)
    (tmp_path / "file").write_text("a file, not a folder")
    assert cli.main(["preprocess", str(tmp_path / "src"), str(tmp_path / "file" / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot write to OUT" in err


def test_src_without_class_folders_exits_2(tmp_path, capsys):
    (tmp_path / "src" / "cats").mkdir(parents=True)
    assert cli.main(["preprocess", str(tmp_path / "src"), str(tmp_path / "out")]) == 2
    assert "real/ and fake/" in capsys.readouterr().err


def test_bad_split_fractions_exit_2(tmp_path, capsys):
    (tmp_path / "src" / "real").mkdir(parents=True)
    assert cli.main(["preprocess", str(tmp_path / "src"), str(tmp_path / "out"),
                     "--split", "0.5,0.1"]) == 2
    assert "--split" in capsys.readouterr().err


def test_empty_class_is_reported_not_fatal(tmp_path, sample_root):
    link_faces(sample_root, tmp_path / "src", per_class=1)
    for path in (tmp_path / "src" / "fake").iterdir():
        path.unlink()
    summary = preprocess.preprocess(tmp_path / "src", tmp_path / "out", workers=1,
                                    split=(1.0, 0.0, 0.0), progress=False)
    assert summary["records"]["train"] == 1
    assert any("imbalanced" in w and "0 fake" in w for w in summary["warnings"])


@pytest.mark.slow
def test_end_to_end_cli_on_twenty_sample_faces(tmp_path, sample_root, capsys):
    names = link_faces(sample_root, tmp_path / "src", per_class=10)
    code = cli.main(["preprocess", str(tmp_path / "src"), str(tmp_path / "out"), "--workers", "2",
                     "--size", "64", "--color", "gray", "--shard-size", "4", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "preprocess: 20 files" in printed
    rows = read_manifest(tmp_path / "out")
    assert sorted(r["path"] for r in rows) == sorted(names)
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) >= 18
    split_of = {r["path"]: r["split"] for r in rows}
    assert split_of == {n: preprocess.hash_split(n, 0, (0.8, 0.1, 0.1)) for n in names}
    seen = 0
    for split in records.SPLITS:
        if any(r["split"] == split for r in ok):
            for images, labels in datasets.make_dataset(tmp_path / "out", split, batch_size=8):
                assert images.shape[1:] == (64, 64, 1)
                seen += len(labels)
    assert seen == len(ok)


def test_limit_keeps_at_most_n_per_split_and_class_and_is_stable(tmp_path):
    items = [preprocess.Item(f"/x/{label}/{i}.jpg", f"{label}/{i}.jpg", label, split)
             for label in ("real", "fake") for split in ("train", "test") for i in range(10)]
    kept = preprocess.limit_items(items, 3, seed=0)
    groups = {(i.split, i.label) for i in kept}
    assert len(kept) == 12 and len(groups) == 4
    assert [i.rel for i in kept] == [i.rel for i in preprocess.limit_items(items, 3, seed=0)]
    assert [i.rel for i in kept] != [i.rel for i in preprocess.limit_items(items, 3, seed=1)]


def test_manifest_is_streamed_from_the_parts_in_plan_order_then_the_skipped_rows(tmp_path):
    (tmp_path / preprocess.PARTS_DIR).mkdir()
    parts = {name: [{"path": f"{name}/{i}.jpg", "split": "train", "label": label,
                     "status": status, "reason": 'says "hi", twice\nover lines' if i else "",
                     "shard": name if status == "ok" else "", "x": 1.5, "y": 2, "w": 3, "h": 4,
                     "angle": -0.125, "confidence": 0.9999}
                    for i, (label, status) in enumerate([("real", "ok"), ("fake", "no_face")])]
             for name in ("b-shard", "a-shard")}
    for name, rows in parts.items():
        write_shard(tmp_path, name, [], rows)
    skipped = [{"path": "real/notes.txt", "split": "", "label": "real", "status": "skipped",
                "reason": "not an image file extension (.txt)"}]
    total, counts = write_manifest(tmp_path, ["b-shard", "a-shard"], skipped)
    expected = csv_text([*parts["b-shard"], *parts["a-shard"], *skipped])
    assert (tmp_path / "manifest.csv").read_bytes() == expected.encode("utf-8")
    assert total == 5
    assert counts == {"train": {"real": {"ok": 2}, "fake": {"no_face": 2}},
                      "none": {"real": {"skipped": 1}}}
    assert status_counts(counts) == {"ok": 2, "no_face": 2, "skipped": 1}
