"""train.matching: SSD anchor matching rules on hand-made boxes (threshold, forced and bipartite matches)."""

import tensorflow as tf

from edge.boxes import iou_matrix
from train.matching import match_anchors


def _corners(*rows):
    return tf.constant(rows, tf.float32)


def test_threshold_respected():
    anchors = _corners(
        [0.0, 0.0, 0.5, 0.5],  # IoU 1.0 with the GT
        [0.0, 0.0, 0.5, 0.35],  # IoU 0.7
        [0.0, 0.0, 0.5, 0.2],  # IoU 0.4 -> below threshold
        [0.6, 0.6, 1.0, 1.0],  # no overlap
    )
    matched = match_anchors(_corners([0.0, 0.0, 0.5, 0.5]), anchors, iou_threshold=0.5).numpy()
    assert matched.tolist() == [0, 0, -1, -1]
    matched = match_anchors(_corners([0.0, 0.0, 0.5, 0.5]), anchors, iou_threshold=0.75).numpy()
    assert matched.tolist() == [0, -1, -1, -1]


def test_best_anchor_forced_below_threshold():
    anchors = _corners([0.0, 0.0, 0.2, 0.2], [0.5, 0.5, 1.0, 1.0], [0.0, 0.5, 0.3, 1.0])
    gt = _corners([0.05, 0.05, 0.45, 0.45])  # best IoU with anchor 0 is 0.25 < 0.5
    matched = match_anchors(gt, anchors, iou_threshold=0.5).numpy()
    assert matched.tolist() == [0, -1, -1]


def test_two_gts_competing_for_one_anchor():
    anchors = _corners([0.0, 0.0, 0.4, 0.4], [0.0, 0.3, 0.4, 0.7], [0.6, 0.6, 1.0, 1.0])
    gt = _corners([0.0, 0.05, 0.4, 0.45], [0.0, 0.1, 0.4, 0.5])
    iou = iou_matrix(gt.numpy(), anchors.numpy())
    # Anchor 0 is the best anchor of both GTs; GT 0 (higher IoU) gets it, GT 1 its best remaining one.
    assert iou[0, 0] > iou[1, 0] >= 0.5 and iou[1, 0] > iou[1, 1] > 0
    matched = match_anchors(gt, anchors).numpy()
    assert matched.tolist() == [0, 1, -1]


def test_forced_match_beats_threshold_match():
    # Anchor 0 is the best anchor of GT 1 (its only overlap), though GT 0 overlaps it more.
    anchors = _corners([0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.45], [0.9, 0.9, 1.0, 1.0])
    gt = _corners([0.0, 0.0, 0.5, 0.46], [0.4, 0.4, 0.6, 0.6])
    iou = iou_matrix(gt.numpy(), anchors.numpy())
    assert iou[0, 0] > 0.5 and 0 < iou[1, 0] < 0.5 and iou[1, 1] < iou[1, 0]
    matched = match_anchors(gt, anchors).numpy()
    assert matched[0] == 1  # forced to GT 1 although GT 0 has higher IoU there
    assert matched[1] == 0  # GT 0's own best anchor (IoU ~0.98) is forced to it
    assert matched[2] == -1


def test_shared_best_anchor_goes_to_higher_iou():
    anchors = _corners([0.0, 0.0, 0.5, 0.5], [0.9, 0.9, 1.0, 1.0])
    gt = _corners([0.0, 0.0, 0.3, 0.3], [0.0, 0.0, 0.4, 0.4])  # both best-match anchor 0, GT 1 more so
    assert match_anchors(gt, anchors).numpy().tolist() == [1, -1]
