"""How the model holds up when images are degraded: JPEG, resizing, blur, flipping.

Every condition is a plain function on one uint8 face crop (HxWx1 or HxWx3) that returns a
crop of the same shape. They are applied to the *preprocessed* crops, after face detection.
In the wild the damage comes first (an image is re-saved as JPEG or shrunk, then the face
is found and cut), so these numbers isolate what the classifier sees and leave out any
effect on MTCNN; the crop resize also softens JPEG blocks that hit the full image.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from fakeface_tf.analysis.metrics import compute_metrics
from fakeface_tf.analysis.scoring import data_source, default_out, iter_batches, load_checked
from fakeface_tf.core import plots
from fakeface_tf.core.text import format_value
from fakeface_tf.training import tracking

Transform = Callable[[np.ndarray], np.ndarray]
PREFIX = "robustness"  # sweeps land in <model root>/robustness-<data>-<split>/
TABLE_FILE = "robustness.csv"
FIGURE_FILE = "robustness.png"


def _keep_shape(result: np.ndarray, like: np.ndarray) -> np.ndarray:
    """cv2 drops a trailing channel axis of 1; put it back."""
    return result.reshape(like.shape).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Re-encode as JPEG at `quality` with Pillow (4:2:0 chroma for colour) and decode."""
    buffer = io.BytesIO()
    Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(
        buffer, format="JPEG", quality=quality)
    return _keep_shape(np.asarray(Image.open(buffer)), image)


def rescale(image: np.ndarray, factor: float) -> np.ndarray:
    """Shrink by `factor` (area interpolation), then enlarge back (bilinear): lost detail."""
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))),
                       interpolation=cv2.INTER_AREA)
    return _keep_shape(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), image)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation `sigma` pixels."""
    return _keep_shape(cv2.GaussianBlur(image, (0, 0), sigmaX=sigma), image)


def hflip(image: np.ndarray) -> np.ndarray:
    """Mirror left-right (training augments with flips, so this should cost little)."""
    return np.ascontiguousarray(image[:, ::-1])


def identity(image: np.ndarray) -> np.ndarray:
    return image


CONDITIONS: dict[str, Transform] = {
    "clean": identity,
    **{f"jpeg_q{q}": functools.partial(jpeg, quality=q) for q in (95, 75, 50, 30)},
    **{f"resize_{f}x": functools.partial(rescale, factor=f) for f in (0.75, 0.5)},
    "blur_sigma1.0": functools.partial(blur, sigma=1.0),
    "hflip": hflip,
}


def robustness(model_path: str | Path, data: str | Path, out: str | Path | None = None,
               split: str = "test", conditions: dict[str, Transform] | None = None,
               batch_size: int = 64, progress: bool = True) -> pd.DataFrame:
    """Accuracy and AUC of the model on `split` under each condition, at the model's saved
    threshold; writes robustness.csv and robustness.png into `out` (default: beside the model)."""
    conditions = conditions or CONDITIONS
    loaded = load_checked(model_path, data, split)
    labels, scores = [], {name: [] for name in conditions}
    rejected, bar = 0, _progress(data, split, len(conditions), progress)
    for batch in iter_batches(loaded, data, split, batch_size, progress=False):
        rejected += len(batch.rejected)
        if not len(batch.labels):
            continue
        labels.append(batch.labels)
        for name, transform in conditions.items():
            bar.set_description(f"robustness {name}", refresh=False)
            images = np.stack([transform(img) for img in batch.images])
            scores[name].append(np.asarray(loaded.predict(images), dtype=float).reshape(-1))
            bar.update(len(images))
    bar.close()
    y_true = np.concatenate(labels) if labels else np.zeros(0, int)
    rows = []
    for name in conditions:
        m = compute_metrics(y_true, np.concatenate(scores[name]) if labels else [], loaded.threshold)
        rows.append({"condition": name, "accuracy": m["accuracy"], "roc_auc": m["roc_auc"],
                     "average_precision": m["average_precision"], "accuracy_real": m["accuracy_real"],
                     "accuracy_fake": m["accuracy_fake"], "images": m["counts"]["total"],
                     "rejected": rejected, "threshold": loaded.threshold})
    frame = pd.DataFrame(rows)
    out = Path(out) if out else default_out(loaded, data, split, prefix=PREFIX)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / TABLE_FILE, index=False)
    frame.attrs["out"] = str(out)
    plots.condition_bars(frame, out / FIGURE_FILE, ("accuracy", "roc_auc"),
                         title=f"Robustness on {Path(data).name} [{split}] (crops degraded after detection)")
    tracking.log_report(loaded.root, out.name, {row["condition"]: {k: row[k] for k in ("accuracy", "roc_auc")}
                                                for row in rows}, out)
    return frame


def _progress(data, split: str, conditions: int, progress: bool) -> tqdm:
    """One bar over every (crop, condition) scored, named after the condition being scored;
    its total is known for records (an image folder's faces are found as the sweep goes)."""
    kind, folder = data_source(data, split)
    total = None
    if kind == "records":
        from fakeface_tf.data import datasets  # TensorFlow, loaded with the model by now

        total = sum(datasets.count_examples(folder, split).values()) * conditions
    return tqdm(total=total, desc="robustness", unit="crop", disable=not progress)


def table(frame: pd.DataFrame) -> str:
    """The sweep as aligned text, undefined values shown as 'unavailable'."""
    columns = ("accuracy", "roc_auc", "accuracy_real", "accuracy_fake")
    lines = [f"{'condition':16s}" + "".join(f"{c:>15s}" for c in columns)]
    for row in frame.to_dict("records"):
        lines.append(f"{row['condition']:16s}" + "".join(f"{format_value(row[c]):>15s}" for c in columns))
    return "\n".join(lines)

