"""Hostile files round two (#22): preprocess never deletes or overwrites a file it did not
write, lists every entry under SRC (FIFOs, odd links, non-UTF-8 names) as a manifest row
without opening anything but regular files, and a config file cannot be made into a bomb."""

from __future__ import annotations

import csv
import os
import threading

import pytest

from fakeface_tf import cli, preprocess
from fakeface_tf.core import files
from fakeface_tf.core.config import REPO_ROOT, apply_overrides, load_config
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.core.text import short
from fakeface_tf.core.yaml_loading import MAX_DEPTH, MAX_INT_CHARS
from fakeface_tf.data import records

LATIN1 = b"caf\xe9"  # a Latin-1 name: not UTF-8


def read_manifest(out) -> list[dict]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:  # strict UTF-8
        return list(csv.DictReader(f))


def unreadable_src(src) -> None:
    """real/ and fake/ with one text file named .jpg each: an `unreadable` row, no MTCNN."""
    for label in ("real", "fake"):
        (src / label).mkdir(parents=True)
        (src / label / f"{label}.jpg").write_text("not pixels\n")


def run(src, out, **kwargs) -> dict:
    return preprocess.preprocess(src, out, workers=1, shard_size=1, split=(1.0, 0.0, 0.0),
                                 progress=False, **kwargs)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fakeface: error: ")
    return err.strip()


# ------------------------------------------------------------------ OUT: never lose a file


def test_out_with_files_preprocess_did_not_write_is_refused_and_untouched(tmp_path, capsys):
    unreadable_src(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tmp").write_text("chapter 1")
    (out / "manifest.csv").write_text("my own manifest")
    args = ["preprocess", str(tmp_path / "src"), str(out), "--no-progress", "--workers", "1"]
    assert cli.main(args) == 2
    err = one_line_error(capsys)
    assert "did not write" in err and "manifest.csv" in err and "thesis.tmp" in err
    assert "--overwrite" in err
    assert sorted(p.name for p in out.iterdir()) == ["manifest.csv", "thesis.tmp"]
    assert (out / "thesis.tmp").read_text() == "chapter 1"
    assert (out / "manifest.csv").read_text() == "my own manifest"
    assert cli.main([*args, "--overwrite"]) == 0  # consent: manifest.csv is replaced, the rest kept
    assert (out / "thesis.tmp").read_text() == "chapter 1"
    assert sorted(row["path"] for row in read_manifest(out)) == ["fake/fake.jpg", "real/real.jpg"]


def test_out_whose_path_is_not_utf8_is_refused_before_any_work(tmp_path, capsys):
    unreadable_src(tmp_path / "src")
    out = os.fsdecode(os.fsencode(tmp_path) + b"/out-" + LATIN1)
    assert cli.main(["preprocess", str(tmp_path / "src"), out, "--no-progress"]) == 2
    assert "out-caf\\xe9: name a folder whose path is UTF-8 text" in one_line_error(capsys)
    assert not os.path.exists(out)


def test_overwrite_keeps_foreign_files_and_deletes_only_its_own_temp_names(tmp_path):
    unreadable_src(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    kept = {"thesis.tmp": "chapter 1", ".thesis.tmp": "hidden", ".notes.1234.tmp": "a lookalike",
            "data.tfrecord": "someone's records"}
    for name, text in kept.items():
        (out / name).write_text(text)
    own_temp = files.temp_path(out / records.shard_name("train", 0, 2))  # a killed writer's
    own_temp.write_bytes(b"half a shard")
    summary = run(tmp_path / "src", out, overwrite=True)
    assert {name: (out / name).read_text() for name in kept} == kept
    assert not own_temp.exists()
    assert [row["status"] for row in read_manifest(out)] == ["unreadable", "unreadable"]
    assert any("data.tfrecord" in w and "read them too" in w for w in summary["warnings"])


def test_rerun_into_its_own_out_resumes_and_a_foreign_file_added_later_is_refused(tmp_path):
    unreadable_src(tmp_path / "src")
    out = tmp_path / "out"
    first = run(tmp_path / "src", out)
    assert run(tmp_path / "src", out)["shards_reused"] == len(first["shards"]) == 2
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FakefaceError, match=r"1 file\(s\) preprocess did not write \(notes.txt\)"):
        run(tmp_path / "src", out)
    assert (out / "notes.txt").read_text() == "mine"


def test_overwrite_replaces_an_earlier_run_with_other_settings_but_not_foreign_files(tmp_path):
    unreadable_src(tmp_path / "src")
    out = tmp_path / "out"
    run(tmp_path / "src", out)  # shard_size 1: two shards
    with pytest.raises(FakefaceError, match="other settings.*--overwrite"):
        preprocess.preprocess(tmp_path / "src", out, workers=1, shard_size=2,
                              split=(1.0, 0.0, 0.0), progress=False)
    (out / "notes.txt").write_text("mine")
    summary = preprocess.preprocess(tmp_path / "src", out, workers=1, shard_size=2,
                                    split=(1.0, 0.0, 0.0), progress=False, overwrite=True)
    assert summary["shards"] == [records.shard_name("train", 0, 1)]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".parts", "manifest.csv", "notes.txt", "preprocess.json", *summary["shards"]])
    assert sorted(p.name for p in (out / ".parts").iterdir()) == sorted(
        ["settings.json", f"{summary['shards'][0]}.csv"])


