"""Anchor matching for SSD targets in TensorFlow ops (graph-compatible, used inside ``tf.data`` maps).

Boxes are ``(K, 4)`` float32 normalized ``ymin, xmin, ymax, xmax`` (ground truths) and ``(N, 4)`` anchors as
corner boxes (``train.boxes.center_to_corners`` of ``edge.anchors.generate_anchors``).

Matching (SSD / TF OD API): every anchor whose best IoU with a ground truth is ``>= iou_threshold``
takes that ground truth; in addition each ground truth's best anchor is forced to it, even below the
threshold. Forced matches win over threshold matches. The forced step is a greedy bipartite match
(as the TF OD API's bipartite matcher): when two ground truths share the same best anchor, the one
with the higher IoU gets it and the other gets its best remaining anchor, so no object is left
without a positive anchor.
"""

from __future__ import annotations

import tensorflow as tf

from train.boxes import iou_matrix


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
