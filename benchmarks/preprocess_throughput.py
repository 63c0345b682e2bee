"""Preprocessing throughput: `fakeface preprocess` (default workers) vs a plain sequential loop,
and the same command on Apache Beam's DirectRunner (2 worker processes) vs the local runner.

All do the same per-image work on the same 200 sample faces (100 real, 100 fake): read,
detect (MTCNN), level and crop, write a TFRecord. Every timing includes building MTCNN; ours
and Beam's also include starting their worker processes. The Beam run is skipped when
apache_beam is not installed; where its extra time goes is printed from its stage metrics
(worker seconds in MTCNN set-up, cutting and writing; the rest is the runner's: starting and
importing its workers, moving elements between them and the shuffle before the writes).
Run: python benchmarks/preprocess_throughput.py
"""

from __future__ import annotations

import filecmp
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fakeface_tf.core.config import data_root  # noqa: E402
from fakeface_tf.data import (
    faces,  # noqa: E402
    images,
    records,
)
from fakeface_tf.preprocess import preprocess  # noqa: E402

PER_CLASS = 100
BEAM_WORKERS = 2
BEAM_ARGS = ["--runner=FnApiRunner", "--direct_running_mode=multi_processing",
             f"--direct_num_workers={BEAM_WORKERS}"]


def sample_folder(folder: Path) -> list[tuple[Path, str]]:
    """Symlink the first PER_CLASS faces of each class into folder/{real,fake}/."""
    files = []
    for label in ("real", "fake"):
        (folder / label).mkdir(parents=True)
        for path in sorted((data_root() / "faces" / label).glob("*.jpg"))[:PER_CLASS]:
            (folder / label / path.name).symlink_to(path)
            files.append((path, label))
    return files


def parsed(folder: Path) -> list[list[tuple]]:
    """Each shard's records, parsed, in file order (the bytes differ from run to run: protobuf
    writes an Example's feature map in no fixed order)."""
    return [[tuple((k, v.tobytes() if hasattr(v, "tobytes") else v) for k, v in sorted(ex.items()))
             for ex in records.read_all([shard])] for shard in records.shard_files(folder)]


def sequential(files: list[tuple[Path, str]], out: Path, options: faces.FaceOptions) -> int:
    """The peer: one image at a time, one process, no batching."""
    detector = faces.mtcnn_detector()
    examples = []
    for path, label in files:
        try:
            crop = faces.extract_face(images.load_image(path), options, detector)
        except images.ImageError:
            continue
        if crop.ok:
            examples.append(records.serialize(crop.image, records.LABELS[label], path=str(path),
                                              box=crop.box, angle=crop.angle))
    return records.write(out / "all.tfrecord", examples)


def main() -> None:
    options = faces.FaceOptions()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = sample_folder(tmp / "src")
        n = len(files)

        start = time.perf_counter()
        summary = preprocess(tmp / "src", tmp / "ours", options, progress=False)
        ours = time.perf_counter() - start

        (tmp / "peer").mkdir()
        start = time.perf_counter()
        written = sequential(files, tmp / "peer", options)
        peer = time.perf_counter() - start

        beam = importlib.util.find_spec("apache_beam") is not None
        if beam:
            start = time.perf_counter()
            on_beam = preprocess(tmp / "src", tmp / "beam", options, progress=False,
                                 runner="beam", pipeline_args=BEAM_ARGS)
            beam_s = time.perf_counter() - start
            same = (parsed(tmp / "ours") == parsed(tmp / "beam")
                    and filecmp.cmp(tmp / "ours" / "manifest.csv", tmp / "beam" / "manifest.csv",
                                    shallow=False))

    print(f"images: {n} ({PER_CLASS} real + {PER_CLASS} fake), cores: {os.cpu_count()}")
    print(f"ours:  {ours:7.1f} s  {n / ours:6.1f} img/s  ({sum(summary['records'].values())} faces, "
          f"{summary['workers']} workers, {len(summary['shards'])} shards)")
    print(f"peer:  {peer:7.1f} s  {n / peer:6.1f} img/s  ({written} faces, sequential loop)")
    if beam:
        stages = on_beam["beam_stages"]
        busy = (stages["setup_s"] + stages["cut_s"] + stages["write_s"]) / BEAM_WORKERS
        print(f"beam:  {beam_s:7.1f} s  {n / beam_s:6.1f} img/s  ({sum(on_beam['records'].values())} "
              f"faces, DirectRunner multi_processing, {BEAM_WORKERS} workers; same records and "
              f"manifest as ours: {same})")
        print(f"  beam worker seconds: set-up (import TF, build MTCNN) {stages['setup_s']:.1f} "
              f"({stages['setup_calls']} workers), cutting {stages['cut_s']:.1f} "
              f"({stages['cut_calls']} batches), writing {stages['write_s']:.1f} "
              f"({stages['write_calls']} shards): {busy:.1f} s a worker; the other "
              f"{beam_s - busy:.1f} s is the runner's (starting and stopping its workers, shuffle)")
        print(f"beam_vs_local={(n / beam_s) / (n / ours):.2f}")
    else:
        print("beam:  skipped (apache_beam not installed: pip install -e '.[beam]')")
    print(f"ratio={(n / ours) / (n / peer):.2f}")


if __name__ == "__main__":
    sys.exit(main())
