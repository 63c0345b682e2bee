"""Preprocessing throughput: `fakeface preprocess` (default workers) vs a plain sequential loop.

Both do the same per-image work on the same 200 sample faces (100 real, 100 fake): read,
detect (MTCNN), level and crop, write a TFRecord. Both timings include building MTCNN;
ours also includes starting its worker processes. Run: python benchmarks/preprocess_throughput.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fakeface_tf import faces, records  # noqa: E402
from fakeface_tf.config import data_root  # noqa: E402
from fakeface_tf.preprocess import preprocess  # noqa: E402

PER_CLASS = 100


def sample_folder(folder: Path) -> list[tuple[Path, str]]:
    """Symlink the first PER_CLASS faces of each class into folder/{real,fake}/."""
    files = []
    for label in ("real", "fake"):
        (folder / label).mkdir(parents=True)
        for path in sorted((data_root() / "faces" / label).glob("*.jpg"))[:PER_CLASS]:
            (folder / label / path.name).symlink_to(path)
            files.append((path, label))
    return files


def sequential(files: list[tuple[Path, str]], out: Path, options: faces.FaceOptions) -> int:
    """The peer: one image at a time, one process, no batching."""
    detector = faces.get_detector()
    examples = []
    for path, label in files:
        try:
            crop = faces.extract_face(faces.load_image(path), options, detector)
        except faces.ImageError:
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

    print(f"images: {n} ({PER_CLASS} real + {PER_CLASS} fake), cores: {os.cpu_count()}")
    print(f"ours:  {ours:7.1f} s  {n / ours:6.1f} img/s  ({sum(summary['records'].values())} faces, "
          f"{summary['workers']} workers, {len(summary['shards'])} shards)")
    print(f"peer:  {peer:7.1f} s  {n / peer:6.1f} img/s  ({written} faces, sequential loop)")
    print(f"ratio={(n / ours) / (n / peer):.2f}")


if __name__ == "__main__":
    sys.exit(main())
