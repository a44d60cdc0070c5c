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

from collections.abc import Callable, Sequence

import numpy as np

from edge.boxes import VARIANCES, decode_boxes

PRE_NMS_TOP_K = 400
"""Candidates (anchor, class pairs) kept after the score filter, before NMS (whose work grows as candidates x
the largest class's candidates)."""

_EMPTY_BOXES = np.zeros((0, 4), dtype=np.float32)


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _EMPTY_BOXES.copy(), np.zeros((0,), dtype=np.float32), np.zeros((0,), dtype=np.int32)


_SIGNS = np.array([[-1.0], [-1.0], [1.0], [1.0]], dtype=np.float32)
"""Turns rows ``ymin, xmin, ymax, xmax`` into ``-ymin, -xmin, ymax, xmax``: one ``np.minimum`` of two boxes
then gives ``-max(ymin), -max(xmin), min(ymax), min(xmax)``, the corners of their intersection."""

_POWERS_OF_TWO = 2.0 ** np.arange(53)
"""``2**r`` as float64: its dot product with a 0/1 column of at most 53 rows is the column's exact bitmask."""

_BAND_PAIRS = 1 << 18
"""Box pairs compared per vectorized step: bounds the temporary arrays to a few MiB."""


def _suppression_masks(
    corners: np.ndarray, depth: int, lo: int, hi: int, iou_threshold: float, areas: np.ndarray | None = None
) -> list[int]:
    """For boxes ``lo <= i < hi``: which of itself and the ``depth`` boxes after it box ``i`` removes if kept.

    ``corners``: ``(4, K + depth)`` float32 rows ``-ymin, -xmin, ymax, xmax`` of ``K`` boxes, then ``depth``
    zero columns; ``areas``: ``(K + depth,)`` their areas, or None when ``lo, hi = 0, K`` (then they come
    out of the pass itself). Returns one int per box ``i`` (a float holding an exact integer when
    ``depth < 53``): bit 0 is always set (the box itself), bit ``r > 0`` when
    ``IoU(box i, box i + r) > iou_threshold``. Pairs reaching past box ``K - 1`` mean nothing.
    """
    count = hi - lo
    item = corners.itemsize
    # following[c, r, i] = corners[c, lo + i + r]: box lo + i + r next to box lo + i (r = 0: the box itself).
    following = np.ndarray((4, depth + 1, count), np.float32, corners, lo * item, (corners.strides[0], item, item))
    bounds = np.minimum(corners[:, None, lo:hi], following)
    sides = bounds[2:]
    sides += bounds[:2]  # height and width of each intersection
    np.maximum(sides, np.zeros(sides.shape, dtype=np.float32), out=sides)
    inter = sides[0] * sides[1]  # (depth + 1, count); row 0: each box's own area
    if areas is None:  # all boxes in one pass: row 0 has every area, and reading on past it only meets padding
        areas = inter.reshape(-1)
    # union[r, i] = area of box lo + i + r + area of box lo + i - inter
    union = np.add(np.ndarray((depth + 1, count), np.float32, areas, lo * item, (item, item)), areas[lo:hi])
    union -= inter
    # IoU > t  <=>  inter > t * union; zero-area pairs have inter == 0 and are never suppressed.
    union *= iou_threshold
    suppress = inter > union
    suppress[0] = True
    if depth < _POWERS_OF_TWO.size:
        return (_POWERS_OF_TWO[: depth + 1] @ suppress).tolist()
    width = (depth + 8) // 8
    packed = np.packbits(suppress, axis=0, bitorder="little").tobytes("F")  # box i's bytes: [i * width, ...)
    return [int.from_bytes(packed[i * width : (i + 1) * width], "little") for i in range(count)]


