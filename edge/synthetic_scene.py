"""The synthetic scene renderer: coloured geometric shapes on varied backgrounds, and their motion (NumPy + OpenCV).

Still scenes (``generate_scene``) make the built-in dataset (``train.synthetic``); a ``MovingScene`` (shapes that
move, scale and rotate) is the world the edge's synthetic camera (``edge.sources.SyntheticSource``) films. It is
edge code that training imports, so it must never import TensorFlow.

Conventions:

* images are RGB uint8 ``(H, W, 3)``;
* boxes are ``(K, 4)`` float32 normalized ``ymin, xmin, ymax, xmax``: the bounding box of an
  object's *visible* pixels, with pixel ``(row, col)`` covering ``[row, row + 1) x [col, col + 1)``,
  so ``ymin = min_row / H`` and ``ymax = (max_row + 1) / H``;
* class ids are int32, 0-based indices into ``CLASS_NAMES``.

A ``SceneObject``'s ``size`` is the diameter of its circumscribed circle in pixels; its center and
angle place it, and it may lie partly (or wholly) outside the frame.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar

import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = ("circle", "triangle", "square", "star")

_SHIFT = 4  # sub-pixel bits for cv2.fillPoly
DIFFICULT_BELOW_VISIBLE = 0.5
"""An object with less than this fraction of its area visible is marked difficult."""
MIN_VISIBLE = 0.1
"""An object with less than this fraction of its area visible is not annotated at all."""
_STAR_INNER_RATIO = 0.45
_SIZE_PER_EXTENT = (1.0, 1.2, 1.41, 1.05)
"""Circumscribed diameter per unit of visual extent, per class: a square of side ``s`` has ``size`` 1.41 s."""


@dataclasses.dataclass(frozen=True)
class SceneObject:
    """One shape to draw: class, center and size in pixels, rotation in degrees, RGB colour."""

    class_id: int
    center_x: float
    center_y: float
    size: float
    angle: float = 0.0
    color: tuple[int, int, int] = (255, 0, 0)

    def __post_init__(self) -> None:
        if not 0 <= self.class_id < len(CLASS_NAMES):
            raise ValueError(f"SceneObject.class_id must be in [0, {len(CLASS_NAMES)}), got {self.class_id}")
        if not self.size > 0:
            raise ValueError(f"SceneObject.size must be > 0 pixels, got {self.size}")

    def polygon(self) -> np.ndarray:
        """Outline as ``(P, 2)`` float64 ``x, y`` pixel coordinates (pixel centers at integer + 0.5)."""
        radius = self.size / 2.0
        name = CLASS_NAMES[self.class_id]
        if name == "circle":
            count = max(24, min(96, int(radius)))
            angles = np.linspace(0.0, 2 * np.pi, count, endpoint=False)
            radii = np.full(count, radius)
        elif name == "triangle":
            angles = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
            radii = np.full(3, radius)
        elif name == "square":
            angles = np.pi / 4 + np.arange(4) * np.pi / 2
            radii = np.full(4, radius)
        elif name == "star":
            angles = -np.pi / 2 + np.arange(10) * np.pi / 5
            radii = np.where(np.arange(10) % 2 == 0, radius, radius * _STAR_INNER_RATIO)
        else:  # pragma: no cover - guarded by __post_init__
            raise ValueError(f"unknown shape {name!r}; expected one of {CLASS_NAMES}")
        angles = angles + math.radians(self.angle)
        return np.stack([self.center_x + radii * np.cos(angles), self.center_y + radii * np.sin(angles)], axis=-1)

    def area(self) -> float:
        """Full area in pixels (including any part outside the frame)."""
        x, y = self.polygon().T
        return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


@dataclasses.dataclass(frozen=True)
class Scene:
    """A rendered scene and its ground truth.

    ``image``: uint8 ``(H, W, 3)`` RGB. ``boxes``: float32 ``(K, 4)`` normalized ymin, xmin, ymax, xmax.
    ``class_ids``: int32 ``(K,)``. ``truncated``/``occluded``: bool ``(K,)`` (shape extends past the
    frame / is partly hidden by a later object). ``visible``: float32 ``(K,)`` fraction of each shape's
    area that is visible. ``kept``: int ``(K,)`` indices into ``objects``.
    """

    image: np.ndarray
    boxes: np.ndarray
    class_ids: np.ndarray
    truncated: np.ndarray
    occluded: np.ndarray
    visible: np.ndarray
    kept: np.ndarray
    objects: tuple[SceneObject, ...]

    @property
    def difficult(self) -> np.ndarray:
        """bool ``(K,)``: mostly hidden or cut off (less than ``DIFFICULT_BELOW_VISIBLE`` of the shape
        visible), Pascal VOC's "difficult" (ignored by VOC mAP)."""
        return self.visible < DIFFICULT_BELOW_VISIBLE


