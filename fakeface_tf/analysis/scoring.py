"""Score a model over a data set: face-crop TFRecords or an image folder with real/ and fake/.

An image folder is cut on the fly with the model's own face options; images without a usable
face are counted and listed, never silently dropped. Crops stream through a batch at a time.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from fakeface_tf.core.errors import FakefaceError
from fakeface_tf.data import faces, records
from fakeface_tf.data.images import list_images
from fakeface_tf.models import artifacts


@dataclass
class Batch:
    """Face crops ready for the model, and the files of this chunk that yielded no face."""

    images: np.ndarray  # uint8 NxHxWxC
    labels: np.ndarray  # int (N,), 1 = fake
    paths: list[str]
    rejected: list[dict] = field(default_factory=list)  # {"path", "label", "status", "reason"}


def _image_folder(data: Path, split: str) -> Path | None:
    """`data/<split>` or `data` itself, whichever holds real/ or fake/; else `data` when it is
    itself a class folder named real or fake (e.g. pairs/fake: one class, labelled by its
    name); None if neither."""
    for base in (data / split, data):
        if (base / "real").is_dir() or (base / "fake").is_dir():
            return base
    return data if _class_folder(data) else None


def _class_folder(base: Path) -> bool:
    """Whether `base` is one class's folder (named real or fake, no real/ or fake/ inside)."""
    return (base.name in records.LABELS and base.is_dir()
            and not any((base / name).is_dir() for name in records.LABELS))


def has_split(data: str | Path, split: str) -> bool:
    """Whether `data` holds `split` itself (shards or a <split>/ image folder), as opposed to
    a flat real/ + fake/ folder that stands for every split."""
    data = Path(data).expanduser()
    return (bool(records.shard_files(data, split))
            or any((data / split / label).is_dir() for label in ("real", "fake")))


def data_source(data: str | Path, split: str = "test") -> tuple[str, Path]:
    """("records", folder) or ("images", the folder holding real/ and fake/) for `data`;
    checked before any model loads, so a wrong path fails at once."""
    data = Path(data).expanduser()
    if not data.exists():
        raise FakefaceError(f"data not found: {data}")
    if data.is_dir() and records.shard_files(data):
        return "records", data
    base = _image_folder(data, split) if data.is_dir() else None
    if base is None:
        raise FakefaceError(f"{data} is neither a TFRecords folder nor an image folder with "
                            "real/ and fake/ subfolders (or a folder named real/ or fake/)")
    return "images", base


def check_inputs(model_paths: Sequence, data: str | Path | None = None, split: str = "test") -> None:
    """Every model path, then the data, checked before a model loads: a wrong path fails in a
    second, not after TensorFlow has started."""
    for path in model_paths:
        artifacts.find_model(path)
    if data is not None:
        data_source(data, split)


def load_checked(model_path: str | Path, data: str | Path, split: str = "test") -> artifacts.LoadedModel:
    """The model at `model_path`, loaded once it and `data` passed `check_inputs`."""
    check_inputs([model_path], data, split)
    return artifacts.load_model(model_path)


def default_out(loaded, data: str | Path, split: str, prefix: str = "eval") -> Path:
    """`<model root>/<prefix>-<data folder name>-<split>/`."""
    return loaded.root / f"{prefix}-{Path(data).expanduser().resolve().name}-{split}"


def _list_images(base: Path) -> tuple[list[tuple[Path, int]], list[dict]]:
    """Image files under base/real and base/fake with their labels, and the other files
    (listed as skipped), found by the rule `fakeface preprocess` uses (`images.list_images`);
    a class folder's own images (`_class_folder`) carry its name's label."""
    files, skipped = [], []
    folders = ({base.name: base} if _class_folder(base)
               else {name: base / name for name in records.LABELS})
    for name, label in sorted(records.LABELS.items(), key=lambda kv: kv[1]):
        if name in folders and folders[name].is_dir():
            images, others = list_images(folders[name])
            files += [(path, label) for path in images]
            skipped += [{"path": str(path), "label": label, "status": "skipped",
                         "reason": f"not an image file extension ({path.suffix or 'none'})"}
                        for path in others]
    return files, skipped


def _record_batches(loaded, data: Path, split: str, batch_size: int, progress: bool):
    # Imported here: the data pipeline loads TensorFlow, which every caller's path and data
    # checks must not wait for (tests/cli/test_cli.py refuses a missing input before TF loads).
    from fakeface_tf.data import datasets

    shape = datasets.image_shape(data, split)
    wanted = (loaded.image_size, loaded.image_size, loaded.channels)
    if shape != wanted:
        raise FakefaceError(f"{data}: the records hold {shape} crops but the model takes {wanted}; "
                            "evaluate on records preprocessed for this model, or on an image folder")
    total = sum(datasets.count_examples(data, split).values())
    bar = tqdm(total=total, desc=f"scoring {split}", unit="img", disable=not progress)
    for images, labels, meta in datasets.make_dataset(data, split=split, batch_size=batch_size,
                                                      with_meta=True):
        paths = [p.decode() for p in meta["path"].numpy()]
        bar.update(len(paths))
        yield Batch(images.numpy().astype(np.uint8), labels.numpy().astype(int), paths)
    bar.close()


