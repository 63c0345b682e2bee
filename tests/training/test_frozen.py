"""A model cut at its frozen layers (frozen.py), the frozen part's outputs kept on disk
(frozen_cache.py, stored_maps.py) and the bounded-memory probe (probe.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import keras
import numpy as np
import pandas as pd
import pytest

from fakeface_tf.core.config import load_config
from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data import datasets
from fakeface_tf.models.registry import build_model, frozen_outputs
from fakeface_tf.training import frozen, frozen_cache, probe
from fakeface_tf.training.stored_maps import Part, StoredMaps

from conftest import crash_after_first_epoch, tiny_config, write_synthetic_records


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """A fresh, empty $FAKEFACE_CACHE."""
    monkeypatch.setenv("FAKEFACE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def rgb_records(tmp_path) -> Path:
    return write_synthetic_records(tmp_path / "rgb", size=32, channels=3)


def pooled() -> keras.Model:
    """A stand-in frozen part: 8x8 average pooling, so each face's maps are its own and a
    mirror image's maps are the plain ones mirrored."""
    inputs = keras.Input((32, 32, 3), name="image")
    return keras.Model(inputs, keras.layers.AveragePooling2D(8, name="pool")(inputs))


def stores(records: Path, views: int = 2) -> list[frozen_cache.Store]:
    """The training (with `views`) and validation stores of `records` under the pooled part."""
    return frozen_cache.ensure(pooled(), [(frozen_cache.records_source(records, "train", 16), views),
                                          (frozen_cache.records_source(records, "valid", 16), 1)])


def counting_builds():
    """Patch frozen_cache.build with a wrapper that counts the frozen passes it runs."""
    return mock.patch.object(frozen_cache, "build", side_effect=frozen_cache.build)


# ---------------------------------------------------------------- the cut (frozen.cut_at_frozen)


def faceres_model(*overrides: str):
    """A FaceRes model for 32x32 RGB faces (resized to 224 inside) and its model config."""
    cfg = tiny_config(Path("unused-records"), "model.name=faceres", "data.color=rgb", *overrides)
    return build_model(cfg), cfg.model


def features(model: keras.Model, inputs) -> keras.Model:
    """`model`'s graph from `inputs` (its own, or cut tensors) up to the `features` layer."""
    return keras.Model(inputs, model.get_layer("features").output)


@pytest.mark.parametrize("overrides, cut", [
    (("model.trainable_blocks=1", "model.feature_blocks=11,13"),
     ["conv_pw_11_relu", "conv_pw_12_relu"]),  # a feature map the head reads, the last frozen block
    (("model.trainable_blocks=0",), ["features"]),  # all frozen: the features themselves
])
def test_the_two_parts_of_a_model_cut_at_its_frozen_layers_compose_to_the_whole(overrides, cut):
    model, model_cfg = faceres_model(*overrides)
    frozen_part, rest = frozen.cut_at_frozen(model, model_cfg)
    assert frozen_part.output_names == cut
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    maps = frozen_part(images, training=False)
    assert isinstance(maps, list) == (len(cut) > 1)  # one cut tensor: plain batches fit the rest
    np.testing.assert_allclose(rest(maps, training=False), model(images, training=False),
                               rtol=0, atol=1e-6)
    whole = features(model, model.inputs)(images, training=False)  # unsaturated, unlike P(fake)
    through_rest = maps if cut == ["features"] else features(
        model, frozen_outputs(model, model_cfg))(maps, training=False)
    np.testing.assert_allclose(through_rest, whole, rtol=0, atol=1e-6)
    # The frozen part trains nothing; the rest trains exactly what the whole model trains.
    assert frozen_part.trainable_weights == []
    assert model.trainable_weights
    assert {v.path for v in rest.trainable_weights} == {v.path for v in model.trainable_weights}


def test_a_model_with_nothing_frozen_cannot_be_cut():
    model, model_cfg = faceres_model("model.trainable_blocks=14")
    with pytest.raises(FakefaceError, match="needs a frozen part"):
        frozen.cut_at_frozen(model, model_cfg)


# ---------------------------------------------------------------- stored maps (frozen_cache)


def test_stored_maps_are_reused_until_the_records_change(cache_dir, rgb_records):
    with counting_builds() as build:
        first = stores(rgb_records)
        second = stores(rgb_records)
        assert build.call_count == 2  # training and validation once: the second call reads them
        assert [s.folder for s in first] == [s.folder for s in second]
        write_synthetic_records(rgb_records, size=32, channels=3,
                                per_split={"train": 48, "valid": 32, "test": 32})
        changed = stores(rgb_records)
    assert build.call_count == 4 and changed[0].faces == 48
    assert changed[0].folder != first[0].folder
    assert changed[1].folder != first[1].folder  # its shard was rewritten too (new mtime)


