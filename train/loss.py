"""SSD multibox loss: softmax cross-entropy with 3:1 hard-negative mining + smooth L1 on positives.

Shapes: ``loc_targets`` / ``box_deltas`` ``(B, N, 4)`` float32 (``ty, tx, th, tw``), ``cls_targets``
``(B, N)`` int32 (0 = background, ``1..C``), ``class_logits`` ``(B, N, C + 1)`` float32 (pre-softmax,
the model's ``class_logits`` layer).

Normalization and ``tf.distribute``: the summed classification and localization losses are divided
by the number of positive anchors in the *global* batch (at least 1). Inside a replica context with
more than one replica the positive count is all-reduced, so each replica returns
``replica_sum / global_positives``; summing those over replicas (what ``optimizer.apply_gradients``
does with per-replica gradients under ``MirroredStrategy`` / ``MultiWorkerMirroredStrategy``) gives
exactly the single-device loss. Outside ``tf.distribute`` the local count is used.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf


class MultiboxLossResult(NamedTuple):
    """Scalar float32 losses, already divided by the number of positives."""

    total: tf.Tensor
    classification: tf.Tensor
    localization: tf.Tensor


def smooth_l1(diff: tf.Tensor, delta: float = 1.0) -> tf.Tensor:
    """Elementwise Huber / smooth-L1: ``0.5 x^2 / delta`` if ``|x| < delta`` else ``|x| - 0.5 delta``."""
    abs_diff = tf.abs(diff)
    return tf.where(abs_diff < delta, 0.5 * tf.square(diff) / delta, abs_diff - 0.5 * delta)


def hard_negative_mask(
    background_loss: tf.Tensor, positive: tf.Tensor, neg_pos_ratio: float, min_negatives: int
) -> tf.Tensor:
    """Pick the hardest negatives per image.

    Args:
        background_loss: ``(B, N)`` float32 cross-entropy of each anchor against the background class.
        positive: ``(B, N)`` bool positive anchors.
        neg_pos_ratio: negatives per positive (3 in SSD).
        min_negatives: negatives kept in an image with few or no positives.

    Returns:
        ``(B, N)`` bool mask of the ``min(max(ratio * pos, min_negatives), available)`` negatives with
        the highest background loss in each image.
    """
    negative = tf.logical_not(positive)
    num_pos = tf.reduce_sum(tf.cast(positive, tf.int32), axis=1)
    num_available = tf.reduce_sum(tf.cast(negative, tf.int32), axis=1)
    wanted = tf.maximum(tf.cast(tf.round(neg_pos_ratio * tf.cast(num_pos, tf.float32)), tf.int32), min_negatives)
    num_neg = tf.minimum(wanted, num_available)
    ranking = tf.where(negative, tf.stop_gradient(background_loss), -1.0)  # CE >= 0, so positives rank last
    order = tf.argsort(ranking, axis=1, direction="DESCENDING", stable=True)
    rank = tf.argsort(order, axis=1, stable=True)  # rank of each anchor, 0 = hardest
    return tf.logical_and(rank < num_neg[:, None], negative)


def _global_positive_count(num_pos: tf.Tensor) -> tf.Tensor:
    context = tf.distribute.get_replica_context()  # None in a cross-replica context
    if context is not None and context.num_replicas_in_sync > 1:
        return context.all_reduce(tf.distribute.ReduceOp.SUM, num_pos)
    return num_pos


class MultiboxLoss:
    """SSD loss; call it as ``loss(loc_targets, cls_targets, box_deltas, class_logits)``.

    Args:
        neg_pos_ratio: hard negatives kept per positive anchor.
        min_negatives: hardest negatives kept in an image with fewer positives (so an image without
            objects still teaches "background").
        loc_weight: weight of the localization term in ``total``.
        delta: smooth-L1 transition point.
    """

    def __init__(
        self, neg_pos_ratio: float = 3.0, min_negatives: int = 8, loc_weight: float = 1.0, delta: float = 1.0
    ) -> None:
        if neg_pos_ratio <= 0:
            raise ValueError(f"MultiboxLoss.neg_pos_ratio must be > 0, got {neg_pos_ratio}")
        if min_negatives < 0:
            raise ValueError(f"MultiboxLoss.min_negatives must be >= 0, got {min_negatives}")
        self.neg_pos_ratio = float(neg_pos_ratio)
        self.min_negatives = int(min_negatives)
        self.loc_weight = float(loc_weight)
        self.delta = float(delta)

    def __call__(
        self, loc_targets: tf.Tensor, cls_targets: tf.Tensor, box_deltas: tf.Tensor, class_logits: tf.Tensor
    ) -> MultiboxLossResult:
        """Loss of one (per-replica) batch; shapes in the module docstring."""
        loc_targets = tf.cast(loc_targets, tf.float32)
        cls_targets = tf.cast(cls_targets, tf.int32)
        box_deltas = tf.cast(box_deltas, tf.float32)
        class_logits = tf.cast(class_logits, tf.float32)

        positive = cls_targets > 0
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=cls_targets, logits=class_logits)
        # On negatives the label is 0, so their CE *is* the background loss used for ranking.
        negative = hard_negative_mask(cross_entropy, positive, self.neg_pos_ratio, self.min_negatives)
        used = tf.cast(tf.logical_or(positive, negative), tf.float32)
        cls_sum = tf.reduce_sum(cross_entropy * used)

        loc_per_anchor = tf.reduce_sum(smooth_l1(box_deltas - loc_targets, self.delta), axis=-1)
        loc_sum = tf.reduce_sum(loc_per_anchor * tf.cast(positive, tf.float32))

        num_pos = tf.reduce_sum(tf.cast(positive, tf.float32))
        normalizer = tf.maximum(_global_positive_count(num_pos), 1.0)
        cls_loss = cls_sum / normalizer
        loc_loss = loc_sum / normalizer
        return MultiboxLossResult(cls_loss + self.loc_weight * loc_loss, cls_loss, loc_loss)
