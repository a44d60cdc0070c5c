"""SSD target encoding: matching rules and encode -> decode identity with edge.boxes."""

import numpy as np
import pytest
import tensorflow as tf

from edge.anchors import generate_anchors
from edge.boxes import center_to_corners, decode_boxes, encode_boxes, iou_matrix
from train.targets import encode_targets, match_anchors
from train.targets import iou_matrix as tf_iou_matrix


def _corners(*rows):
    return tf.constant(rows, tf.float32)


def test_iou_matches_edge_numpy():
    rng = np.random.default_rng(0)
    a = np.sort(rng.uniform(0, 1, (7, 4)).reshape(7, 2, 2), axis=1).transpose(0, 2, 1).reshape(7, 4)
    b = np.sort(rng.uniform(0, 1, (5, 4)).reshape(5, 2, 2), axis=1).transpose(0, 2, 1).reshape(5, 4)
    np.testing.assert_allclose(tf_iou_matrix(a, b).numpy(), iou_matrix(a, b), atol=1e-6)


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


def test_no_gt_gives_all_background():
    anchors = generate_anchors(96)
    matched = match_anchors(tf.zeros([0, 4]), center_to_corners(anchors)).numpy()
    assert matched.shape == (len(anchors),) and (matched == -1).all()
    loc, cls = encode_targets(tf.zeros([0, 4]), tf.zeros([0], tf.int32), anchors)
    assert loc.shape == (len(anchors), 4) and cls.shape == (len(anchors),)
    assert (cls.numpy() == 0).all() and (loc.numpy() == 0).all()


def test_padding_rows_ignored():
    anchors = generate_anchors(96)
    boxes = np.array([[0.1, 0.1, 0.6, 0.5], [0.0, 0.0, 0.0, 0.0]], np.float32)
    loc_a, cls_a = encode_targets(boxes, np.array([2, -1], np.int32), anchors)
    loc_b, cls_b = encode_targets(boxes[:1], np.array([2], np.int32), anchors)
    np.testing.assert_array_equal(cls_a.numpy(), cls_b.numpy())
    np.testing.assert_array_equal(loc_a.numpy(), loc_b.numpy())
    assert set(np.unique(cls_a.numpy())) == {0, 3}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_encode_then_decode_is_identity(seed):
    rng = np.random.default_rng(seed)
    anchors = generate_anchors((128, 160))
    k = 6
    centre = rng.uniform(0.15, 0.85, (k, 2))
    size = rng.uniform(0.05, 0.6, (k, 2))
    boxes = np.clip(np.concatenate([centre - size / 2, centre + size / 2], 1), 0, 1).astype(np.float32)
    classes = rng.integers(0, 5, k).astype(np.int32)
    loc, cls = encode_targets(boxes, classes, anchors)
    loc, cls = loc.numpy(), cls.numpy()
    positive = cls > 0
    # every GT gets at least its forced anchor
    matched = match_anchors(boxes, center_to_corners(anchors)).numpy()
    assert set(matched[positive]) == set(range(k))
    np.testing.assert_array_equal(cls[positive], classes[matched[positive]] + 1)
    decoded = decode_boxes(loc[positive], anchors[positive])
    np.testing.assert_allclose(decoded, boxes[matched[positive]], atol=1e-4)
    # exactly the NumPy coding of edge.boxes
    np.testing.assert_allclose(
        loc[positive], encode_boxes(boxes[matched[positive]], anchors[positive]), rtol=1e-4, atol=1e-4
    )


def test_works_inside_tf_function_with_unknown_k():
    anchors = generate_anchors(96)

    @tf.function(input_signature=[tf.TensorSpec([None, 4]), tf.TensorSpec([None], tf.int32)])
    def encode(boxes, classes):
        return encode_targets(boxes, classes, anchors)

    _, cls = encode(tf.constant([[0.2, 0.2, 0.7, 0.8]]), tf.constant([0]))
    assert (cls.numpy() == 1).sum() >= 1
    _, cls = encode(tf.zeros([0, 4]), tf.zeros([0], tf.int32))
    assert (cls.numpy() == 0).all()