def test_a_truncated_store_file_is_rebuilt_not_read(cache_dir, rgb_records):
    train, _ = stores(rgb_records)
    shard = Path(train.files[0])
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size // 2)
    with counting_builds() as build:
        rebuilt, _ = stores(rgb_records)
    assert build.call_count == 1 and rebuilt.folder == train.folder
    assert Path(rebuilt.files[0]).stat().st_size == rebuilt.manifest["shards"][0]["bytes"]
    maps = np.concatenate([x for x, _ in StoredMaps([Part(rebuilt)], 16).plain()])
    assert maps.shape == (64, 4, 4, 3)


def test_too_little_free_space_is_a_one_line_error_before_anything_is_written(
        cache_dir, rgb_records, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda path: SimpleNamespace(total=10**9, used=10**9 - 1000, free=1000))
    with pytest.raises(FakefaceError) as raised:
        stores(rgb_records)
    message = str(raised.value)
    assert len(message.splitlines()) == 1
    assert "GB" in message and str(frozen_cache.root()) in message
    assert not frozen_cache.root().exists() or not any(frozen_cache.root().iterdir())


def faces_of(batches, plain: np.ndarray) -> list[tuple[int, bool]]:
    """(stored face, mirrored?) of every example of `batches`, found by its maps."""
    found = []
    for x, _ in batches:
        for maps in np.asarray(x):
            for i, p in enumerate(plain):
                if np.allclose(maps, p, atol=0.5) or np.allclose(maps, p[:, ::-1], atol=0.5):
                    found.append((i, bool(np.allclose(maps, p[:, ::-1], atol=0.5))))
                    break
    return found


def test_stored_maps_reshuffle_and_flip_by_epoch_so_a_resumed_run_continues(cache_dir, rgb_records):
    train, valid = stores(rgb_records)
    plain = np.concatenate([x for x, _ in StoredMaps([Part(train)], 16).plain()])
    epoch = {"now": 0}
    maps = StoredMaps([Part(train)], 16, seed=3, epoch=lambda: epoch["now"])
    dataset = maps.data
    first = faces_of(dataset, plain)
    epoch["now"] = 1
    second = faces_of(dataset, plain)
    resumed = faces_of(StoredMaps([Part(train)], 16, seed=3, epoch=lambda: 1).data, plain)
    assert len(maps) == 4 and int(dataset.cardinality()) == 4
    for one in (first, second):
        assert sorted(i for i, _ in one) == list(range(64))  # every face once a pass
        assert 0 < sum(m for _, m in one) < 64  # some mirrored, some plain
    assert first != second and resumed == second
    assert [i for i, _ in first] != list(range(64))
    plain_valid = np.concatenate([x for x, _ in StoredMaps([Part(valid)], 16).plain()])
    in_order = faces_of(StoredMaps([Part(valid)], 16).data, plain_valid)
    assert in_order == [(i, False) for i in range(32)]


def test_a_training_fraction_reads_the_faces_the_records_keep(cache_dir, rgb_records):
    train, _ = stores(rgb_records)
    kept = sum(datasets.count_examples(rgb_records, "train", 0.5).values())
    half = StoredMaps([Part(train, fraction=0.5)], 16, faces=kept)
    labels = np.concatenate([y for _, y in half.plain()])
    images = datasets.make_dataset(rgb_records, "train", batch_size=16, fraction=0.5)
    assert 0 < kept < 64 and len(labels) == kept
    np.testing.assert_array_equal(labels, np.concatenate([y for _, y in images]))


def test_auto_keeps_small_sets_in_memory_and_larger_ones_on_disk(cache_dir, rgb_records,
                                                                 monkeypatch):
    cfg = tiny_config(rgb_records, "data.color=rgb", "augment.flip=true", "training.cache_frozen=auto")
    part, optimizer = pooled(), keras.optimizers.Adam()
    images = datasets.make_dataset(rgb_records, "train", batch_size=16)
    valid = datasets.make_dataset(rgb_records, "valid", batch_size=16)
    in_memory, _ = frozen.cache(part, cfg, images, valid, optimizer)
    maps_bytes = (64 * 2 + 32) * 4 * 4 * 3 * 2  # training faces x 2 views, validation faces
    monkeypatch.setattr(frozen_cache, "RAM_CACHE_BYTES", maps_bytes - 1)
    on_disk, valid_on_disk = frozen.cache(part, cfg, images, valid, optimizer)
    assert isinstance(in_memory, frozen.CachedMaps) and isinstance(on_disk, StoredMaps)
    assert len(on_disk) == len(in_memory) == 4 and len(valid_on_disk) == 2
    np.testing.assert_array_equal(np.concatenate([x for x, _ in on_disk.plain()]),
                                  np.concatenate([x for x, _ in in_memory.plain()]))