# ----------------------------------------------------- SRC: every entry is a manifest row


class FifoWatch:
    """Notes whether anyone opens `path` (a FIFO) for reading, and unblocks that reader: a
    writer's non-blocking open succeeds only while a reader waits, then closes at once."""

    def __init__(self, path):
        self.path, self.opened, self.done = path, False, threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        while not self.done.wait(0.01):
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
                self.opened = True
            except OSError:  # ENXIO: no reader
                pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()


@pytest.fixture
def odd_src(tmp_path):
    """real/ holding one of each odd entry; fake/ one unreadable file."""
    src = tmp_path / "src"
    unreadable_src(src)
    real = src / "real"
    os.mkfifo(real / "pipe.jpg")
    (real / "folder.jpg").mkdir()
    (real / "folder.jpg" / "inside.jpg").write_text("not pixels\n")
    (real / "dangling.jpg").symlink_to(real / "nothing-here.jpg")
    (real / "loop.jpg").symlink_to(real / "loop.jpg")
    (real / "linked-folder").symlink_to(src / "fake")
    (real / ".hidden.jpg").write_text("not pixels\n")
    real_bytes = os.fsencode(real)
    with open(real_bytes + b"/" + LATIN1 + b".jpg", "w") as f:  # a non-UTF-8 image name
        f.write("not pixels\n")
    with open(real_bytes + b"/" + LATIN1 + b".txt", "w") as f:  # and a non-image one
        f.write("notes\n")
    return src


ODD_ROWS = {  # path -> (status, words in the reason)
    "real/pipe.jpg": ("skipped", "a FIFO (named pipe), not a regular file"),
    "real/folder.jpg": ("skipped", "a folder, not an image file"),
    "real/folder.jpg/inside.jpg": ("unreadable", "text"),
    "real/dangling.jpg": ("skipped", "a link to nothing"),
    "real/loop.jpg": ("skipped", "cannot be followed"),
    "real/linked-folder": ("skipped", "a link to a folder"),
    "real/.hidden.jpg": ("skipped", "hidden"),
    "real/caf\\xe9.jpg": ("unreadable", "caf\\xe9.jpg"),  # the reason names it escaped too
    "real/caf\\xe9.txt": ("skipped", "not an image file extension (.txt)"),
    "real/real.jpg": ("unreadable", "text"),
    "fake/fake.jpg": ("unreadable", "text"),
}


def test_every_entry_under_src_is_a_row_and_a_fifo_is_never_opened(odd_src, tmp_path):
    with FifoWatch(odd_src / "real" / "pipe.jpg") as watch:
        summary = run(odd_src, tmp_path / "out")
    assert not watch.opened
    rows = {row["path"]: row for row in read_manifest(tmp_path / "out")}
    assert {path: rows[path]["status"] for path in rows} == {p: s for p, (s, _) in ODD_ROWS.items()}
    for path, (_, words) in ODD_ROWS.items():
        assert words in rows[path]["reason"], path
    assert summary["files"] == len(ODD_ROWS)


def test_a_non_utf8_name_is_split_by_its_written_name_and_never_crashes(odd_src):
    name = os.fsdecode(b"real/" + LATIN1 + b".jpg")  # surrogate escapes, as os.listdir gives
    assert files.display_name(name) == "real/caf\\xe9.jpg"
    assert preprocess.hash_split(name, 0, (0.5, 0.25, 0.25)) in records.SPLITS
    items, skipped, _ = preprocess.find_items(odd_src, seed=3)
    item = next(i for i in items if "caf" in i.rel)
    assert item.rel == "real/caf\\xe9.jpg" and os.path.isfile(item.path)
    assert all(i.split == preprocess.hash_split(i.rel, 3, (0.8, 0.1, 0.1)) for i in items)
    assert all(row["split"] == "" for row in skipped)  # hash split: skipped rows have none