# ----------------------------------------------------------------------------- backgrounds


@functools.lru_cache(maxsize=4)
def _noise_texture(height: int, width: int) -> np.ndarray:
    """A fixed float32 ``(height, width, 3)`` standard-normal texture (seeded, cached, read-only)."""
    texture = np.random.default_rng(0x5EED).standard_normal((height, width, 3), dtype=np.float32)
    texture.flags.writeable = False
    return texture


def _add_noise(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    """``image`` uint8 ``(H, W, 3)`` plus Gaussian noise of std ``sigma`` (a random window of a fixed
    noise texture, which is much cheaper than drawing every value), saturated to uint8."""
    height, width = image.shape[:2]
    margin = 64
    texture = _noise_texture(height + margin, width + margin)
    oy, ox = (int(v) for v in rng.integers(0, margin, size=2))
    noise = texture[oy : oy + height, ox : ox + width] * np.float32(sigma if rng.random() < 0.5 else -sigma)
    return cv2.add(image, noise, dtype=cv2.CV_8U)


def _random_color(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float32)


def _coords(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    return y, x


def _mix(t: np.ndarray, color_a: np.ndarray, color_b: np.ndarray) -> np.ndarray:
    """Blend two RGB colours by ``t`` float32 ``(H, W)`` in [0, 1] -> uint8 ``(H, W, 3)``."""
    t = np.ascontiguousarray(t, dtype=np.float32)
    channels = [
        cv2.convertScaleAbs(t, alpha=float(b - a), beta=float(a)) for a, b in zip(color_a, color_b, strict=True)
    ]
    return cv2.merge(channels)


def _solid_image(color: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), np.clip(color, 0, 255).astype(np.uint8), dtype=np.uint8)


def _linear_gradient(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    y, x = _coords(height, width)
    theta = rng.uniform(0, 2 * np.pi)
    u = x * math.cos(theta) + y * math.sin(theta)
    t = (u - u.min()) / max(float(u.max() - u.min()), 1e-6)
    return _mix(t, _random_color(rng), _random_color(rng))


def _radial_gradient(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    y, x = _coords(height, width)
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    r = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
    t = np.minimum(r / np.float32(rng.uniform(0.5, 1.2) * math.hypot(height, width)), 1.0)
    return _mix(t, _random_color(rng), _random_color(rng))


def _gaussian_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return _add_noise(rng, _solid_image(_random_color(rng), height, width), rng.uniform(15, 50))


def _stripes(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    y, x = _coords(height, width)
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(6, 0.4 * min(height, width))
    u = x * math.cos(theta) + y * math.sin(theta)
    wave = 0.5 + 0.5 * np.sin(u * np.float32(2 * np.pi / period))
    t = wave if rng.random() < 0.5 else (wave > 0.5).astype(np.float32)
    return _mix(t, _random_color(rng), _random_color(rng))


def _checkerboard(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    y, x = _coords(height, width)
    theta = rng.uniform(0, np.pi / 2)
    cell = rng.uniform(6, 0.25 * min(height, width))
    u = (x * math.cos(theta) + y * math.sin(theta)) / np.float32(cell)
    v = (-x * math.sin(theta) + y * math.cos(theta)) / np.float32(cell)
    t = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
    return _mix(t, _random_color(rng), _random_color(rng))


def _blobs(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    cells = int(rng.integers(3, 12))
    small = rng.integers(0, 256, size=(cells, max(2, cells * width // max(height, 1)), 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def _solid(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return _add_noise(rng, _solid_image(_random_color(rng), height, width), rng.uniform(2, 12))


_BACKGROUNDS = (_linear_gradient, _radial_gradient, _gaussian_noise, _stripes, _checkerboard, _blobs, _solid)


def random_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random background: gradient, noise, stripes, checkerboard, blobs or noisy solid colour.

    Returns uint8 RGB ``(height, width, 3)``.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"random_background: height and width must be > 0, got {height}x{width}")
    kind = _BACKGROUNDS[int(rng.integers(len(_BACKGROUNDS)))]
    image = kind(rng, height, width)
    if rng.random() < 0.3:  # a second layer of fine noise on any kind
        image = _add_noise(rng, image, rng.uniform(3, 15))
    return image


# ----------------------------------------------------------------------------- objects


def _contrasting_color(rng: np.random.Generator, samples: np.ndarray, candidates: int = 12) -> tuple[int, int, int]:
    """A random RGB colour far from the colours in ``samples`` ``(S, 3)`` (best of ``candidates``)."""
    colors = rng.integers(0, 256, size=(candidates, 3)).astype(np.float32)
    if len(samples) == 0:
        return tuple(int(c) for c in colors[0])
    dist = np.linalg.norm(colors[:, None, :] - samples[None, :, :].astype(np.float32), axis=-1)  # (C, S)
    score = np.percentile(dist, 10, axis=1)
    return tuple(int(c) for c in colors[int(np.argmax(score))])


PLACEMENT_TRIES = 20
"""Placements tried per shape before it is left out of a crowded scene."""


def random_objects(
    rng: np.random.Generator,
    height: int,
    width: int,
    max_objects: int = 6,
    min_size_frac: float = 0.1,
    max_size_frac: float = 0.9,
    background: np.ndarray | None = None,
    truncation_prob: float = 0.25,
    max_overlap: float = 0.4,
) -> list[SceneObject]:
    """1..``max_objects`` random shapes for a ``height x width`` frame, in drawing order.

    Visual extents (side of a square, diameter of a circle, ...) are log-uniform in
    ``[min_size_frac, max_size_frac]`` of the shorter side; larger shapes
    come first so smaller ones partly occlude them. With probability ``truncation_prob`` a shape's
    center may lie near or past the border (truncation). With ``background`` (uint8 RGB
    ``(H, W, 3)``) each colour is chosen to contrast with the background under the shape and with
    earlier overlapping shapes; without it colours are random. ``max_overlap`` bounds occlusion: two
    shapes' circumscribed circles may overlap by at most that fraction of the sum of their radii
    (a few placements are tried; occlusion stays partial, no shape hides inside another).
    """
    if not 0 < min_size_frac <= max_size_frac:
        raise ValueError(
            f"random_objects: need 0 < min_size_frac <= max_size_frac, got {min_size_frac}, {max_size_frac}"
        )
    if max_objects < 1:
        raise ValueError(f"random_objects: max_objects must be >= 1, got {max_objects}")
    short = min(height, width)
    count = int(rng.integers(1, max_objects + 1))
    extents = np.exp(rng.uniform(math.log(min_size_frac * short), math.log(max_size_frac * short), size=count))
    class_ids = rng.integers(len(CLASS_NAMES), size=count)
    sizes = extents * np.asarray(_SIZE_PER_EXTENT)[class_ids]
    order = np.argsort(-extents, kind="stable")
    objects: list[SceneObject] = []
    for size, class_id in zip(sizes[order], class_ids[order], strict=True):
        radius = size / 2
        for _ in range(PLACEMENT_TRIES):
            if rng.random() < truncation_prob:
                cx = rng.uniform(-0.3 * size, width + 0.3 * size)
                cy = rng.uniform(-0.3 * size, height + 0.3 * size)
            else:
                cx = rng.uniform(min(radius, width / 2), max(width - radius, width / 2))
                cy = rng.uniform(min(radius, height / 2), max(height - radius, height / 2))
            if all(
                math.hypot(other.center_x - cx, other.center_y - cy) >= (1 - max_overlap) * (other.size / 2 + radius)
                for other in objects
            ):
                break
        else:
            continue
        angle = float(rng.uniform(0, 360))
        if background is None:
            color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        else:
            y0, y1 = int(np.clip(cy - radius, 0, height - 1)), int(np.clip(cy + radius, 1, height))
            x0, x1 = int(np.clip(cx - radius, 0, width - 1)), int(np.clip(cx + radius, 1, width))
            patch = background[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)].reshape(-1, 3)
            step = max(1, len(patch) // 64)
            samples = [patch[::step]]
            for other in objects:
                if math.hypot(other.center_x - cx, other.center_y - cy) < (other.size + size) / 2:
                    samples.append(np.tile(np.asarray(other.color, dtype=np.uint8), (16, 1)))
            color = _contrasting_color(rng, np.concatenate(samples))
        objects.append(SceneObject(int(class_id), float(cx), float(cy), float(size), angle, color))
    return objects


def render_scene(background: np.ndarray, objects: list[SceneObject], min_visible: float = MIN_VISIBLE) -> Scene:
    """Draw ``objects`` in order over ``background`` (uint8 RGB ``(H, W, 3)``, not modified).

    Later objects occlude earlier ones. Each box bounds the object's visible pixels (coverage
    >= 50 % of the anti-aliased mask), so it is exact and truncated at the borders; an object whose
    visible pixel count is below ``min_visible`` of its full area is left out of the ground truth.
    """
    background = np.asarray(background)
    if background.ndim != 3 or background.shape[2] != 3 or background.dtype != np.uint8:
        raise ValueError(f"render_scene: background must be uint8 (H, W, 3), got {background.dtype} {background.shape}")
    height, width = background.shape[:2]
    image = background.copy()
    owner = np.full((height, width), -1, dtype=np.int16)
    rects: list[tuple[int, int, int, int] | None] = []
    masks: list[np.ndarray | None] = []
    truncated = []
    for index, obj in enumerate(objects):
        poly = obj.polygon()
        (px0, py0), (px1, py1) = poly.min(axis=0), poly.max(axis=0)
        truncated.append(bool(px0 < 0 or py0 < 0 or px1 > width or py1 > height))
        x0, y0 = math.floor(px0) - 1, math.floor(py0) - 1
        x1, y1 = math.ceil(px1) + 1, math.ceil(py1) + 1
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if cx0 >= cx1 or cy0 >= cy1:
            rects.append(None)
            masks.append(None)
            continue
        mask = np.zeros((cy1 - cy0, cx1 - cx0), dtype=np.uint8)
        # pixel (r, c) has its center at (c + 0.5, r + 0.5) in polygon coordinates
        pts = np.round((poly - [cx0 + 0.5, cy0 + 0.5]) * (1 << _SHIFT)).astype(np.int32)
        cv2.fillPoly(mask, [pts], 255, lineType=cv2.LINE_AA, shift=_SHIFT)
        alpha = mask.astype(np.float32) * np.float32(1 / 255)
        region = image[cy0:cy1, cx0:cx1]
        fill = np.empty_like(region)
        fill[...] = obj.color
        region[...] = cv2.blendLinear(fill, np.ascontiguousarray(region), alpha, 1.0 - alpha)
        hard = mask >= 128
        owner[cy0:cy1, cx0:cx1][hard] = index
        rects.append((cy0, cx0, cy1, cx1))
        masks.append(hard)

    boxes, class_ids, kept, trunc, occluded, visible_fractions = [], [], [], [], [], []
    for index, (obj, rect) in enumerate(zip(objects, rects, strict=True)):
        if rect is None:
            continue
        cy0, cx0, cy1, cx1 = rect
        visible = owner[cy0:cy1, cx0:cx1] == index
        count = int(visible.sum())
        area = obj.area()
        if count == 0 or count < min_visible * area:
            continue
        rows = np.flatnonzero(visible.any(axis=1))
        cols = np.flatnonzero(visible.any(axis=0))
        ymin, ymax = cy0 + rows[0], cy0 + rows[-1] + 1
        xmin, xmax = cx0 + cols[0], cx0 + cols[-1] + 1
        boxes.append((ymin / height, xmin / width, ymax / height, xmax / width))
        class_ids.append(obj.class_id)
        kept.append(index)
        trunc.append(truncated[index])
        occluded.append(bool((owner[cy0:cy1, cx0:cx1][masks[index]] > index).any()))
        visible_fractions.append(min(1.0, count / max(area, 1e-6)))
    return Scene(
        image=image,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        class_ids=np.asarray(class_ids, dtype=np.int32),
        truncated=np.asarray(trunc, dtype=bool),
        occluded=np.asarray(occluded, dtype=bool),
        visible=np.asarray(visible_fractions, dtype=np.float32),
        kept=np.asarray(kept, dtype=np.int64),
        objects=tuple(objects),
    )


def generate_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    max_objects: int = 6,
    min_size_frac: float = 0.1,
    max_size_frac: float = 0.9,
    min_visible: float = MIN_VISIBLE,
) -> Scene:
    """A random background, random objects over it and mild sensor noise, with full ground truth."""
    background = random_background(rng, height, width)
    objects = random_objects(rng, height, width, max_objects, min_size_frac, max_size_frac, background=background)
    scene = render_scene(background, objects, min_visible)
    sigma = rng.uniform(0, 6)
    if sigma > 1:
        scene = dataclasses.replace(scene, image=_add_noise(rng, scene.image, sigma))
    return scene


def random_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    max_objects: int = 6,
    min_size_frac: float = 0.1,
    max_size_frac: float = 0.9,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random scene: ``(image uint8 (H, W, 3) RGB, boxes float32 (K, 4) normalized ymin, xmin, ymax, xmax,
    class_ids int32 (K,))``. Deterministic for a given ``rng`` state."""
    scene = generate_scene(rng, height, width, max_objects, min_size_frac, max_size_frac)
    return scene.image, scene.boxes, scene.class_ids


# ----------------------------------------------------------------------------- motion


@dataclasses.dataclass(eq=False)
class MovingScene:
    """The synthetic camera's world: ``objects`` over a fixed ``background`` (uint8 RGB ``(H, W, 3)``) that move,
    scale and rotate over time, bouncing off the frame's borders and off their size limits.

    ``motion``: float64 ``(K, 4)``, one row per object: ``vx``, ``vy`` pixels per second, relative size change per
    second, degrees per second. ``step(dt)`` advances the objects by ``dt`` seconds; ``render()`` draws them.
    """

    background: np.ndarray
    objects: list[SceneObject]
    motion: np.ndarray

    MIN_SIZE_FRAC: ClassVar[float] = 0.1
    """Smallest ``size`` an object shrinks to, as a fraction of the shorter side; it grows again from there."""
    MAX_SIZE_FRAC: ClassVar[float] = 0.7
    """Largest ``size`` an object grows to, as a fraction of the shorter side; it shrinks again from there."""

    @classmethod
    def random(cls, rng: np.random.Generator, height: int, width: int, max_objects: int = 5) -> MovingScene:
        """A random background, 1..``max_objects`` objects over it and a random motion for each."""
        background = random_background(rng, height, width)
        objects = random_objects(
            rng,
            height,
            width,
            max_objects=max_objects,
            min_size_frac=0.15,
            max_size_frac=0.6,
            background=background,
            truncation_prob=0.1,
        )
        speed = 0.25 * min(width, height)  # pixels per second
        count = len(objects)
        motion = np.stack(
            [
                rng.uniform(-speed, speed, count),  # vx
                rng.uniform(-speed, speed, count),  # vy
                rng.uniform(-0.35, 0.35, count),  # relative size change per second
                rng.uniform(-60, 60, count),  # degrees per second
            ],
            axis=-1,
        )
        return cls(background, objects, motion)

    def step(self, dt: float) -> None:
        """Move, scale and rotate every object by ``dt`` seconds; an object that reaches the frame's border or a
        size limit reverses that component of its motion."""
        height, width = self.background.shape[:2]
        short = min(width, height)
        smallest, largest = self.MIN_SIZE_FRAC * short, self.MAX_SIZE_FRAC * short
        moved = []
        for k, obj in enumerate(self.objects):
            vx, vy, growth, spin = self.motion[k]
            size = float(np.clip(obj.size * (1 + growth * dt), smallest, largest))
            if size in (smallest, largest):
                self.motion[k, 2] = -growth
            cx, cy = obj.center_x + vx * dt, obj.center_y + vy * dt
            if not 0 <= cx <= width:
                self.motion[k, 0] = -vx
                cx = float(np.clip(cx, 0, width))
            if not 0 <= cy <= height:
                self.motion[k, 1] = -vy
                cy = float(np.clip(cy, 0, height))
            moved.append(dataclasses.replace(obj, center_x=cx, center_y=cy, size=size, angle=obj.angle + spin * dt))
        self.objects = moved

    def render(self) -> Scene:
        """The objects drawn in their current place over the background, with ground truth (``render_scene``)."""
        return render_scene(self.background, self.objects)
