"""MTCNN's three stages with memory bounded whatever a photo shows (`faces.mtcnn_detector`
builds them; the bounds are set here).

mtcnn 1.0.0 compares every first-stage (PNet) window with every other in one N x N IoU matrix
per NMS, and runs RNet and ONet on all proposals at once. PNet fires on anything faintly
face-like, so a photo tiled with 1,024 small faces gave ~19,000 windows at one pyramid scale:
gigabytes of IoU matrices (a 1024 px detection image passed 20 GB). These stages compute the
very same boxes (the same calls, the same NMS rule, bit for bit) under three bounds, none of
which binds on the sample photos (at most ~440 windows per scale and ~400 proposals per image,
textures included):
- at most PNET_WINDOWS windows per image enter each of PNet's NMS (per scale, then across
  scales), the most confident ones, so none costs more than PNET_WINDOWS^2 / 2 comparisons;
- at most MAX_PROPOSALS proposals per image go on to RNet and ONet, the most confident ones;
- RNet and ONet run STAGE_PIXELS of patches at a time and NMS builds its IoU matrix NMS_CELLS
  entries at a time, so their memory does not grow with the number of proposals.
mtcnn's NMS is a prefix rule (a box is dropped when any earlier box, kept or not, overlaps it),
and its boxes come sorted by confidence, so a capped list keeps exactly the most confident of
the boxes the uncapped one would keep.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from mtcnn.stages import StageONet, StagePNet, StageRNet
from mtcnn.utils.bboxes import (
    adjust_bboxes,
    generate_bounding_box,
    pick_matches,
    replace_confidence,
    resize_to_square,
    sort_by_scores,
    upscale_bboxes,
)
from mtcnn.utils.images import apply_scales, build_scale_pyramid, extract_patches
from mtcnn.utils.landmarks import adjust_landmarks

# Without these bounds a photo tiled with 1,024 small faces took ~20 GB. None binds on the
# sample photos, where the boxes found are bit for bit mtcnn's own.
MAX_PROPOSALS = 512  # first-stage proposals per image passed to RNet and ONet: the most confident
PNET_WINDOWS = 4 * MAX_PROPOSALS  # PNet windows per image entering each NMS (per scale, across scales)
STAGE_PIXELS = 64 * 48 * 48  # patch pixels per RNet / ONet call: 256 for RNet, 64 for ONet
NMS_CELLS = 1 << 20  # IoU entries computed at once (8 MB per temporary array)


def first_per_image(boxes: np.ndarray, cap: int) -> np.ndarray:
    """The first `cap` rows of each image (column 0) of `boxes`, in their order."""
    if len(boxes) <= cap:
        return boxes
    ids = boxes[:, 0]
    order = np.argsort(ids, kind="stable")
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(len(ids)) - np.searchsorted(ids[order], ids[order], side="left")
    return boxes[rank < cap]


def kept(boxes: np.ndarray, threshold: float, method: str = "union",
         limit: int | None = None) -> np.ndarray:
    """Indices of the (x1, y1, x2, y2) rows that no earlier row overlaps by more than `threshold`:
    mtcnn's `nms(iou(...))`, row block by row block; stops once `limit` rows are kept."""
    n = len(boxes)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    step = max(1, NMS_CELLS // max(n, 1))
    found: list[np.ndarray] = []
    count = 0
    with np.errstate(divide="ignore", invalid="ignore"):  # empty boxes: 0/0, NaN, never above
        for start in range(0, n, step):
            stop = min(n, start + step)
            rows, cols = boxes[start:stop, None, :], boxes[None, :stop, :]
            low, high = np.maximum(cols[..., :2], rows[..., :2]), np.minimum(cols[..., 2:], rows[..., 2:])
            height = np.maximum(0, high[..., 0] - low[..., 0])  # mtcnn's names: x is its "row"
            width = np.maximum(0, high[..., 1] - low[..., 1])
            inter = height * width
            if method == "union":
                overlap = inter / (area[start:stop, None] + area[None, :stop] - inter)
            else:
                overlap = inter / np.minimum(area[start:stop, None], area[None, :stop])
            earlier = np.arange(stop)[None, :] < np.arange(start, stop)[:, None]
            found.append(start + np.flatnonzero(~((overlap > threshold) & earlier).any(axis=1)))
            count += len(found[-1])
            if limit is not None and count >= limit:
                break
    indices = np.concatenate(found) if found else np.empty(0, dtype=np.int64)
    return indices[:limit] if limit is not None else indices


def nms(boxes: np.ndarray, threshold: float, method: str = "union", initial_sort: bool = True,
        limit: int | None = None) -> np.ndarray:
    """mtcnn's `smart_nms_from_bboxes` (per image, boxes in columns 1-4, confidence in 5) in
    bounded memory; with `limit`, only the first `limit` boxes kept per image."""
    if initial_sort:
        boxes = sort_by_scores(boxes, scores=boxes[:, 5], ascending=False)
    result = []
    for image_id in np.unique(boxes[:, 0]):
        target = boxes[boxes[:, 0] == image_id]
        result.append(target[kept(target[:, 1:5], threshold, method, limit)])
    return np.concatenate(result, axis=0) if result else np.empty((0, 6))


def run_chunked(model, images_normalized, boxes: np.ndarray, size: tuple[int, int]) -> list:
    """The model's outputs for the patches of `boxes`, cut and run STAGE_PIXELS at a time and
    joined as tensors (mtcnn's later arithmetic then runs in the same precision as on one call)."""
    if len(boxes) == 0:  # what the model raises on no patches; detect_faces reads it as "no face"
        raise tf.errors.InvalidArgumentError(None, None, "no face proposals left")
    step = max(1, STAGE_PIXELS // (size[0] * size[1]))
    parts = [model(extract_patches(images_normalized, boxes[i:i + step], expected_size=size))
             for i in range(0, len(boxes), step)]
    if len(parts) == 1:
        return list(parts[0])
    return [tf.concat([part[k] for part in parts], axis=0) for k in range(len(parts[0]))]


def per_image(boxes: np.ndarray, images: int) -> list[int]:
    """How many boxes each image of the batch has."""
    if not len(boxes):
        return [0] * images
    return np.bincount(boxes[:, 0].astype(np.int64), minlength=images).tolist()


class BoundedPNet(StagePNet):
    """PNet, one pyramid scale at a time, with PNET_WINDOWS and MAX_PROPOSALS per image.
    `windows`: the most windows above threshold any image had at one scale (before the cap);
    `proposals`: the proposals per image passed on (after it)."""

    windows: int = 0
    proposals: list[int] = []

    def __call__(self, images_normalized, images_oshapes, min_face_size=20, min_size=12,
                 scale_factor=0.709, threshold_pnet=0.6, nms_pnet1=0.5, nms_pnet2=0.7, **kwargs):
        groups = [build_scale_pyramid(shape[1], shape[0], min_face_size=min_face_size,
                                      scale_factor=scale_factor) for shape in images_oshapes]
        scaled_images, scales = apply_scales(images_normalized, groups)
        batch_size = images_normalized.shape[0]
        found, self.windows = [], 0
        for scaled, scale in zip(scaled_images, scales):
            result = self._model(scaled)
            boxes = generate_bounding_box(result[0], result[1], threshold_pnet)  # sorted by confidence
            self.windows = max([self.windows, *per_image(boxes, batch_size)])
            boxes = first_per_image(boxes, PNET_WINDOWS)
            boxes = upscale_bboxes(boxes, np.asarray([scale] * batch_size))
            found.append(nms(boxes, nms_pnet1, "union", initial_sort=False))
        boxes = np.concatenate(found, axis=0) if found else np.empty((0, 6))
        boxes = first_per_image(sort_by_scores(boxes, scores=boxes[:, 5], ascending=False), PNET_WINDOWS)
        boxes = nms(boxes, nms_pnet2, "union", initial_sort=False, limit=MAX_PROPOSALS)
        self.proposals = per_image(boxes, batch_size)
        return resize_to_square(boxes)


class BoundedRNet(StageRNet):
    """RNet over the proposals, in chunks (run_chunked). `inputs`: proposals it was given."""

    inputs: int = 0

    def __call__(self, images_normalized, bboxes_batch, threshold_rnet=0.7, nms_rnet=0.7, **kwargs):
        self.inputs = len(bboxes_batch)
        offsets, scores = run_chunked(self._model, images_normalized, bboxes_batch, (24, 24))
        boxes = adjust_bboxes(replace_confidence(bboxes_batch, scores), offsets)
        boxes = pick_matches(boxes, score_threshold=threshold_rnet)
        return resize_to_square(nms(boxes, nms_rnet, "union", initial_sort=True))


class BoundedONet(StageONet):
    """ONet over RNet's boxes, in chunks (run_chunked). `inputs`: boxes it was given."""

    inputs: int = 0

    def __call__(self, images_normalized, bboxes_batch, threshold_onet=0.8, nms_onet=0.7, **kwargs):
        self.inputs = len(bboxes_batch)
        outputs = run_chunked(self._model, images_normalized, bboxes_batch, (48, 48))
        offsets, landmarks, scores = outputs
        landmarks = adjust_landmarks(landmarks, bboxes_batch)
        boxes = adjust_bboxes(replace_confidence(bboxes_batch, scores), offsets)
        boxes = np.concatenate([boxes, landmarks], axis=-1)
        boxes = pick_matches(boxes, scores_column=5, score_threshold=threshold_onet)
        return nms(boxes, nms_onet, "min", initial_sort=True)