def test_the_probe_sample_keeps_everything_in_order_when_small_and_a_bounded_sample_else():
    rng = np.random.default_rng(0)
    x, y = rng.normal(3, 2, (1000, 5)).astype(np.float32), np.arange(1000) % 2
    small, bounded, moments = probe.Reservoir(2000, 0), probe.Reservoir(100, 0), probe.Moments()
    for start in range(0, 1000, 64):
        small.add(x[start:start + 64], y[start:start + 64])
        bounded.add(x[start:start + 64], y[start:start + 64])
        moments.add(x[start:start + 64])
    np.testing.assert_array_equal(small.arrays()[0], x)
    sample, labels = bounded.arrays()
    assert sample.shape == (100, 5) and len({row.tobytes() for row in sample}) == 100
    assert (sample[:, None] == x[None]).all(axis=2).any(axis=1).all()  # rows of the stream
    assert np.mean(np.where((sample[:, None] == x[None]).all(axis=2))[1]) > 300  # not the first 100
    np.testing.assert_allclose(moments.mean, x.mean(axis=0, dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(moments.var, x.astype(np.float64).var(axis=0), rtol=1e-6)


def test_configs_with_the_old_boolean_cache_frozen_still_load(tmp_path):
    from fakeface_tf.core.config import REPO_ROOT

    assert load_config(REPO_ROOT / "saved_models" / "reference" / "config.yaml").training.cache_frozen == "auto"
    only_flips = "augment: {rotation: 0, zoom: 0, brightness: 0}\n"
    for old, new in (("true", "auto"), ("false", "off"), ("disk", "disk")):
        path = tmp_path / f"{old}.yaml"
        path.write_text(f"training:\n  cache_frozen: {old}\n{only_flips}")
        assert load_config(path).training.cache_frozen == new
    path.write_text(f"training:\n  cache_frozen: sometimes\n{only_flips}")
    with pytest.raises(FakefaceError, match="training.cache_frozen must be one of auto, memory, disk, off"):
        load_config(path)


# ---------------------------------------------------------------- whole runs (FaceRes)

# Without dropout, whose random state a checkpoint does not keep, a resumed run repeats an
# uninterrupted one exactly when it draws the same order and mirror coins for its epochs.
FACERES = ("model.name=faceres", "data.color=rgb", "model.trainable_blocks=1",
           "model.feature_blocks=11,13", "training.probe_init=true", "augment.flip=true",
           "optimizer.lr=1e-4", "model.dropout=0")


@pytest.fixture(scope="module")
def faceres_runs(tmp_path_factory):
    """Two-epoch runs of one tiny FaceRes config (two cut tensors): in memory, on disk, and
    on disk again, interrupted after its first epoch and resumed; the frozen passes of each
    counted."""
    from fakeface_tf.models import faceres
    from fakeface_tf.training.train import resume, train

    weights = faceres.weights_file().parent.resolve()
    root = tmp_path_factory.mktemp("frozen_runs")
    (root / "cache").mkdir()
    (root / "cache" / "faceres").symlink_to(weights)
    records = write_synthetic_records(root / "rgb", size=32, channels=3)
    runs, builds = {}, []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FAKEFACE_CACHE", str(root / "cache"))
        for name, mode in (("memory", "memory"), ("disk", "disk"), ("resumed", "disk")):
            cfg = tiny_config(records, *FACERES, f"training.cache_frozen={mode}")
            with counting_builds() as build:
                if name != "resumed":
                    runs[name] = train(cfg, root / name, progress=False)
                else:
                    with pytest.raises(RuntimeError, match="simulated crash"):
                        train(cfg, root / name, progress=False, callbacks=[crash_after_first_epoch()])
                    (runs[name],) = (root / name).iterdir()
                    resume(runs[name], progress=False)
            builds.append(build.call_count)
    return runs, builds


@pytest.mark.slow
def test_a_second_disk_run_reuses_the_stored_maps_and_resumes_where_it_stopped(faceres_runs):
    runs, builds = faceres_runs
    assert builds == [0, 2, 0]  # memory mode stores nothing; the second disk run runs nothing
    pd.testing.assert_frame_equal(pd.read_csv(runs["disk"] / "history.csv"),
                                  pd.read_csv(runs["resumed"] / "history.csv"))


@pytest.mark.slow
def test_disk_and_memory_modes_train_alike(faceres_runs):
    runs, _ = faceres_runs
    probes = [json.loads((runs[name] / "probe.json").read_text()) for name in ("memory", "disk")]
    assert probes[0] == probes[1]
    # The probe's standardisation (frozen after it) saw the same features in either mode.
    norms = [keras.models.load_model(runs[name] / "model.keras").get_layer("feature_norm")
             for name in ("memory", "disk")]
    for stat in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(*(np.asarray(getattr(n, stat)) for n in norms), rtol=1e-5)
    memory, disk = (pd.read_csv(runs[name] / "history.csv").iloc[-1] for name in ("memory", "disk"))
    # Only the order of the training faces and their mirror coins differ (about 1 % apart).
    for column in ("val_loss", "loss"):
        assert memory[column] == pytest.approx(disk[column], rel=0.05), column
