"""SSD default boxes: a hand-computed golden, counts and layout for several input sizes."""

import math

import numpy as np
import pytest

from edge.anchors import AnchorConfig, boxes_per_location, feature_map_shapes, generate_anchors, num_anchors


def test_tiny_config_matches_hand_computed_golden():
    # 32x32 input, two layers: stride-16 map is 2x2, stride-32 map is 1x1.
    # Scales: s0 = 0.2, s1 = 0.9, s2 = 1.0 (extra). Lowest layer (reduced): (0.1, 1), (0.2, 2), (0.2, 1/2).
    # Layer 1: (0.9, 1), (0.9, 2), (sqrt(0.9 * 1.0), 1). h = s / sqrt(a), w = s * sqrt(a).
    config = AnchorConfig(min_scale=0.2, max_scale=0.9, aspect_ratios=(1.0, 2.0), num_layers=2)
    anchors = generate_anchors(32, config)
    r2 = math.sqrt(2.0)
    lowest = [(0.1, 0.1), (0.2 / r2, 0.2 * r2), (0.2 * r2, 0.2 / r2)]
    expected = []
    for cy in (0.25, 0.75):
        for cx in (0.25, 0.75):
            expected += [(cy, cx, h, w) for h, w in lowest]
    s_interp = math.sqrt(0.9)
    expected += [(0.5, 0.5, 0.9, 0.9), (0.5, 0.5, 0.9 / r2, 0.9 * r2), (0.5, 0.5, s_interp, s_interp)]
    np.testing.assert_allclose(anchors, np.array(expected, dtype=np.float32), atol=1e-6)


@pytest.mark.parametrize(
    ("size", "maps", "count"),
    [
        (300, [19, 10, 5, 3, 2, 1], 1917),
        (128, [8, 4, 2, 1, 1, 1], 8 * 8 * 3 + (16 + 4 + 1 + 1 + 1) * 6),
        (160, [10, 5, 3, 2, 1, 1], 100 * 3 + (25 + 9 + 4 + 1 + 1) * 6),
        (192, [12, 6, 3, 2, 1, 1], 144 * 3 + (36 + 9 + 4 + 1 + 1) * 6),
        (224, [14, 7, 4, 2, 1, 1], 196 * 3 + (49 + 16 + 4 + 1 + 1) * 6),
    ],
)
def test_counts_and_feature_maps_for_square_inputs(size, maps, count):
    assert [h for h, _ in feature_map_shapes(size)] == maps
    assert num_anchors(size) == count
    assert generate_anchors(size).shape == (count, 4)


def test_default_layout_is_ssd_mobilenet_v1():
    assert boxes_per_location(AnchorConfig()) == [3, 6, 6, 6, 6, 6]


def test_non_square_input_keeps_ratio_one_boxes_square_in_pixels():
    height, width = 160, 224
    anchors = generate_anchors((height, width))
    assert feature_map_shapes((height, width))[0] == (10, 14)
    assert anchors.shape[0] == num_anchors((height, width))
    first = anchors[0]  # lowest layer, scale 0.1, ratio 1
    assert first[2] * height == pytest.approx(first[3] * width, rel=1e-5)


def test_anchor_order_is_row_column_box_and_centres_inside_image():
    anchors = generate_anchors(160)
    per_cell = 3
    cy, cx = anchors[: 10 * per_cell : per_cell, 0], anchors[: 10 * per_cell : per_cell, 1]
    assert np.allclose(cy, 0.05) and np.allclose(cx, (np.arange(10) + 0.5) / 10)
    assert (anchors[:, :2] > 0).all() and (anchors[:, :2] < 1).all() and (anchors[:, 2:] > 0).all()


def test_invalid_config_is_rejected_with_the_field_named():
    with pytest.raises(ValueError, match="min_scale"):
        AnchorConfig(min_scale=0.9, max_scale=0.2)
    with pytest.raises(ValueError, match="unknown fields"):
        AnchorConfig.from_dict({"min_scael": 0.1})
