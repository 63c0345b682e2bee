"""Input pipeline throughput: `datasets.make_dataset` vs `keras.utils.image_dataset_from_directory`,
and our training path (shuffle, augmentation, mixup) with its map parallel vs sequential.

The same face crops are stored twice: as our TFRecord shards and as JPEG files in
class folders. Both pipelines yield batches of 32 float images with labels (128x128 gray,
or the shape of the `--records` crops), prefetched, in a fixed order; each is warmed up
for one epoch, then timed over two. The bytes stored per crop are printed for both. Crops come from `--records DIR` (a `fakeface preprocess` output) or, by default,
from the first 2000 sample faces resized to 128x128 gray (the pipeline cost does not
depend on how the crop was cut). The training path runs `make_dataset(training=True)` as
`fakeface train` does (cached records, shuffled) with TRAIN_AUGMENT, once with the
parse+augment+mixup map on AUTOTUNE threads and once one batch at a time (the only way
before augmentation was stateless). Run: python benchmarks/input_pipeline.py
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from fakeface_tf.core.config import AugmentConfig, data_root  # noqa: E402
from fakeface_tf.data import (
    datasets,  # noqa: E402
    records,
)
from fakeface_tf.data.images import load_image  # noqa: E402

BATCH, SIZE, EPOCHS, SAMPLE = 32, 128, 2, 2000
# The default flips, rotation, zoom and brightness plus configs/reference.yaml's shift and mixup.
TRAIN_AUGMENT = AugmentConfig(shift=0.0625, mixup=0.2)


def sample_crops() -> list[tuple[np.ndarray, int]]:
    paths = sorted((data_root() / "faces").glob("*/*.jpg"))[:SAMPLE]
    out = []
    for path in paths:
        gray = cv2.cvtColor(load_image(path), cv2.COLOR_RGB2GRAY)
        crop = cv2.resize(gray, (SIZE, SIZE), interpolation=cv2.INTER_AREA)[..., None]
        out.append((crop, records.LABELS[path.parent.name]))
    return out


def write_both(crops, folder: Path) -> None:
    """The same crops as TFRecords (folder/records) and as JPEGs (folder/jpeg/{real,fake})."""
    (folder / "records").mkdir()
    examples = (records.serialize(img, label, path=f"{i}.jpg") for i, (img, label) in enumerate(crops))
    records.write(folder / "records" / records.shard_name("test", 0, 1), examples)
    for name in records.LABELS:
        (folder / "jpeg" / name).mkdir(parents=True)
    names = {v: k for k, v in records.LABELS.items()}
    for i, (img, label) in enumerate(crops):
        cv2.imwrite(str(folder / "jpeg" / names[label] / f"{i:05d}.jpg"), img,
                    [cv2.IMWRITE_JPEG_QUALITY, 95])


def throughput(ds: tf.data.Dataset) -> tuple[float, int]:
    """Images per second over EPOCHS epochs, after one warm-up epoch."""
    for _ in ds:
        pass
    count, start = 0, time.perf_counter()
    for _ in range(EPOCHS):
        for images, _labels in ds:
            count += int(images.shape[0])
    return count / (time.perf_counter() - start), count


def training_dataset(folder: Path, parallel: bool) -> tf.data.Dataset:
    """The training batches `fakeface train` reads: cached records, shuffled, augmented, mixed."""
    return datasets.make_dataset(folder, batch_size=BATCH, training=True, augment=TRAIN_AUGMENT,
                             seed=0, cache=True, parallel=parallel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", help="a preprocess output folder to take the crops from")
    args = parser.parse_args()
    if args.records:
        crops = [(ex["image"], int(ex["label"])) for ex in records.read_all(args.records)][:SAMPLE]
    else:
        crops = sample_crops()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_both(crops, tmp)
        ours, n = throughput(datasets.make_dataset(tmp / "records", batch_size=BATCH))
        height, width, channels = crops[0][0].shape
        peer_ds = keras.utils.image_dataset_from_directory(
            tmp / "jpeg", labels="inferred", label_mode="binary",
            color_mode="grayscale" if channels == 1 else "rgb",
            batch_size=BATCH, image_size=(height, width), shuffle=False, verbose=False,
        ).prefetch(tf.data.AUTOTUNE)
        peer, _ = throughput(peer_ds)
        parallel = throughput(training_dataset(tmp / "records", parallel=True))[0]
        sequential = throughput(training_dataset(tmp / "records", parallel=False))[0]
        stored = {name: sum(f.stat().st_size for f in (tmp / name).rglob("*") if f.is_file())
                  for name in ("records", "jpeg")}
    print(f"images: {len(crops)} crops {height}x{width}x{channels}, batch {BATCH}, {EPOCHS} epochs "
          f"after warm-up ({n} images timed), cores: {os.cpu_count()}")
    print(f"stored: TFRecords (raw uint8) {stored['records'] / len(crops) / 1024:.0f} KB/crop, "
          f"JPEG q95 {stored['jpeg'] / len(crops) / 1024:.0f} KB/crop")
    print(f"ours (make_dataset over TFRecords):          {ours:9.0f} img/s")
    print(f"peer (image_dataset_from_directory on JPEG): {peer:9.0f} img/s")
    print(f"ratio={ours / peer:.2f}")
    print(f"training path ({TRAIN_AUGMENT}):")
    print(f"  map in parallel (AUTOTUNE, deterministic): {parallel:9.0f} img/s")
    print(f"  map one batch at a time:                   {sequential:9.0f} img/s")
    print(f"  training ratio={parallel / sequential:.2f}")


if __name__ == "__main__":
    sys.exit(main())