def grouped_nms(boxes: np.ndarray, classes: np.ndarray, iou_threshold: float = 0.5) -> list[int]:
    """Class-aware greedy NMS over candidates grouped by class (the NMS step of ``decode_and_nms``).

    Args:
        boxes: ``(K, 4)`` corner boxes ``ymin, xmin, ymax, xmax`` (``ymin <= ymax``, ``xmin <= xmax``, any
            consistent units).
        classes: ``(K,)`` non-negative ints in non-decreasing order; inside a class the candidates are
            sorted best first.
        iou_threshold: a box is suppressed by a kept box of its class when their IoU is ``> iou_threshold``.

    Returns:
        Positions of the kept candidates in ascending order (class by class, best first inside a class).

    Identical to greedy NMS run per class. A class's candidates are contiguous, so every same-class pair
    lies within ``D`` = (largest class size - 1) positions: one vectorized pass over that band of pairs
    does all the IoU tests NMS can need. Each box's row of the band becomes a Python int bitmask, and the
    greedy pass loops over the kept boxes only: the lowest remaining bit of a class is its best remaining
    box, which is kept and clears the bits of the boxes it suppresses.
    """
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"grouped_nms: boxes must have shape (K, 4), got {boxes.shape}")
    num = boxes.shape[0]
    if num == 0:
        return []
    counts = np.bincount(classes).tolist()
    depth = max(counts) - 1
    if depth == 0:
        return list(range(num))
    corners = np.zeros((4, num + depth), dtype=np.float32)
    np.multiply(boxes.T, _SIGNS, out=corners[:, :num])
    step = max(_BAND_PAIRS // (depth + 1), 1)
    if step >= num:
        masks = _suppression_masks(corners, depth, 0, num, iou_threshold)
    else:  # a few boxes at a time, to bound the temporary arrays
        sides = corners[2:] + corners[:2]
        np.maximum(sides, 0.0, out=sides)
        areas = sides[0] * sides[1]
        masks = []
        for lo in range(0, num, step):
            masks += _suppression_masks(corners, depth, lo, min(lo + step, num), iou_threshold, areas)
    kept = []
    start = 0
    for size in counts:
        if size == 1:
            kept.append(start)
        elif size:
            remaining = (1 << size) - 1  # bit j: box start + j is neither kept nor suppressed yet
            while remaining:
                position = (remaining & -remaining).bit_length() - 1  # the best box left
                kept.append(start + position)
                remaining &= ~(int(masks[start + position]) << position)
        start += size
    return kept


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
    kept = grouped_nms(boxes[order], np.zeros(boxes.shape[0], dtype=np.intp), float(iou_threshold))
    return order[kept[:max_output]]


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

    anchors = np.asarray(anchors)
    box_deltas = np.asarray(box_deltas)
    return _class_aware_nms(
        lambda index: decode_boxes(box_deltas[index], anchors[index], variances),
        class_scores,
        1,
        score_threshold,
        iou_threshold,
        max_detections,
        pre_nms_top_k,
    )


def _class_aware_nms(
    boxes_of: Callable[[np.ndarray], np.ndarray],
    class_scores: np.ndarray,
    first_class: int,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
    pre_nms_top_k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score filter, top-k, class-aware NMS over ``class_scores (N, columns)``; columns before ``first_class``
    (a background) never qualify. ``boxes_of(anchor indices)`` gives their ``(K, 4)`` ``ymin, xmin, ymax, xmax``.
    Class ids come back as ``column - first_class``."""
    num_columns = class_scores.shape[1]
    # Score pre-filter over all (anchor, class) pairs at once; the background column never qualifies.
    candidate = class_scores > score_threshold
    candidate[:, :first_class] = False
    flat = np.flatnonzero(candidate)
    if not flat.size:
        return _empty()
    scores = class_scores.reshape(-1)[flat]
    if flat.size > pre_nms_top_k > 0:
        # O(n) partition first (a low threshold can leave tens of thousands of candidates).
        top = np.sort(np.argpartition(-scores, pre_nms_top_k - 1)[:pre_nms_top_k])
        flat, scores = flat[top], scores[top]
    anchor_index, class_index = np.divmod(flat, num_columns)
    # The one sort: by class, best first inside a class (ties: lower anchor first), as grouped_nms wants.
    order = np.lexsort((-scores, class_index))
    anchor_index, class_index = anchor_index[order], class_index[order]

    boxes = np.asarray(boxes_of(anchor_index), dtype=np.float32)
    np.clip(boxes, 0.0, 1.0, out=boxes)
    keep = np.asarray(grouped_nms(boxes, class_index, float(iou_threshold)), dtype=np.intp)
    candidate_index = order[keep]
    # Best first; equal scores keep candidate order (anchor, then class).
    keep = keep[np.lexsort((candidate_index, -scores[candidate_index]))[:max_detections]]
    return (
        boxes[keep].astype(np.float32, copy=False),
        scores[order[keep]].astype(np.float32, copy=False),
        (class_index[keep] - first_class).astype(np.int32),
    )


def decode_yolo(
    predictions: np.ndarray,
    input_size: tuple[int, int],
    score_threshold: float = 0.5,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
    pre_nms_top_k: int = PRE_NMS_TOP_K,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's Ultralytics-style YOLO output -> final detections, with the same NMS as ``decode_and_nms``.

    Args:
        predictions: ``(4 + C, N)`` (the export's layout) or ``(N, 4 + C)``, a leading batch axis of 1 allowed:
            per candidate ``cx, cy, w, h`` then ``C`` class scores in [0, 1] (no objectness, no background).
            Coordinates normalized to [0, 1], or in input pixels (told apart by a maximum above 2).
        input_size: ``(height, width)`` of the model input, to normalize pixel coordinates.
        score_threshold, iou_threshold, max_detections, pre_nms_top_k: as in ``decode_and_nms``.

    Returns the usual ``(boxes (K, 4) normalized ymin, xmin, ymax, xmax, scores (K,), class_ids (K,) int32)``.
    """
    array = np.asarray(predictions, dtype=np.float32)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or min(array.shape) < 5:
        raise ValueError(f"decode_yolo: predictions must have shape (4 + C, N) or (N, 4 + C), got {array.shape}")
    if array.shape[0] < array.shape[1]:
        array = array.T
    if array.shape[0] == 0 or max_detections <= 0:
        return _empty()
    centers = array[:, :4]
    class_scores = np.ascontiguousarray(np.where(np.isfinite(array[:, 4:]), array[:, 4:], 0.0))
    height, width = input_size
    scale = np.array([width, height, width, height], np.float32) if np.nanmax(np.abs(centers)) > 2 else 1.0
    centers = centers / scale

    def boxes_of(index: np.ndarray) -> np.ndarray:
        cx, cy, w, h = centers[index].T
        return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=1)

    return _class_aware_nms(boxes_of, class_scores, 0, score_threshold, iou_threshold, max_detections, pre_nms_top_k)


def select_detections(
    boxes: np.ndarray,
    classes: np.ndarray,
    scores: np.ndarray,
    count: np.ndarray | float,
    score_threshold: float = 0.5,
    max_detections: int = 100,
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's ``TFLite_Detection_PostProcess``-style outputs -> the detections worth keeping.

    Args:
        boxes: ``(K, 4)`` normalized ``ymin, xmin, ymax, xmax`` (a leading batch axis of 1 is dropped).
        classes: ``(K,)`` class ids as floats (0-based, background excluded).
        scores: ``(K,)`` scores in [0, 1].
        count: how many leading slots are valid (shape ``()``, ``(1,)`` or ``(1, 1)``).
        score_threshold: keep ``score > score_threshold``.
        max_detections: keep at most this many, in slot order (the op writes them best first).
        num_classes: when given, class ids outside ``[0, num_classes)`` are dropped.

    Returns the usual ``(boxes (M, 4) clipped to [0, 1], scores (M,) float32, class_ids (M,) int32)``. Slots
    past ``count`` and non-finite values are ignored, so a model that leaves slots unwritten is read safely.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    classes = np.asarray(classes, dtype=np.float32).reshape(-1)
    if not boxes.shape[0] == scores.shape[0] == classes.shape[0]:
        raise ValueError(
            f"select_detections: boxes {boxes.shape}, classes {classes.shape} and scores {scores.shape} "
            "must have the same number of slots"
        )
    counted = float(np.asarray(count, dtype=np.float32).reshape(-1)[0])
    valid = int(min(max(counted, 0.0), scores.shape[0])) if np.isfinite(counted) else 0
    boxes, scores, classes = boxes[:valid], scores[:valid], classes[:valid]
    keep = np.isfinite(scores) & (scores > score_threshold) & np.isfinite(classes) & np.isfinite(boxes).all(axis=1)
    class_ids = np.rint(np.where(np.isfinite(classes), classes, -1)).astype(np.int32)
    keep &= class_ids >= 0
    if num_classes is not None:
        keep &= class_ids < num_classes
    index = np.flatnonzero(keep)[: max(int(max_detections), 0)]
    return np.clip(boxes[index], 0.0, 1.0), scores[index], class_ids[index]
