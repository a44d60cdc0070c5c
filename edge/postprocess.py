"""SSD post-processing in pure NumPy: score pre-filter, top-k, box decoding and class-aware NMS.

Inputs are one image's raw model outputs; no I/O, no camera, no interpreter.

Formats:
* ``box_deltas`` ``(N, 4)`` ``ty, tx, th, tw`` (see ``edge.boxes``);
* ``class_scores`` ``(N, C+1)`` probabilities with background at index 0;
* ``anchors`` ``(N, 4)`` ``cy, cx, h, w`` normalized;
* returned boxes ``(K, 4)`` float32 normalized ``ymin, xmin, ymax, xmax`` clipped to [0, 1],
  scores ``(K,)`` float32, class ids ``(K,)`` int32 0-based (background excluded), best first.

Semantics match ``tf.image.non_max_suppression`` run per class: a candidate needs
``score > score_threshold``, a box is suppressed by a kept box of the same class when their
``IoU > iou_threshold``, and equal scores keep the lower anchor index first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge.boxes import VARIANCES, decode_boxes

PRE_NMS_TOP_K = 400
"""Candidates (anchor, class pairs) kept after the score filter, before the O(n^2) NMS."""

_EMPTY_BOXES = np.zeros((0, 4), dtype=np.float32)


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _EMPTY_BOXES.copy(), np.zeros((0,), dtype=np.float32), np.zeros((0,), dtype=np.int32)


def _batched_nms_sorted(boxes: np.ndarray, classes: np.ndarray, iou_threshold: float, max_output: int) -> np.ndarray:
    """Class-aware greedy NMS over corner ``boxes`` ``(K, 4)`` float32 sorted best first, ``classes`` ``(K,)`` int.

    Returns kept row indices ``(M,)`` int64 in ascending order (= best first), at most ``max_output``.

    Identical to greedy NMS run per class, but vectorized across classes: candidates are grouped
    by class (score order kept inside a group) and every round keeps the best remaining box of
    *each* class and drops the boxes of that class overlapping it by IoU ``> iou_threshold``.
    The best remaining box of a class after such a round is always kept by greedy NMS, so the
    number of Python-level rounds is the largest number of detections of one class (usually 1-3),
    not the number of candidates or detections.
    """
    num = boxes.shape[0]
    group_order = np.argsort(classes, kind="stable")
    coords = np.empty((5, num), dtype=np.float32)  # ymin, xmin, ymax, xmax, area; one column per candidate
    np.take(boxes.T, group_order, axis=1, out=coords[:4])
    np.multiply(coords[2] - coords[0], coords[3] - coords[1], out=coords[4])
    group = classes[group_order]  # sorted, so searchsorted finds the first box of each class
    ids = group_order
    kept = []
    while True:
        lead = group.searchsorted(group)  # position of the best remaining box of the same class
        leader = lead == np.arange(group.size)
        kept.append(ids[leader])
        if kept[-1].size == group.size:
            break
        lead_coords = coords[:, lead]
        overlap = np.minimum(coords[2:4], lead_coords[2:4])
        overlap -= np.maximum(coords[:2], lead_coords[:2])
        np.maximum(overlap, 0.0, out=overlap)
        inter = overlap[0] * overlap[1]
        union = coords[4] + lead_coords[4]
        union -= inter
        # IoU > t  <=>  inter > t * union; zero-area pairs have inter == 0 and are never suppressed.
        union *= iou_threshold
        survive = inter <= union
        survive[leader] = False
        ids = ids[survive]
        if not ids.size:
            break
        coords, group = coords[:, survive], group[survive]
    keep = np.concatenate(kept) if len(kept) > 1 else kept[0]
    keep.sort()
    return keep[:max_output]


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.5, max_output: int = 100) -> np.ndarray:
    """Single-class greedy non-maximum suppression.

    Args:
        boxes: ``(K, 4)`` corner boxes ``ymin, xmin, ymax, xmax`` (any consistent units).
        scores: ``(K,)`` scores; higher is better.
        iou_threshold: a box is dropped when its IoU with an already kept box is ``> iou_threshold``.
        max_output: at most this many indices are returned.

    Returns:
        ``(M,)`` int64 indices into ``boxes``, best score first (ties: lower index first).
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"nms: boxes must have shape (K, 4), got {boxes.shape}")
    if scores.shape != (boxes.shape[0],):
        raise ValueError(f"nms: scores must have shape ({boxes.shape[0]},), got {scores.shape}")
    if boxes.shape[0] == 0 or max_output <= 0:
        return np.zeros((0,), dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    single_class = np.zeros(boxes.shape[0], dtype=np.int64)
    return order[_batched_nms_sorted(boxes[order], single_class, float(iou_threshold), int(max_output))]


def decode_and_nms(
    box_deltas: np.ndarray,
    class_scores: np.ndarray,
    anchors: np.ndarray,
    score_threshold: float = 0.5,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
    variances: Sequence[float] = VARIANCES,
    pre_nms_top_k: int = PRE_NMS_TOP_K,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn one image's SSD outputs into final detections.

    Args:
        box_deltas: ``(N, 4)`` ``ty, tx, th, tw``.
        class_scores: ``(N, C+1)`` class probabilities, background at index 0.
        anchors: ``(N, 4)`` float ``cy, cx, h, w`` normalized.
        score_threshold: an (anchor, class) pair is a candidate when its score is ``> score_threshold``
            (multi-label: one anchor can be a candidate for several classes).
        iou_threshold: same-class boxes with IoU ``> iou_threshold`` with a better kept box are suppressed.
        max_detections: at most this many detections are returned.
        variances: box coding variances ``(v_y, v_x, v_h, v_w)`` (from the model's metadata).
        pre_nms_top_k: only the best ``pre_nms_top_k`` candidates go through NMS (``<= 0``: all of them).

    Returns:
        ``boxes`` ``(K, 4)`` float32 normalized ``ymin, xmin, ymax, xmax`` clipped to [0, 1],
        ``scores`` ``(K,)`` float32 and ``class_ids`` ``(K,)`` int32 (0-based, background excluded),
        sorted best first.
    """
    class_scores = np.ascontiguousarray(class_scores)
    if class_scores.ndim != 2 or class_scores.shape[1] < 2:
        raise ValueError(f"decode_and_nms: class_scores must have shape (N, C+1) with C >= 1, got {class_scores.shape}")
    num_anchors, num_columns = class_scores.shape
    if np.shape(box_deltas) != (num_anchors, 4):
        raise ValueError(f"decode_and_nms: box_deltas must have shape ({num_anchors}, 4), got {np.shape(box_deltas)}")
    if np.shape(anchors) != (num_anchors, 4):
        raise ValueError(f"decode_and_nms: anchors must have shape ({num_anchors}, 4), got {np.shape(anchors)}")
    if num_anchors == 0 or max_detections <= 0:
        return _empty()

    # Score pre-filter over all (anchor, class) pairs at once; the background column never qualifies.
    candidate = class_scores > score_threshold
    candidate[:, 0] = False
    flat = np.flatnonzero(candidate)
    if not flat.size:
        return _empty()
    scores = class_scores.reshape(-1)[flat]
    if flat.size > pre_nms_top_k > 0:
        # O(n) partition first (a low threshold can leave tens of thousands of candidates).
        top = np.sort(np.argpartition(-scores, pre_nms_top_k - 1)[:pre_nms_top_k])
        flat, scores = flat[top], scores[top]
    order = np.argsort(-scores, kind="stable")
    flat, scores = flat[order], scores[order].astype(np.float32, copy=False)
    anchor_index, class_index = np.divmod(flat, num_columns)

    boxes = decode_boxes(np.asarray(box_deltas)[anchor_index], np.asarray(anchors)[anchor_index], variances)
    np.clip(boxes, 0.0, 1.0, out=boxes)
    keep = _batched_nms_sorted(boxes, class_index, float(iou_threshold), int(max_detections))
    return (
        boxes[keep].astype(np.float32, copy=False),
        scores[keep],
        (class_index[keep] - 1).astype(np.int32),
    )
