"""Box formats and SSD box coding in TensorFlow ops: the graph twins of ``edge.boxes`` (same names, same formats).

Used inside ``tf.data`` maps, where NumPy cannot run: ``train.targets`` (anchor matching and target coding) and
``train.augment`` (crop windows). Formats as in ``edge.boxes``: corner boxes ``(..., 4)`` normalized
``ymin, xmin, ymax, xmax``; centre boxes / anchors ``(..., 4)`` ``cy, cx, h, w``; deltas ``(N, 4)``
``ty, tx, th, tw`` with ``edge.boxes.VARIANCES``. ``tests/train/test_boxes.py`` checks each against its twin.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from edge.boxes import VARIANCES

MIN_SIZE = 1e-8
"""Zero-size boxes are floored at this before ``log`` (as in ``edge.boxes.encode_boxes``)."""


def _check_boxes(boxes, name: str) -> tf.Tensor:
    boxes = tf.convert_to_tensor(boxes)
    if boxes.shape.rank == 0 or (boxes.shape.rank is not None and boxes.shape[-1] not in (None, 4)):
        raise ValueError(f"{name} must have shape (..., 4), got {boxes.shape}")
    return tf.cast(boxes, tf.float32)


def corners_to_center(boxes: tf.Tensor) -> tf.Tensor:
    """``ymin, xmin, ymax, xmax`` -> ``cy, cx, h, w``; shape ``(..., 4)`` preserved, float32."""
    ymin, xmin, ymax, xmax = tf.unstack(_check_boxes(boxes, "boxes"), axis=-1)
    return tf.stack([(ymin + ymax) / 2, (xmin + xmax) / 2, ymax - ymin, xmax - xmin], axis=-1)


def center_to_corners(boxes: tf.Tensor) -> tf.Tensor:
    """``cy, cx, h, w`` -> ``ymin, xmin, ymax, xmax``; shape ``(..., 4)`` preserved, float32."""
    cy, cx, h, w = tf.unstack(_check_boxes(boxes, "boxes"), axis=-1)
    return tf.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)


def box_areas(boxes: tf.Tensor) -> tf.Tensor:
    """Areas of corner boxes ``(..., 4)`` -> ``(...)`` float32; inverted boxes count as zero."""
    boxes = _check_boxes(boxes, "boxes")
    return tf.maximum(boxes[..., 2] - boxes[..., 0], 0.0) * tf.maximum(boxes[..., 3] - boxes[..., 1], 0.0)


def iou_matrix(boxes_a: tf.Tensor, boxes_b: tf.Tensor) -> tf.Tensor:
    """Pairwise IoU of corner boxes ``(N, 4)`` x ``(M, 4)`` -> ``(N, M)`` float32; zero-area pairs give 0."""
    a = _check_boxes(boxes_a, "boxes_a")[:, None, :]
    b = _check_boxes(boxes_b, "boxes_b")[None, :, :]
    inter_h = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    inter_w = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = inter_h * inter_w
    return tf.math.divide_no_nan(inter, box_areas(a) + box_areas(b) - inter)


def encode_boxes(boxes: tf.Tensor, anchors: tf.Tensor, variances: Sequence[float] = VARIANCES) -> tf.Tensor:
    """Encode corner ``boxes`` ``(N, 4)`` against ``anchors`` ``(N, 4)`` (cy, cx, h, w) into deltas ``(N, 4)``.

    ``ty = (cy - cy_a) / h_a / v0``, ``tx = (cx - cx_a) / w_a / v1``, ``th = log(h / h_a) / v2``,
    ``tw = log(w / w_a) / v3``; zero-size boxes are floored at ``MIN_SIZE``.
    """
    cy, cx, h, w = tf.unstack(corners_to_center(boxes), axis=-1)
    acy, acx, ah, aw = tf.unstack(_check_boxes(anchors, "anchors"), axis=-1)
    v = tf.constant(variances, tf.float32)
    h = tf.maximum(h, MIN_SIZE)
    w = tf.maximum(w, MIN_SIZE)
    return tf.stack(
        [(cy - acy) / ah / v[0], (cx - acx) / aw / v[1], tf.math.log(h / ah) / v[2], tf.math.log(w / aw) / v[3]],
        axis=-1,
    )
