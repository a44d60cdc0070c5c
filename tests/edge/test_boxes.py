"""Box formats and SSD box coding: round trips and hand-computed values."""

import numpy as np
import pytest

from edge.anchors import generate_anchors
from edge.boxes import (
    MAX_LOG_SCALE,
    boxes_in_window_to_image,
    center_to_corners,
    corners_to_center,
    decode_boxes,
    encode_boxes,
    iou_matrix,
    lores_window,
    normalized_to_pixels,
    pixels_to_normalized,
)


def random_boxes(rng, n):
    ymin, xmin = rng.uniform(0, 0.8, n), rng.uniform(0, 0.8, n)
    h, w = rng.uniform(0.02, 0.2, n), rng.uniform(0.02, 0.2, n)
    return np.stack([ymin, xmin, ymin + h, xmin + w], axis=1).astype(np.float32)


def test_encode_decode_round_trip_on_random_boxes():
    rng = np.random.default_rng(0)
    anchors = generate_anchors(300)
    boxes = random_boxes(rng, len(anchors))
    np.testing.assert_allclose(decode_boxes(encode_boxes(boxes, anchors), anchors), boxes, atol=1e-5)


def test_encode_hand_computed():
    anchor = np.array([[0.5, 0.5, 0.2, 0.4]], np.float32)
    box = np.array([[0.42, 0.3, 0.62, 0.9]], np.float32)  # cy 0.52, cx 0.6, h 0.2, w 0.6
    expected = [(0.52 - 0.5) / 0.2 / 0.1, (0.6 - 0.5) / 0.4 / 0.1, 0.0, np.log(0.6 / 0.4) / 0.2]
    np.testing.assert_allclose(encode_boxes(box, anchor)[0], expected, atol=1e-5)


def test_format_conversions_round_trip():
    rng = np.random.default_rng(1)
    boxes = random_boxes(rng, 50)
    np.testing.assert_allclose(center_to_corners(corners_to_center(boxes)), boxes, atol=1e-6)
    np.testing.assert_allclose(pixels_to_normalized(normalized_to_pixels(boxes, 480, 640), 480, 640), boxes, atol=1e-6)
    px = normalized_to_pixels(np.array([[0.1, 0.2, 0.5, 0.6]]), 100, 200)
    np.testing.assert_allclose(px, [[40, 10, 120, 50]])


def test_huge_deltas_stay_finite():
    anchors = generate_anchors(128)[:4]
    deltas = np.full((4, 4), 1e6, np.float32)
    decoded = decode_boxes(deltas, anchors)
    assert np.isfinite(decoded).all()
    assert (decoded[:, 2] - decoded[:, 0] <= anchors[:, 2] * np.exp(MAX_LOG_SCALE) + 1e-3).all()


def test_iou_matrix_values_and_degenerate_boxes():
    a = np.array([[0, 0, 1, 1], [0, 0, 0, 0]], np.float32)
    b = np.array([[0, 0, 1, 1], [0, 0, 0.5, 1], [2, 2, 3, 3]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b), [[1, 0.5, 0], [0, 0, 0]], atol=1e-6)


def test_wrong_shape_raises():
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        corners_to_center(np.zeros((3, 5)))


def _lores_box_on_main(box: np.ndarray, lores_hw: tuple[int, int], main_hw: tuple[int, int]) -> np.ndarray:
    """Pixel box on lores -> pixel box on main, through the normalized form the runtime keeps."""
    window = lores_window(lores_hw, main_hw)
    return normalized_to_pixels(boxes_in_window_to_image(pixels_to_normalized(box, *lores_hw), window), *main_hw)


def test_lores_window_hand_computed():
    box = np.array([[10.0, 5.0, 30.0, 25.0]], np.float32)  # pixel xmin, ymin, xmax, ymax on lores
    # same aspect ratio (100x50 on 400x200): the whole image, a plain x4 scale
    assert lores_window((50, 100), (200, 400)).tolist() == [0.0, 0.0, 1.0, 1.0]
    np.testing.assert_allclose(_lores_box_on_main(box, (50, 100), (200, 400)), [[40.0, 20.0, 120.0, 100.0]], atol=1e-4)
    # wider lores (100x50 = 2:1) on a 4:3 main (400x300): main's centred 400x200 band, scale 4, 50 px above it
    np.testing.assert_allclose(lores_window((50, 100), (300, 400)), [1 / 6, 0.0, 5 / 6, 1.0], atol=1e-6)
    np.testing.assert_allclose(_lores_box_on_main(box, (50, 100), (300, 400)), [[40.0, 70.0, 120.0, 150.0]], atol=1e-4)
    # square lores (50x50) on 16:9 main (320x180): main's centred 180x180 square, scale 3.6, 70 px to its left
    np.testing.assert_allclose(_lores_box_on_main(box, (50, 50), (180, 320)), [[106.0, 18.0, 178.0, 90.0]], atol=1e-4)
    # the whole lores image is the crop
    whole = boxes_in_window_to_image(np.array([[0, 0, 1, 1]], np.float32), lores_window((50, 100), (300, 400)))
    np.testing.assert_allclose(normalized_to_pixels(whole, 300, 400), [[0.0, 50.0, 400.0, 250.0]], atol=1e-4)
    assert boxes_in_window_to_image(np.zeros((0, 4), np.float32), np.array([0, 0, 1, 1])).shape == (0, 4)
    with pytest.raises(ValueError, match="shape"):
        boxes_in_window_to_image(np.zeros((2, 3)), np.array([0, 0, 1, 1]))
