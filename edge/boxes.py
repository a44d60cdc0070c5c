"""Box formats and SSD box coding, pure NumPy — shared by training (targets) and the edge (decoding).

Canonical box format: ``(N, 4)`` normalized ``ymin, xmin, ymax, xmax`` (as TFLite SSD outputs).
Anchor / center format: ``(N, 4)`` ``cy, cx, h, w``.
Deltas (what the model's box head predicts): ``(N, 4)`` ``ty, tx, th, tw`` — the center-size
coding of the TF OD API / ``TFLite_Detection_PostProcess`` with variances ``(0.1, 0.1, 0.2, 0.2)``
(its scale factors ``y=10, x=10, h=5, w=5``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

VARIANCES: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)
MAX_LOG_SCALE = float(np.log(1000.0 / 16.0))
"""``th``/``tw`` (after variance scaling) are clipped to this before ``exp`` so decoding never overflows."""


def _check_boxes(boxes: np.ndarray, name: str) -> np.ndarray:
    boxes = np.asarray(boxes)
    if boxes.ndim < 1 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape (..., 4), got {boxes.shape}")
    return boxes


def corners_to_center(boxes: np.ndarray) -> np.ndarray:
    """``ymin, xmin, ymax, xmax`` -> ``cy, cx, h, w``; shape ``(..., 4)`` preserved."""
    boxes = _check_boxes(boxes, "boxes")
    ymin, xmin, ymax, xmax = np.moveaxis(boxes, -1, 0)
    return np.stack([(ymin + ymax) / 2, (xmin + xmax) / 2, ymax - ymin, xmax - xmin], axis=-1)


def center_to_corners(boxes: np.ndarray) -> np.ndarray:
    """``cy, cx, h, w`` -> ``ymin, xmin, ymax, xmax``; shape ``(..., 4)`` preserved."""
    boxes = _check_boxes(boxes, "boxes")
    cy, cx, h, w = np.moveaxis(boxes, -1, 0)
    return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)


def encode_boxes(boxes: np.ndarray, anchors: np.ndarray, variances: Sequence[float] = VARIANCES) -> np.ndarray:
    """Encode corner ``boxes`` ``(N, 4)`` against ``anchors`` ``(N, 4)`` (cy, cx, h, w) into deltas ``(N, 4)``.

    ``ty = (cy - cy_a) / h_a / v0``, ``tx = (cx - cx_a) / w_a / v1``,
    ``th = log(h / h_a) / v2``, ``tw = log(w / w_a) / v3``. Zero-size boxes are floored at 1e-8.
    """
    boxes = _check_boxes(boxes, "boxes").astype(np.float64)
    anchors = _check_boxes(anchors, "anchors").astype(np.float64)
    center = corners_to_center(boxes)
    cy, cx = center[..., 0], center[..., 1]
    h = np.maximum(center[..., 2], 1e-8)
    w = np.maximum(center[..., 3], 1e-8)
    acy, acx, ah, aw = np.moveaxis(anchors, -1, 0)
    v = np.asarray(variances, dtype=np.float64)
    deltas = np.stack(
        [(cy - acy) / ah / v[0], (cx - acx) / aw / v[1], np.log(h / ah) / v[2], np.log(w / aw) / v[3]], axis=-1
    )
    return deltas.astype(np.float32)


def decode_boxes(deltas: np.ndarray, anchors: np.ndarray, variances: Sequence[float] = VARIANCES) -> np.ndarray:
    """Decode ``deltas`` ``(N, 4)`` (ty, tx, th, tw) against ``anchors`` ``(N, 4)`` into corner boxes ``(N, 4)``.

    Scaled ``th``/``tw`` are clipped to ``MAX_LOG_SCALE`` before ``exp``; boxes are not clipped to
    the image here (``edge.postprocess`` does that after NMS candidates are chosen).
    """
    deltas = _check_boxes(deltas, "deltas").astype(np.float32, copy=False)
    anchors = _check_boxes(anchors, "anchors").astype(np.float32, copy=False)
    v = np.asarray(variances, dtype=np.float32)
    sizes = anchors[..., 2:]  # (h, w) pairs: the columns work two at a time (fewer NumPy calls per frame)
    centres = deltas[..., :2] * v[:2] * sizes + anchors[..., :2]
    half_sizes = np.exp(np.minimum(deltas[..., 2:] * v[2:], MAX_LOG_SCALE)) * sizes
    half_sizes *= 0.5
    corners = np.empty(np.broadcast_shapes(deltas.shape, anchors.shape), dtype=np.float32)
    np.subtract(centres, half_sizes, out=corners[..., :2])
    np.add(centres, half_sizes, out=corners[..., 2:])
    return corners


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """Areas of corner boxes ``(..., 4)``; inverted boxes count as zero."""
    boxes = _check_boxes(boxes, "boxes")
    return np.maximum(boxes[..., 2] - boxes[..., 0], 0) * np.maximum(boxes[..., 3] - boxes[..., 1], 0)


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of corner boxes ``(N, 4)`` x ``(M, 4)`` -> ``(N, M)``; zero-area pairs give 0."""
    a = _check_boxes(boxes_a, "boxes_a")[:, None, :]
    b = _check_boxes(boxes_b, "boxes_b")[None, :, :]
    inter_h = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0)
    inter_w = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0)
    inter = inter_h * inter_w
    union = box_areas(a) + box_areas(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0).astype(np.float32)


