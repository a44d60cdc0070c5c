"""SSD augmentation: boxes stay on their pixels through expand/crop/flip/resize; shapes fixed, no NaN."""

import numpy as np
import pytest
import tensorflow as tf

from train.augment import (
    AugmentConfig,
    _colour_matrix,
    apply_window,
    augment,
    flip_horizontal,
    photometric_distort,
    resize_window,
    sample_window,
)
from train.boxes import iou_matrix

OUT = (96, 128)
GEOMETRIC = AugmentConfig(photometric_prob=0.0)
FULL = AugmentConfig()


def _scene():
    """Dark 120x200 image with a red and a green rectangle and their boxes."""
    image = np.full((120, 200, 3), 10, np.uint8)
    image[30:90, 50:110, 0] = 250  # box A: red
    image[10:40, 150:190, 1] = 250  # box B: green
    boxes = np.array([[30, 50, 90, 110], [10, 150, 40, 190], [0, 0, 0, 0]], np.float32) / [120, 200, 120, 200]
    classes = np.array([0, 1, -1], np.int32)
    return image, boxes.astype(np.float32), classes


def _region(image, channel):
    """Pixel box ``ymin, xmin, ymax, xmax`` (edges) of pixels more than half-way bright in ``channel``."""
    ys, xs = np.nonzero(image[..., channel] > 130)
    if len(ys) == 0:
        return None
    return np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1], np.float32)


@pytest.fixture(scope="module")
def augment_fn():
    image, boxes, classes = _scene()
    return tf.function(lambda seed, config: augment(image, boxes, classes, OUT, config, seed), reduce_retracing=True)


def test_resize_window_matches_tf_resize_on_full_window():
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3)).astype(np.float32)
    ours = resize_window(image, tf.constant([0.0, 0.0, 1.0, 1.0]), (24, 40)).numpy()
    reference = tf.image.resize(image, (24, 40), method="bilinear").numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-2)


def test_resize_window_fills_outside_with_mean():
    image = np.full((10, 10, 3), 200, np.uint8)
    out = resize_window(image, tf.constant([-1.0, -1.0, 1.0, 1.0]), (20, 20), fill=(1.0, 2.0, 3.0)).numpy()
    np.testing.assert_allclose(out[:9, :9], np.broadcast_to([1.0, 2.0, 3.0], (9, 9, 3)), atol=1e-4)
    np.testing.assert_allclose(out[11:, 11:], 200.0, atol=1e-4)


def test_boxes_follow_pixels_through_expand_crop_flip(augment_fn):
    image, boxes, classes = _scene()
    checked = {0: 0, 1: 0}
    dropped = 0
    for i in range(60):
        out, out_boxes, out_classes = (t.numpy() for t in augment_fn(tf.constant([i, 3]), GEOMETRIC))
        scale = np.array(OUT * 2, np.float32)
        for row in (0, 1):
            if out_classes[row] < 0:
                dropped += 1
                np.testing.assert_array_equal(out_boxes[row], 0.0)
                continue
            assert out_classes[row] == classes[row]
            region = _region(out, channel=row)
            assert region is not None, f"seed {i}: box {row} kept but its pixels are gone"
            # 1 px: the half-way threshold puts the bilinear edge within a pixel
            np.testing.assert_allclose(out_boxes[row] * scale, region, atol=1.0, err_msg=f"seed {i} box {row}")
            checked[row] += 1
        assert out_classes[2] == -1 and (out_boxes[2] == 0).all()
    assert checked[0] > 10 and checked[1] > 5 and dropped > 0  # the sampling actually exercised both paths


def test_output_shapes_fixed_and_finite_with_photometric(augment_fn):
    config = AugmentConfig(photometric_prob=1.0)
    for i in range(10):
        out, out_boxes, out_classes = augment_fn(tf.constant([i, 9]), config)
        assert out.shape == (*OUT, 3) and out.dtype == tf.float32
        assert out_boxes.shape == (3, 4) and out_classes.shape == (3,)
        assert np.isfinite(out.numpy()).all() and np.isfinite(out_boxes.numpy()).all()
        assert out.numpy().min() >= 0.0 and out.numpy().max() <= 255.0
        valid = out_boxes.numpy()[out_classes.numpy() >= 0]
        assert ((valid >= 0) & (valid <= 1)).all()
        assert (valid[:, 2] > valid[:, 0]).all() and (valid[:, 3] > valid[:, 1]).all()


def test_same_seed_same_result_different_seed_differs(augment_fn):
    a = augment_fn(tf.constant([5, 1]), FULL)
    b = augment_fn(tf.constant([5, 1]), FULL)
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    outputs = [augment_fn(tf.constant([s, 1]), FULL)[0].numpy() for s in range(4)]
    assert any(not np.array_equal(outputs[0], o) for o in outputs[1:])


def test_flip_mirrors_image_and_boxes():
    image, boxes, classes = _scene()
    config = AugmentConfig(photometric_prob=0.0, expand_prob=0.0, crop_prob=0.0, flip_prob=1.0)
    out, out_boxes, out_classes = augment(image, boxes, classes, (120, 200), config, tf.constant([0, 0]))
    np.testing.assert_allclose(out.numpy(), image[:, ::-1].astype(np.float32), atol=1e-3)
    expected = boxes.copy()
    expected[:2, 1], expected[:2, 3] = 1 - boxes[:2, 3], 1 - boxes[:2, 1]
    np.testing.assert_allclose(out_boxes.numpy(), expected, atol=1e-6)
    np.testing.assert_array_equal(out_classes.numpy(), classes)
    twice_image, twice_boxes = flip_horizontal(*flip_horizontal(image, boxes, classes), classes)
    np.testing.assert_array_equal(twice_image.numpy(), image)
    np.testing.assert_allclose(twice_boxes.numpy(), boxes, atol=1e-6)


