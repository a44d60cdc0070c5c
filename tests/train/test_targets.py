"""SSD target encoding: matching rules and encode -> decode identity with edge.boxes."""

import numpy as np
import pytest
import tensorflow as tf

from edge.anchors import generate_anchors
from edge.boxes import center_to_corners, decode_boxes, encode_boxes
from train.matching import match_anchors
from train.targets import encode_targets


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
