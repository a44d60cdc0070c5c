"""Multibox loss: hard-negative balance, zero-positive images, finite gradients, perfect predictions."""

import numpy as np
import tensorflow as tf

from train.loss import MultiboxLoss, hard_negative_mask, smooth_l1

NUM_CLASSES = 3


def _batch(num_anchors=200, positives=(5, 0, 40), seed=0):
    rng = np.random.default_rng(seed)
    cls = np.zeros((len(positives), num_anchors), np.int32)
    for b, p in enumerate(positives):
        idx = rng.choice(num_anchors, p, replace=False)
        cls[b, idx] = rng.integers(1, NUM_CLASSES + 1, p)
    loc = rng.normal(0, 1, (len(positives), num_anchors, 4)).astype(np.float32) * (cls[..., None] > 0)
    logits = rng.normal(0, 2, (len(positives), num_anchors, NUM_CLASSES + 1)).astype(np.float32)
    deltas = rng.normal(0, 1, (len(positives), num_anchors, 4)).astype(np.float32)
    return tf.constant(loc), tf.constant(cls), tf.constant(deltas), tf.constant(logits)


def test_smooth_l1_values():
    x = tf.constant([-3.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_allclose(smooth_l1(x).numpy(), [2.5, 0.125, 0.0, 0.125, 1.5])


def test_negative_count_is_three_to_one_capped_by_available():
    num_anchors = 100
    positives = (5, 0, 40, 90)
    positive = np.zeros((len(positives), num_anchors), bool)
    for b, p in enumerate(positives):
        positive[b, :p] = True
    loss = np.random.default_rng(1).uniform(0, 5, positive.shape).astype(np.float32)
    mask = hard_negative_mask(tf.constant(loss), tf.constant(positive), 3.0, 8).numpy()
    counts = mask.sum(axis=1).tolist()
    assert counts == [15, 8, 60, 10]  # 3*5; min_negatives; 3*40; only 10 negatives exist
    assert not (mask & positive).any()
    for b in range(len(positives)):  # the chosen ones are the hardest negatives
        neg_losses = loss[b][~positive[b]]
        chosen = loss[b][mask[b]]
        assert chosen.min() >= np.sort(neg_losses)[::-1][len(chosen) - 1] - 1e-6


def test_loss_matches_numpy_reference():
    loc, cls, deltas, logits = _batch()
    result = MultiboxLoss()(loc, cls, deltas, logits)
    lg = logits.numpy()
    log_probs = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_probs, cls.numpy()[..., None], -1)[..., 0]
    pos = cls.numpy() > 0
    cls_sum = 0.0
    for b in range(pos.shape[0]):
        k = max(3 * pos[b].sum(), 8)
        neg = np.sort(ce[b][~pos[b]])[::-1][:k]
        cls_sum += ce[b][pos[b]].sum() + neg.sum()
    d = np.abs(deltas.numpy() - loc.numpy())
    sl1 = np.where(d < 1, 0.5 * d**2, d - 0.5).sum(-1)
    loc_sum = (sl1 * pos).sum()
    n = pos.sum()
    np.testing.assert_allclose(result.classification.numpy(), cls_sum / n, rtol=1e-5)
    np.testing.assert_allclose(result.localization.numpy(), loc_sum / n, rtol=1e-5)
    np.testing.assert_allclose(result.total.numpy(), (cls_sum + loc_sum) / n, rtol=1e-5)


def test_zero_positive_batch_is_defined_and_nonzero():
    loc, cls, deltas, logits = _batch(positives=(0, 0))
    result = MultiboxLoss(min_negatives=8)(loc, cls, deltas, logits)
    assert np.isfinite(result.total.numpy()) and result.total.numpy() > 0
    assert result.localization.numpy() == 0.0
    # normalized by max(positives, 1) = 1: the sum of the 8 hardest background CEs per image
    lg = logits.numpy()
    ce = np.log(np.exp(lg).sum(-1)) - lg[..., 0]
    expected = sum(np.sort(ce[b])[::-1][:8].sum() for b in range(2))
    np.testing.assert_allclose(result.classification.numpy(), expected, rtol=1e-5)


def test_gradients_finite_and_only_on_used_anchors():
    loc, cls, deltas, logits = _batch(positives=(3, 0))
    deltas, logits = tf.Variable(deltas), tf.Variable(logits)
    with tf.GradientTape() as tape:
        total = MultiboxLoss()(loc, cls, deltas, logits).total
    g_deltas, g_logits = tape.gradient(total, [deltas, logits])
    assert np.isfinite(g_deltas.numpy()).all() and np.isfinite(g_logits.numpy()).all()
    used = np.abs(g_logits.numpy()).sum(-1) > 0
    assert used.sum(axis=1).tolist() == [3 + 9, 8]
    assert (np.abs(g_deltas.numpy()).sum(-1) > 0).sum() == 3  # localization only on positives


def test_training_toward_perfect_predictions_drives_loss_to_zero():
    loc, cls, _, _ = _batch(positives=(6, 2, 0))
    perfect_logits = tf.one_hot(cls, NUM_CLASSES + 1) * 30.0
    result = MultiboxLoss()(loc, cls, loc, perfect_logits)
    assert result.total.numpy() < 1e-6

    deltas = tf.Variable(tf.zeros_like(loc))
    logits = tf.Variable(tf.zeros(cls.shape + (NUM_CLASSES + 1,)))
    loss_fn = MultiboxLoss()
    optimizer = tf.keras.optimizers.Adam(0.1)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            total = loss_fn(loc, cls, deltas, logits).total
        optimizer.apply_gradients(zip(tape.gradient(total, [deltas, logits]), [deltas, logits], strict=True))
        return total

    losses = [float(step()) for _ in range(400)]
    assert losses[-1] < 0.05 * losses[0]
    assert losses[-1] < 0.1


def test_distributed_normalization_uses_global_positives():
    loc, cls, deltas, logits = _batch(positives=(4, 10))
    single = MultiboxLoss()(loc, cls, deltas, logits).total.numpy()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])  # one replica: contract must hold trivially
    with strategy.scope():
        per_replica = strategy.run(lambda *a: MultiboxLoss()(*a).total, args=(loc, cls, deltas, logits))
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None).numpy()
    np.testing.assert_allclose(total, single, rtol=1e-6)