def test_beam_runner_writes_the_same_rows_for_odd_entries(odd_src, tmp_path):
    pytest.importorskip("apache_beam", reason="Apache Beam is not installed")
    local = run(odd_src, tmp_path / "local")
    beam = run(odd_src, tmp_path / "beam", runner="beam",
               pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    assert read_manifest(tmp_path / "beam") == read_manifest(tmp_path / "local")
    assert beam["status"] == local["status"]


def test_beam_runner_on_urls_writes_the_local_rows_for_hidden_and_image_named_folders(
        tmp_path, monkeypatch):
    pytest.importorskip("apache_beam", reason="Apache Beam is not installed")
    from test_beam import FakeFileSystem  # noqa: F401 - registers fakefs:// (a stand-in for gs://)

    monkeypatch.setenv("FAKEFS_ROOT", str(tmp_path))
    src = tmp_path / "src"
    unreadable_src(src)
    (src / "real" / ".hidden.jpg").write_text("not pixels\n")
    (src / "real" / "folder.jpg").mkdir()
    (src / "real" / "folder.jpg" / "inside.jpg").write_text("not pixels\n")
    (src / "fake" / "notes.txt").write_text("notes\n")
    run(src, tmp_path / "local")
    run("fakefs://src", "fakefs://cloud", runner="beam",
        pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    cloud = [{**row, "reason": row["reason"].replace("fakefs://src", "SRC")}
             for row in read_manifest(tmp_path / "cloud")]
    local = [{**row, "reason": row["reason"].replace(str(src), "SRC")}
             for row in read_manifest(tmp_path / "local")]
    assert cloud == local and len(local) == 6
    assert {row["path"] for row in local if row["status"] == "skipped"} == {
        "real/.hidden.jpg", "real/folder.jpg", "fake/notes.txt"}


# ------------------------------------------------------------- configs that cannot explode


def alias_bomb() -> str:
    """The 'billion laughs': nine levels of nine aliases, 9**9 strings once expanded."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]")
    return "\n".join([*lines, "name: *i"]) + "\n"


@pytest.mark.parametrize("text, words", [
    (alias_bomb(), "line 1, column 4: YAML anchors and aliases"),
    ("training:\n  epochs: " + "9" * 5000 + "\n", "line 2, column 11: a number of 5000 characters"),
    ("name: " + "[" * 20_000 + "]" * 20_000 + "\n", f"nested more than {MAX_DEPTH} levels"),
    ("name: !!timestamp 2024-13-45\n", "ValueError: month must be in 1..12"),
    ("training: {epochs: 3\n", "line 2, column 1"),
], ids=["alias-bomb", "5000-digit-int", "20000-deep", "bad-date", "unclosed"])
def test_hostile_config_is_a_short_error_naming_file_and_line(tmp_path, text, words):
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    with pytest.raises(FakefaceError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not valid YAML (") and words in message
    assert "\n" not in message and len(message) < len(str(path)) + 160


def test_config_that_is_not_utf8_or_too_large_is_refused(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(FakefaceError, match=r"latin1.yaml: not UTF-8 text \(byte 9\)"):
        load_config(path)
    path.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(FakefaceError, match="larger than 1024 KiB"):
        load_config(path)


@pytest.mark.parametrize("override, words", [
    ("name=&a [1]", "--set name: not valid YAML (line 1, column 1: YAML anchors"),
    (f"training.epochs={'9' * 5000}", f"a number of 5000 characters (at most {MAX_INT_CHARS})"),
    (f"name={'[' * 100}", "--set name: not valid YAML"),
    (f"training.epochs='{'9' * 5000}'", "expects int, got '999999999"),
])
def test_set_overrides_go_through_the_same_checks(override, words):
    with pytest.raises(FakefaceError) as info:
        apply_overrides(load_config(REPO_ROOT / "configs" / "fast.yaml"), [override])
    assert words in str(info.value) and len(str(info.value)) < 200


def test_train_cli_on_the_alias_bomb_exits_2_with_one_line(tmp_path, capsys):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    assert cli.main(["train", str(path)]) == 2
    assert "bomb.yaml: not valid YAML (line 1" in one_line_error(capsys)


def test_short_bounds_what_an_error_echoes():
    nested = ["lol"]
    for _ in range(100):  # 2**100 strings if repr() expanded it
        nested = [nested, nested]
    for value in (nested, 10 ** 5000, "x\n" * 100_000, {"k": list(range(10 ** 5))}):
        text = short(value)
        assert len(text) <= 64 and "\n" not in text
    assert short(10 ** 5000) == "<an integer of about 5001 digits>"
    assert short("training.epoch") == "'training.epoch'"
