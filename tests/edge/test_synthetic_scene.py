"""Synthetic scene renderer: exact visible-pixel boxes, occlusion, truncation, determinism, variety."""

import subprocess
import sys

import numpy as np
import pytest

from edge import synthetic_scene
from edge.synthetic_scene import CLASS_NAMES, SceneObject, random_background, random_objects, random_scene, render_scene

H, W = 120, 160


def _black() -> np.ndarray:
    return np.zeros((H, W, 3), np.uint8)


def _pixel_bbox(mask: np.ndarray) -> np.ndarray:
    """Normalized ymin, xmin, ymax, xmax of the True pixels of ``mask`` (pixel edges)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return np.array([rows[0] / H, cols[0] / W, (rows[-1] + 1) / H, (cols[-1] + 1) / W], np.float32)


def test_class_names():
    assert CLASS_NAMES == ("circle", "triangle", "square", "star")


def test_edge_module_does_not_import_tensorflow():
    code = (
        "import sys, edge.synthetic_scene; sys.exit(1 if 'tensorflow' in sys.modules or 'keras' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize("kind", synthetic_scene._BACKGROUNDS, ids=lambda f: f.__name__)
def test_every_background_kind_is_rgb_uint8_and_not_flat(kind):
    image = kind(np.random.default_rng(1), H, W)
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    assert image.reshape(-1, 3).std(axis=0).max() > 0.5  # gradient, texture or noise: never a flat fill


def test_random_background_varies_with_seed():
    images = [random_background(np.random.default_rng(seed), H, W) for seed in range(12)]
    means = np.array([im.reshape(-1, 3).mean(axis=0) for im in images])
    stds = np.array([im.reshape(-1, 3).std() for im in images])
    assert np.ptp(means, axis=0).min() > 40 and np.ptp(stds) > 10


@pytest.mark.parametrize("seed", range(40))
def test_single_object_box_is_exact_bbox_of_drawn_pixels(seed):
    rng = np.random.default_rng(seed)
    obj = SceneObject(
        class_id=int(rng.integers(4)),
        center_x=float(rng.uniform(-10, W + 10)),
        center_y=float(rng.uniform(-10, H + 10)),
        size=float(rng.uniform(12, 110)),
        angle=float(rng.uniform(0, 360)),
        color=(255, 255, 255),
    )
    scene = render_scene(_black(), [obj], min_visible=0.0)
    image, boxes, class_ids = scene.image, scene.boxes, scene.class_ids
    drawn = image[..., 0] >= 128
    if not drawn.any():
        assert len(boxes) == 0
        return
    assert boxes.dtype == np.float32 and class_ids.dtype == np.int32
    np.testing.assert_array_equal(class_ids, [obj.class_id])
    np.testing.assert_allclose(boxes[0], _pixel_bbox(drawn), atol=1e-6)


def test_shapes_are_filled_and_antialiased():
    obj = SceneObject(class_id=0, center_x=80, center_y=60, size=80, color=(200, 100, 50))
    scene = render_scene(_black(), [obj])
    image, boxes = scene.image, scene.boxes
    assert tuple(image[60, 80]) == (200, 100, 50)
    assert 0.0 < np.pi * 40**2 / obj.area() < 1.01
    edge_values = np.unique(image[..., 0])
    assert len(edge_values) > 10  # intermediate (anti-aliased) values on the outline
    np.testing.assert_allclose(boxes[0], [20 / H, 40 / W, 100 / H, 120 / W], atol=1.01 / H)


def test_occlusion_shrinks_box_and_drops_hidden_objects():
    left = SceneObject(class_id=2, center_x=60, center_y=60, size=60 * 1.4142, angle=0, color=(255, 0, 0))
    cover = SceneObject(class_id=2, center_x=80, center_y=60, size=60 * 1.4142, angle=0, color=(0, 0, 255))
    boxes = render_scene(_black(), [left, cover]).boxes
    assert len(boxes) == 2
    assert synthetic_scene.render_scene(_black(), [left, cover]).occluded.tolist() == [True, False]
    assert synthetic_scene.render_scene(_black(), [cover, left]).occluded.tolist() == [True, False]
    assert boxes[0][3] == pytest.approx(50 / W, abs=1.01 / W)  # left square ends where the cover starts
    assert boxes[0][1] == pytest.approx(30 / W, abs=1.01 / W)
    # same pair with a stricter visibility threshold: the left square (1/3 visible) is dropped
    boxes = render_scene(_black(), [left, cover], min_visible=0.5).boxes
    assert len(boxes) == 1 and boxes[0][1] == pytest.approx(50 / W, abs=1.01 / W)
    # fully hidden object: dropped
    small = SceneObject(class_id=0, center_x=80, center_y=60, size=20, color=(0, 255, 0))
    boxes = render_scene(_black(), [small, cover]).boxes
    assert len(boxes) == 1


def test_truncation_at_border_min_visible_and_difficult():
    half_out = SceneObject(class_id=0, center_x=0, center_y=30, size=60, color=(255, 255, 255))
    mostly_out = SceneObject(class_id=0, center_x=-20, center_y=90, size=60, color=(255, 255, 255))
    sliver = SceneObject(class_id=0, center_x=W + 27, center_y=30, size=60, color=(255, 255, 255))
    inside = SceneObject(class_id=0, center_x=90, center_y=80, size=60, color=(255, 255, 255))
    scene = synthetic_scene.render_scene(_black(), [half_out, mostly_out, sliver, inside])
    # a circle of diameter 60 cut at x=0: half visible; center 20 px outside: a 10 px cap, 11 %; 27 px out: 2 %
    assert list(scene.kept) == [0, 1, 3] and scene.truncated.tolist() == [True, True, False]
    assert scene.visible.tolist() == pytest.approx([0.5, 0.11, 1.0], abs=0.03)
    assert scene.difficult.tolist() == [False, True, False]  # below DIFFICULT_BELOW_VISIBLE (0.5) of it shows
    assert scene.boxes[0][1] == 0.0 and scene.boxes[0][3] == pytest.approx(30 / W, abs=1.01 / W)
    assert not scene.occluded.any()


def test_random_scene_is_deterministic_and_seed_dependent():
    a = random_scene(np.random.default_rng(7), H, W)
    b = random_scene(np.random.default_rng(7), H, W)
    c = random_scene(np.random.default_rng(8), H, W)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_random_scenes_cover_sizes_truncation_and_occlusion():
    rng = np.random.default_rng(0)
    widths, truncated, occluded, classes = [], 0, 0, set()
    for _ in range(150):
        scene = synthetic_scene.generate_scene(rng, 240, 320)
        assert scene.image.shape == (240, 320, 3) and scene.image.dtype == np.uint8
        boxes = scene.boxes
        assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2:] <= 1) and np.all(boxes[:, 2:] > boxes[:, :2])
        side = np.maximum((boxes[:, 2] - boxes[:, 0]) * 240, (boxes[:, 3] - boxes[:, 1]) * 320) / 240
        widths.extend(side.tolist())
        truncated += int(scene.truncated.sum())
        occluded += int(scene.occluded.sum())
        classes.update(scene.class_ids.tolist())
    assert classes == {0, 1, 2, 3}
    assert min(widths) < 0.15 and max(widths) > 0.8  # small to nearly full-frame
    assert truncated > 20 and occluded > 20


def test_object_colours_contrast_with_background():
    rng = np.random.default_rng(3)
    distances = []
    for _ in range(60):
        background = random_background(rng, H, W)
        for obj in random_objects(rng, H, W, background=background, truncation_prob=0.0):
            r = max(2, int(obj.size / 2))
            y, x = int(np.clip(obj.center_y, 0, H - 1)), int(np.clip(obj.center_x, 0, W - 1))
            patch = background[max(0, y - r) : y + r, max(0, x - r) : x + r].reshape(-1, 3).astype(float)
            distances.append(np.median(np.linalg.norm(patch - np.asarray(obj.color, float), axis=1)))
    assert np.mean(np.asarray(distances) > 60) > 0.9


def test_random_objects_validates_arguments():
    with pytest.raises(ValueError, match="min_size_frac"):
        random_objects(np.random.default_rng(0), H, W, min_size_frac=0.5, max_size_frac=0.2)
    with pytest.raises(ValueError, match="class_id"):
        SceneObject(class_id=9, center_x=0, center_y=0, size=10)
    with pytest.raises(ValueError, match="uint8"):
        render_scene(np.zeros((H, W, 3), np.float32), [])


def test_moving_scene_moves_scales_rotates_and_bounces_off_the_border():
    obj = SceneObject(class_id=2, center_x=150.0, center_y=60.0, size=40.0, angle=10.0)
    # vx 100 px/s, vy -20 px/s, +50 % size per second, 30 degrees per second
    scene = synthetic_scene.MovingScene(_black(), [obj], np.array([[100.0, -20.0, 0.5, 30.0]]))
    scene.step(0.2)  # x would reach 170 > W = 160: clamped to the border, vx reversed
    (moved,) = scene.objects
    assert (moved.center_x, moved.center_y) == (W, pytest.approx(56.0))
    assert moved.size == pytest.approx(44.0) and moved.angle == pytest.approx(16.0)
    assert scene.motion[0].tolist() == [-100.0, -20.0, 0.5, 30.0]
    scene.step(1.0)  # x back to 60; size 44 * 1.5 = 66, under the largest (0.7 * H = 84)
    (moved,) = scene.objects
    assert moved.center_x == pytest.approx(60.0) and moved.size == pytest.approx(66.0)
    scene.step(1.0)  # 66 * 1.5 = 99 > 84: held at the largest size, growth reversed
    assert scene.objects[0].size == pytest.approx(0.7 * H) and scene.motion[0, 2] == -0.5
    assert scene.render().boxes.shape == (1, 4)


def test_moving_scene_is_deterministic_for_a_seed():
    def frames(seed: int) -> list[np.ndarray]:
        scene = synthetic_scene.MovingScene.random(np.random.default_rng(seed), H, W, max_objects=3)
        images = [scene.render().image]
        for _ in range(3):
            scene.step(1 / 30)
            images.append(scene.render().image)
        return images

    first = frames(7)
    assert all(np.array_equal(a, b) for a, b in zip(first, frames(7), strict=True))
    assert not np.array_equal(first[0], first[-1]), "objects should move"