def normalized_to_pixels(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Normalized ``ymin, xmin, ymax, xmax`` -> pixel ``xmin, ymin, xmax, ymax`` (float32) in a ``height x width`` image."""
    boxes = _check_boxes(boxes, "boxes")
    return np.stack(
        [boxes[..., 1] * width, boxes[..., 0] * height, boxes[..., 3] * width, boxes[..., 2] * height], axis=-1
    ).astype(np.float32)


def pixels_to_normalized(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixel ``xmin, ymin, xmax, ymax`` -> normalized ``ymin, xmin, ymax, xmax`` (float32)."""
    boxes = _check_boxes(boxes, "boxes")
    return np.stack(
        [boxes[..., 1] / height, boxes[..., 0] / width, boxes[..., 3] / height, boxes[..., 2] / width], axis=-1
    ).astype(np.float32)


def lores_window(lores_hw: tuple[int, int], main_hw: tuple[int, int]) -> np.ndarray:
    """The part of the main image a lores image shows: ``(4,)`` float32 normalized ``ymin, xmin, ymax, xmax`` of main.

    ``lores_hw``/``main_hw`` are ``(height, width)`` of two streams taken at the same instant. Assumption
    (picamera2 / libcamera on the Pi): both streams come from one ISP input, and a lores stream whose aspect
    ratio differs from main's is cropped to keep its own aspect ratio, so lores shows the largest centred crop of
    main's field of view with lores' aspect ratio. Equal aspect ratios give the whole image ``[0, 0, 1, 1]``.
    """
    lores_height, lores_width = lores_hw
    main_height, main_width = main_hw
    scale = min(main_width / lores_width, main_height / lores_height)
    margin_y = (1.0 - lores_height * scale / main_height) / 2
    margin_x = (1.0 - lores_width * scale / main_width) / 2
    return np.array([margin_y, margin_x, 1.0 - margin_y, 1.0 - margin_x], dtype=np.float32)


def boxes_in_window_to_image(boxes: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Normalized ``ymin, xmin, ymax, xmax`` boxes ``(..., 4)`` relative to ``window`` -> the same boxes (float32)
    normalized to the whole image, where ``window`` ``(4,)`` is normalized ``ymin, xmin, ymax, xmax`` of that image
    (e.g. ``lores_window``). The whole-image window ``[0, 0, 1, 1]`` leaves boxes unchanged."""
    boxes = _check_boxes(boxes, "boxes")
    ymin, xmin, ymax, xmax = (float(v) for v in window)
    origin = np.array([ymin, xmin, ymin, xmin], dtype=np.float32)
    size = np.array([ymax - ymin, xmax - xmin, ymax - ymin, xmax - xmin], dtype=np.float32)
    return (boxes * size + origin).astype(np.float32)
