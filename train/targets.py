"""SSD training targets in TensorFlow ops (graph-compatible, used inside ``tf.data`` maps).

Formats (see ``docs/ARCHITECTURE.md``):

* ground-truth boxes: ``(K, 4)`` float32 normalized ``ymin, xmin, ymax, xmax``;
* ground-truth classes: ``(K,)`` int32, 0-based; a class ``< 0`` marks a padding row, which is ignored
  (the pipeline pads every image to a fixed number of boxes with class ``-1``);
* anchors: ``(N, 4)`` float32 ``cy, cx, h, w`` (``edge.anchors.generate_anchors``);
* box targets: ``(N, 4)`` float32 ``ty, tx, th, tw`` — the same coding as ``edge.boxes.encode_boxes``;
* class targets: ``(N,)`` int32, ``0`` = background, ``1..C`` = class + 1.

Matching is ``train.matching.match_anchors``; box math is ``train.boxes`` (the TF twin of ``edge.boxes``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from edge.boxes import VARIANCES
from train.boxes import center_to_corners, encode_boxes
from train.matching import match_anchors


def encode_targets(
    gt_boxes: tf.Tensor,
    gt_classes: tf.Tensor,
    anchors: tf.Tensor | np.ndarray,
    variances: Sequence[float] = VARIANCES,
    iou_threshold: float = 0.5,
) -> tuple[tf.Tensor, tf.Tensor]:
    """SSD regression and classification targets for one image.

    Args:
        gt_boxes: ``(K, 4)`` float32 normalized ``ymin, xmin, ymax, xmax``.
        gt_classes: ``(K,)`` int32 0-based classes; rows with class ``< 0`` are padding and ignored.
        anchors: ``(N, 4)`` float32 ``cy, cx, h, w``.
        variances: the four coding variances (``edge.boxes.VARIANCES``).
        iou_threshold: matching threshold (see ``match_anchors``).

    Returns:
        ``loc_targets`` ``(N, 4)`` float32 ``ty, tx, th, tw`` (zeros on background anchors) and
        ``cls_targets`` ``(N,)`` int32 (0 = background, ``class + 1`` on matched anchors).
    """
    gt_boxes = tf.reshape(tf.cast(gt_boxes, tf.float32), [-1, 4])
    gt_classes = tf.reshape(tf.cast(gt_classes, tf.int32), [-1])
    valid = gt_classes >= 0
    gt_boxes = tf.boolean_mask(gt_boxes, valid)
    gt_classes = tf.boolean_mask(gt_classes, valid)
    anchors = tf.convert_to_tensor(anchors, tf.float32)

    matched = match_anchors(gt_boxes, center_to_corners(anchors), iou_threshold)
    positive = matched >= 0
    safe_index = tf.maximum(matched, 0)
    # Padding with one dummy row keeps tf.gather valid when K == 0 (all anchors are background then).
    boxes = tf.gather(tf.concat([gt_boxes, tf.zeros([1, 4])], 0), safe_index)
    classes = tf.gather(tf.concat([gt_classes, tf.zeros([1], tf.int32)], 0), safe_index)

    deltas = encode_boxes(boxes, anchors, variances)
    loc_targets = tf.where(positive[:, None], deltas, 0.0)
    cls_targets = tf.where(positive, classes + 1, 0)
    return loc_targets, cls_targets