def test_apply_window_keeps_only_centred_boxes_and_clips():
    window = tf.constant([0.0, 0.0, 0.5, 0.5])
    boxes = tf.constant(
        [
            [0.1, 0.1, 0.3, 0.3],  # inside
            [0.3, 0.3, 0.6, 0.6],  # centre 0.45 inside -> clipped
            [0.4, 0.4, 0.9, 0.9],  # centre 0.65 outside -> dropped
            [0.0, 0.0, 0.0, 0.0],  # padding
        ]
    )
    out_boxes, out_classes = apply_window(boxes, tf.constant([3, 1, 2, -1]), window)
    assert out_classes.numpy().tolist() == [3, 1, -1, -1]
    np.testing.assert_allclose(out_boxes.numpy()[:2], [[0.2, 0.2, 0.6, 0.6], [0.6, 0.6, 1.0, 1.0]], atol=1e-6)
    assert (out_boxes.numpy()[2:] == 0).all()


@pytest.mark.parametrize("min_iou", [0.3, 0.7])
def test_crop_respects_min_iou(min_iou):
    _, boxes, classes = _scene()
    config = AugmentConfig(expand_prob=0.0, crop_prob=1.0, min_iou_choices=(min_iou,))
    cropped = 0
    for i in range(30):
        window = sample_window(boxes, classes, tf.constant([120, 200]), config, tf.constant([i, 2])).numpy()
        if np.allclose(window, [0, 0, 1, 1]):
            continue
        cropped += 1
        assert iou_matrix(window[None], boxes[:2]).numpy().max() >= min_iou - 1e-6
        scale = window[2:] - window[:2]
        assert (scale >= 0.3 - 1e-6).all() and (scale <= 1 + 1e-6).all() and (window >= -1e-6).all()
        aspect = scale[0] * 120 / (scale[1] * 200)
        assert 0.5 - 1e-5 <= aspect <= 2.0 + 1e-5
    assert cropped > 0


def test_crop_falls_back_to_original_when_impossible():
    boxes = tf.constant([[0.0, 0.0, 0.05, 0.05]])  # IoU >= 0.9 with a crop of scale >= 0.3 is impossible
    config = AugmentConfig(expand_prob=0.0, crop_prob=1.0, min_iou_choices=(0.9,), crop_trials=5)
    window = sample_window(boxes, tf.constant([0]), tf.constant([100, 100]), config, tf.constant([1, 1]))
    np.testing.assert_array_equal(window.numpy(), [0.0, 0.0, 1.0, 1.0])


def test_expand_window_contains_image():
    config = AugmentConfig(expand_prob=1.0, crop_prob=0.0, max_expand=3.0)
    for i in range(10):
        window = sample_window(tf.zeros([1, 4]), tf.constant([-1]), tf.constant([50, 50]), config, tf.constant([i, 0]))
        y0, x0, y1, x1 = window.numpy()
        assert y0 <= 0 and x0 <= 0 and y1 >= 1 and x1 >= 1
        assert 1 <= y1 - y0 <= 3 + 1e-5 and abs((y1 - y0) - (x1 - x0)) < 1e-5


def test_photometric_changes_colours_within_range():
    image = np.random.default_rng(1).uniform(0, 255, (32, 32, 3)).astype(np.float32)
    unchanged = photometric_distort(image, AugmentConfig(photometric_prob=0.0), tf.constant([0, 0])).numpy()
    np.testing.assert_allclose(unchanged, image, atol=0.05)
    changed = photometric_distort(image, AugmentConfig(photometric_prob=1.0), tf.constant([0, 0])).numpy()
    assert np.abs(changed - image).mean() > 1.0
    assert changed.min() >= 0 and changed.max() <= 255 and np.isfinite(changed).all()


def test_colour_matrix_keeps_grey_and_rotates_hue():
    np.testing.assert_allclose(_colour_matrix(tf.constant(1.0), tf.constant(0.0)).numpy(), np.eye(3), atol=1e-6)
    grey = np.array([80.0, 80.0, 80.0], np.float32)
    for saturation, hue in ((0.5, 0.05), (1.5, -0.05), (1.0, 0.3)):
        matrix = _colour_matrix(tf.constant(saturation), tf.constant(hue)).numpy()
        np.testing.assert_allclose(matrix @ grey, grey, atol=1e-3)
    third = _colour_matrix(tf.constant(1.0), tf.constant(1.0 / 3.0)).numpy()
    np.testing.assert_allclose(third @ [255.0, 0.0, 0.0], [0.0, 255.0, 0.0], atol=1e-3)  # red -> green
    grey_out = _colour_matrix(tf.constant(0.0), tf.constant(0.0)).numpy() @ [255.0, 0.0, 0.0]
    np.testing.assert_allclose(grey_out, [0.299 * 255] * 3, atol=1e-3)  # saturation 0 -> luma


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="flip_prob"):
        AugmentConfig(flip_prob=1.5)
    with pytest.raises(ValueError, match="max_expand"):
        AugmentConfig(max_expand=0.5)
    with pytest.raises(ValueError, match="crop_scale"):
        AugmentConfig(crop_scale=(0.3, 1.5))
