"""train.boxes: hand-computed goldens, all-pairs round trips, and parity with its NumPy twin edge.boxes."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from edge import boxes as np_boxes
from train import boxes as tf_boxes


def _random_corners(rng, count: int) -> np.ndarray:
    centre = rng.uniform(0.1, 0.9, (count, 2))
    size = rng.uniform(0.0, 0.5, (count, 2))
    return np.concatenate([centre - size / 2, centre + size / 2], 1).astype(np.float32)


def test_hand_computed_goldens():
    corners = np.array([[0.0, 0.0, 0.5, 0.5], [0.25, 0.25, 0.75, 0.75]], np.float32)
    np.testing.assert_allclose(tf_boxes.corners_to_center(corners), [[0.25, 0.25, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]])
    # overlap 0.25 x 0.25 = 1/16 of two 1/4 boxes: IoU = (1/16) / (1/2 - 1/16) = 1/7
    np.testing.assert_allclose(tf_boxes.iou_matrix(corners, corners), [[1, 1 / 7], [1 / 7, 1]], atol=1e-6)
    anchor = np.array([[0.5, 0.5, 0.5, 0.5]], np.float32)
    # centre shifted by a quarter of the anchor height, half the size: ty = 0.25 / 0.1, th = log(0.5) / 0.2
    box = np.array([[0.375, 0.25, 0.625, 0.75]], np.float32)
    np.testing.assert_allclose(tf_boxes.encode_boxes(box, anchor), [[0.0, 0.0, np.log(0.5) / 0.2, 0.0]], atol=1e-6)
    np.testing.assert_allclose(tf_boxes.box_areas([[0.0, 0.0, 0.5, 0.2], [0.5, 0.5, 0.4, 0.6]]), [0.1, 0.0])


def test_all_pairs_round_trips():
    rng = np.random.default_rng(0)
    corners = _random_corners(rng, 16)
    formats = {"corners": corners, "center": tf_boxes.corners_to_center(corners).numpy()}
    to = {("corners", "center"): tf_boxes.corners_to_center, ("center", "corners"): tf_boxes.center_to_corners}
    for src, dst in itertools.permutations(formats, 2):
        back = to[dst, src](to[src, dst](formats[src]))
        np.testing.assert_allclose(back, formats[src], atol=1e-6, err_msg=f"{src} -> {dst} -> {src}")


@pytest.mark.parametrize("name", ["corners_to_center", "center_to_corners", "box_areas"])
def test_unary_functions_match_edge_boxes(name):
    boxes = _random_corners(np.random.default_rng(1), 9)
    np.testing.assert_allclose(getattr(tf_boxes, name)(boxes).numpy(), getattr(np_boxes, name)(boxes), atol=1e-6)


def test_iou_and_encode_match_edge_boxes_including_zero_area():
    rng = np.random.default_rng(2)
    a, b = _random_corners(rng, 7), _random_corners(rng, 5)
    a[0] = [0.3, 0.3, 0.3, 0.6]  # zero area
    np.testing.assert_allclose(tf_boxes.iou_matrix(a, b).numpy(), np_boxes.iou_matrix(a, b), atol=1e-6)
    anchors = tf_boxes.corners_to_center(_random_corners(rng, 7)).numpy()
    anchors[:, 2:] = np.maximum(anchors[:, 2:], 0.05)
    np.testing.assert_allclose(
        tf_boxes.encode_boxes(a, anchors).numpy(), np_boxes.encode_boxes(a, anchors), rtol=1e-4, atol=1e-3
    )


def test_a_last_axis_other_than_four_is_a_value_error():
    with pytest.raises(ValueError, match=r"boxes must have shape \(\.\.\., 4\)"):
        tf_boxes.corners_to_center(tf.zeros([3, 5]))
    with pytest.raises(ValueError, match="boxes_b"):
        tf_boxes.iou_matrix(tf.zeros([3, 4]), tf.zeros([2, 3]))
