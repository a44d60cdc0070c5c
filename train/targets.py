"""SSD training targets in TensorFlow ops (graph-compatible, used inside ``tf.data`` maps).

Formats (see ``docs/ARCHITECTURE.md``):

* ground-truth boxes: ``(K, 4)`` float32 normalized ``ymin, xmin, ymax, xmax``;
* ground-truth classes: ``(K,)`` int32, 0-based; a class ``< 0`` marks a padding row, which is ignored
  (the pipeline pads every image to a fixed number of boxes with class ``-1``);
* anchors: ``(N, 4)`` float32 ``cy, cx, h, w`` (``edge.anchors.generate_anchors``);
* box targets: ``(N, 4)`` float32 ``ty, tx, th, tw`` — the same coding as ``edge.boxes.encode_boxes``;
* class targets: ``(N,)`` int32, ``0`` = background, ``1..C`` = class + 1.

Matching (SSD / TF OD API): every anchor whose best IoU with a ground truth is ``>= iou_threshold``
takes that ground truth; in addition each ground truth's best anchor is forced to it, even below the
threshold. Forced matches win over threshold matches. The forced step is a greedy bipartite match
(as the TF OD API's bipartite matcher): when two ground truths share the same best anchor, the one
with the higher IoU gets it and the other gets its best remaining anchor, so no object is left
without a positive anchor.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from edge.boxes import VARIANCES

_MIN_SIZE = 1e-8  # same floor as edge.boxes.encode_boxes


def center_to_corners(boxes: tf.Tensor) -> tf.Tensor:
    """``(..., 4)`` ``cy, cx, h, w`` -> ``(..., 4)`` ``ymin, xmin, ymax, xmax`` (TF twin of ``edge.boxes``)."""
    cy, cx, h, w = tf.unstack(boxes, axis=-1)
    return tf.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)


def iou_matrix(boxes_a: tf.Tensor, boxes_b: tf.Tensor) -> tf.Tensor:
    """Pairwise IoU of corner boxes ``(N, 4)`` x ``(M, 4)`` -> ``(N, M)`` float32; zero-area pairs give 0."""
    a = tf.cast(boxes_a, tf.float32)[:, None, :]
    b = tf.cast(boxes_b, tf.float32)[None, :, :]
    inter_h = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    inter_w = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = inter_h * inter_w
    area_a = tf.maximum(a[..., 2] - a[..., 0], 0.0) * tf.maximum(a[..., 3] - a[..., 1], 0.0)
    area_b = tf.maximum(b[..., 2] - b[..., 0], 0.0) * tf.maximum(b[..., 3] - b[..., 1], 0.0)
    union = area_a + area_b - inter
    return tf.math.divide_no_nan(inter, union)


def _bipartite_match(iou: tf.Tensor) -> tf.Tensor:
    """Greedy bipartite matching on ``iou`` ``(N, K)``: ``(N,)`` int32 GT index per anchor or ``-1``.

    Repeatedly takes the highest-IoU (anchor, GT) pair among unused anchors and GTs, so every GT with
    any overlap gets its own anchor: its best one, or its best remaining one if a GT with higher IoU
    took that.
    """
    num_anchors, num_gt = tf.shape(iou)[0], tf.shape(iou)[1]

    def body(i, forced, anchor_used, gt_used):
        masked = tf.where(anchor_used[:, None] | gt_used[None, :], -1.0, iou)
        flat = tf.argmax(tf.reshape(masked, [-1]), output_type=tf.int32)
        anchor, gt = flat // num_gt, flat % num_gt
        ok = masked[anchor, gt] > 0.0
        forced = tf.where(ok, tf.tensor_scatter_nd_update(forced, [[anchor]], [gt]), forced)
        anchor_used = tf.where(ok, tf.tensor_scatter_nd_update(anchor_used, [[anchor]], [True]), anchor_used)
        gt_used = tf.tensor_scatter_nd_update(gt_used, [[gt]], [True])
        return i + 1, forced, anchor_used, gt_used

    _, forced, _, _ = tf.while_loop(
        lambda i, *_: i < num_gt,
        body,
        (
            tf.constant(0),
            tf.fill([num_anchors], tf.constant(-1, tf.int32)),
            tf.zeros([num_anchors], tf.bool),
            tf.zeros([num_gt], tf.bool),
        ),
    )
    return forced


def match_anchors(gt_boxes: tf.Tensor, anchor_corners: tf.Tensor, iou_threshold: float = 0.5) -> tf.Tensor:
    """Match anchors to ground truths.

    Args:
        gt_boxes: ``(K, 4)`` float32 corner boxes (``K`` may be 0).
        anchor_corners: ``(N, 4)`` float32 anchors as corner boxes.
        iou_threshold: anchors with best IoU ``>=`` this are matched.

    Returns:
        ``(N,)`` int32 index of the matched ground truth, ``-1`` for unmatched anchors. A ground truth
        with zero overlap with every anchor (e.g. a zero-area box) forces nothing.
    """
    gt_boxes = tf.reshape(tf.cast(gt_boxes, tf.float32), [-1, 4])
    anchor_corners = tf.reshape(tf.cast(anchor_corners, tf.float32), [-1, 4])
    num_anchors = tf.shape(anchor_corners)[0]

    def _match() -> tf.Tensor:
        iou = iou_matrix(anchor_corners, gt_boxes)  # (N, K)
        best_gt = tf.argmax(iou, axis=1, output_type=tf.int32)
        best_gt_iou = tf.reduce_max(iou, axis=1)
        matched = tf.where(best_gt_iou >= iou_threshold, best_gt, -1)
        forced_gt = _bipartite_match(iou)
        return tf.where(forced_gt >= 0, forced_gt, matched)

    return tf.cond(
        tf.shape(gt_boxes)[0] > 0,
        _match,
        lambda: tf.fill([num_anchors], tf.constant(-1, tf.int32)),
    )


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

    v = tf.constant(variances, tf.float32)
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    acy, acx, ah, aw = tf.unstack(anchors, axis=-1)
    h = tf.maximum(ymax - ymin, _MIN_SIZE)
    w = tf.maximum(xmax - xmin, _MIN_SIZE)
    deltas = tf.stack(
        [
            ((ymin + ymax) / 2 - acy) / ah / v[0],
            ((xmin + xmax) / 2 - acx) / aw / v[1],
            tf.math.log(h / ah) / v[2],
            tf.math.log(w / aw) / v[3],
        ],
        axis=-1,
    )
    loc_targets = tf.where(positive[:, None], deltas, 0.0)
    cls_targets = tf.where(positive, classes + 1, 0)
    return loc_targets, cls_targets