def _folder_batches(loaded, base: Path, batch_size: int, progress: bool):
    options = loaded.face_options
    files, skipped = _list_images(base)
    if not files:
        raise FakefaceError(f"{base}: no images in real/ or fake/"
                            + (" (nor in the folder itself)" if _class_folder(base) else ""))
    shape = (0, options.size, options.size, options.channels)
    yield Batch(np.zeros(shape, np.uint8), np.zeros(0, int), [], skipped)
    bar = tqdm(total=len(files), desc=f"faces+scoring {base.name}", unit="img", disable=not progress)
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        crops = faces.crop_files([p for p, _ in chunk], options, progress=False)
        ok = [(c, p, y) for c, (p, y) in zip(crops, chunk) if c.ok]
        rejected = [{"path": str(p), "label": y, "status": c.status, "reason": c.reason}
                    for c, (p, y) in zip(crops, chunk) if not c.ok]
        bar.update(len(chunk))
        yield Batch(np.stack([c.image for c, _, _ in ok]) if ok else np.zeros(shape, np.uint8),
                    np.array([y for _, _, y in ok], dtype=int), [str(p) for _, p, _ in ok], rejected)
    bar.close()


def iter_batches(loaded, data: str | Path, split: str = "test", batch_size: int = 64,
                 progress: bool = True) -> Iterator[Batch]:
    """Uint8 face crops of `split` sized for `loaded`, in a fixed order, a batch at a time.

    `data` is a TFRecords folder (crops made by `fakeface preprocess`) or an image folder
    with real/ and fake/ (optionally under <split>/), cut here with `faces.crop_files`."""
    kind, folder = data_source(data, split)
    if kind == "records":
        yield from _record_batches(loaded, folder, split, batch_size, progress)
    else:
        yield from _folder_batches(loaded, folder, batch_size, progress)


class Extremes:
    """The `k` highest (or lowest) scored crops seen so far, as (score, path, image): a heap of
    `k` copies, so a gallery holds `k` crops however many are scored. Ties keep the earlier."""

    def __init__(self, k: int, highest: bool):
        self.k, self.sign, self.heap, self.seen = k, 1.0 if highest else -1.0, [], 0

    def add(self, scores, paths, images) -> None:
        """Offer crops with their scores and paths; an image is copied only when it is kept."""
        if not self.k:
            return
        for score, path, image in zip(scores, paths, images):
            key = (self.sign * float(score), -self.seen)  # unique: images are never compared
            self.seen += 1
            if len(self.heap) < self.k:
                heapq.heappush(self.heap, (key, path, np.array(image)))
            elif key > self.heap[0][0]:
                heapq.heapreplace(self.heap, (key, path, np.array(image)))

    def items(self) -> list[tuple[float, str, np.ndarray]]:
        """(score, path, image), most extreme first."""
        return [(self.sign * key[0], path, image) for key, path, image in sorted(self.heap, reverse=True)]


def score_dataset(loaded, data: str | Path, split: str = "test", batch_size: int = 64,
                  keep_worst: int = 8, progress: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """P(fake) for every usable image: (y_true, scores, meta).

    The crops stream through a batch at a time; what stays is a label, a score and a path per
    face (metrics and thresholds need them all) and the `keep_worst` crops of each gallery.
    meta: `paths` (aligned with the scores), `rejected` (files with no usable face), and
    `highest_real` / `lowest_fake`: the `keep_worst` most fake-looking real crops and most
    real-looking fake crops as (score, path, image), the candidates for the error galleries."""
    labels, scores, paths, rejected = [], [], [], []
    highest_real, lowest_fake = Extremes(keep_worst, highest=True), Extremes(keep_worst, highest=False)
    for batch in iter_batches(loaded, data, split, batch_size, progress):
        rejected.extend(batch.rejected)
        if not len(batch.labels):
            continue
        s = np.asarray(loaded.predict(batch.images), dtype=float).reshape(-1)
        labels.append(batch.labels)
        scores.append(s)
        paths.extend(batch.paths)
        for extremes, label in ((highest_real, 0), (lowest_fake, 1)):
            rows = np.flatnonzero(batch.labels == label)
            extremes.add(s[rows], [batch.paths[i] for i in rows], (batch.images[i] for i in rows))
    y_true = np.concatenate(labels) if labels else np.zeros(0, int)
    meta = {"paths": paths, "rejected": rejected, "highest_real": highest_real.items(),
            "lowest_fake": lowest_fake.items()}
    return y_true, (np.concatenate(scores) if scores else np.zeros(0)), meta
