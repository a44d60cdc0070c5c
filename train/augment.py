"""SSD data augmentation in TensorFlow ops, boxes kept consistent with the pixels.

Conventions:

* images: float32 ``(H, W, 3)`` RGB in [0, 255] (uint8 input is accepted and cast);
* boxes: ``(M, 4)`` float32 normalized ``ymin, xmin, ymax, xmax``, padded to a fixed ``M`` per image;
* classes: ``(M,)`` int32, 0-based; **class ``-1`` marks a padding / dropped row** (its box is zeros).
  Augmentation never changes ``M``: a box that leaves the crop gets class ``-1``, so shapes stay static
  and ``train.targets.encode_targets`` simply ignores those rows.
* randomness is stateless: every function takes a ``seed`` ``(2,)`` int tensor, so the same seed gives
  the same result (the pipeline draws one seed per image and epoch from ``tf.data.Dataset.random``).

Geometry (``augment``): zoom-out (expand) and the IoU-constrained crop are both expressed as one
window in the original image's normalized coordinates (the expand canvas is the window that may
extend past the image; outside pixels are the mean pixel), and a single ``crop_and_resize`` produces
the model-input-sized result. The ``max_expand`` canvas is therefore never materialized, which keeps
the input pipeline cheap. Photometric distortion runs after the resize, on the small image, then the
horizontal flip.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import tensorflow as tf

from train.boxes import iou_matrix
from train.config import AUGMENT_PRESETS

IMAGENET_MEAN_RGB = (123.68, 116.78, 103.94)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the SSD augmentation (defaults as in the SSD paper / ssd.pytorch).

    ``min_iou_choices``: the crop samples one minimum IoU per image; ``0.0`` is the SSD "none"
    option (any patch, no IoU constraint). ``crop_prob`` is the probability of trying a crop at all
    (SSD's "use the entire original image" option). ``hue_delta`` is a fraction of the hue circle
    (0.05 = 18 degrees, applied as a rotation about the grey axis); ``brightness_delta`` is in pixel units.
    """

    photometric_prob: float = 0.5
    brightness_delta: float = 32.0
    contrast_range: tuple[float, float] = (0.5, 1.5)
    saturation_range: tuple[float, float] = (0.5, 1.5)
    hue_delta: float = 0.05
    expand_prob: float = 0.5
    max_expand: float = 4.0
    crop_prob: float = 6.0 / 7.0
    min_iou_choices: tuple[float, ...] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9)
    crop_scale: tuple[float, float] = (0.3, 1.0)
    crop_aspect_ratio: tuple[float, float] = (0.5, 2.0)
    crop_trials: int = 50
    flip_prob: float = 0.5
    mean_pixel: tuple[float, float, float] = IMAGENET_MEAN_RGB

    def __post_init__(self) -> None:
        for name in ("photometric_prob", "expand_prob", "crop_prob", "flip_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must be in [0, 1], got {value}")
        for name in ("contrast_range", "saturation_range", "crop_scale", "crop_aspect_ratio"):
            low, high = getattr(self, name)
            if not 0.0 < low <= high:
                raise ValueError(f"AugmentConfig.{name} must be (low, high) with 0 < low <= high, got {(low, high)}")
        if self.crop_scale[1] > 1.0:
            raise ValueError(f"AugmentConfig.crop_scale must be within (0, 1], got {self.crop_scale}")
        if self.max_expand < 1.0:
            raise ValueError(f"AugmentConfig.max_expand must be >= 1, got {self.max_expand}")
        if not self.min_iou_choices or any(not 0.0 <= v <= 1.0 for v in self.min_iou_choices):
            raise ValueError(
                f"AugmentConfig.min_iou_choices must be non-empty values in [0, 1], got {self.min_iou_choices}"
            )
        if self.crop_trials < 1:
            raise ValueError(f"AugmentConfig.crop_trials must be >= 1, got {self.crop_trials}")
        if len(self.mean_pixel) != 3:
            raise ValueError(f"AugmentConfig.mean_pixel must be 3 RGB values, got {self.mean_pixel}")
        if not 0.0 <= self.hue_delta <= 0.5 or self.brightness_delta < 0:
            raise ValueError(
                f"AugmentConfig: need 0 <= hue_delta <= 0.5 and brightness_delta >= 0, got "
                f"{self.hue_delta}, {self.brightness_delta}"
            )

    @classmethod
    def light(cls) -> AugmentConfig:
        """Milder geometry for short trainings on data that already varies scale and position (the synthetic set):
        zoom-out up to 2x on 30% of images, a crop on half of them; photometric and flip as in SSD."""
        return cls(expand_prob=0.3, max_expand=2.0, crop_prob=0.5)

    @classmethod
    def preset(cls, name: str) -> AugmentConfig:
        """``ssd`` (paper defaults), ``light`` or ``none``."""
        if name == "ssd":
            return cls()
        if name == "light":
            return cls.light()
        if name == "none":
            return cls.none()
        raise ValueError(f"unknown augmentation preset {name!r}; expected one of {AUGMENT_PRESETS}")

    @classmethod
    def none(cls) -> AugmentConfig:
        """A config that changes nothing (every probability 0): ``augment`` then only resizes."""
        return cls(photometric_prob=0.0, expand_prob=0.0, crop_prob=0.0, flip_prob=0.0)


def _uniform(seed: tf.Tensor, low: float | tf.Tensor = 0.0, high: float | tf.Tensor = 1.0, shape=()) -> tf.Tensor:
    return tf.random.stateless_uniform(shape, seed=seed, minval=low, maxval=high, dtype=tf.float32)


def resize_window(
    image: tf.Tensor, window: tf.Tensor, output_size: Sequence[int], fill: Sequence[float] = IMAGENET_MEAN_RGB
) -> tf.Tensor:
    """Crop ``window`` out of ``image`` and resize it to ``output_size`` in one bilinear step.

    Args:
        image: ``(H, W, 3)`` image (any real dtype), pixel values in [0, 255].
        window: ``(4,)`` float32 ``ymin, xmin, ymax, xmax`` in the image's normalized coordinates; it
            may extend past [0, 1], the outside is filled with ``fill``.
        output_size: ``(height, width)`` of the result.
        fill: RGB value of pixels outside the image.

    Returns:
        ``(height, width, 3)`` float32. Sampling uses half-pixel centres, so ``window = [0, 0, 1, 1]``
        equals ``tf.image.resize(..., "bilinear")`` and a box edge at normalized ``t`` in the window
        lands at pixel edge ``t * size`` of the output.
    """
    image = tf.cast(image, tf.float32)
    out_h, out_w = int(output_size[0]), int(output_size[1])
    shape = tf.shape(image)
    in_h, in_w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    window = tf.cast(window, tf.float32)

    def axis(start, end, size, out):
        # crop_and_resize samples at b0*(size-1) + i*(b1-b0)*(size-1)/(out-1); we want the
        # half-pixel-centre position start*size + (i+0.5)*(end-start)*size/out - 0.5.
        denom = tf.maximum(size - 1.0, 1.0)
        b0 = (start * size + 0.5 * (end - start) * size / out - 0.5) / denom
        b1 = b0 + (end - start) * size * (out - 1) / (out * denom)
        return b0, b1

    y0, y1 = axis(window[0], window[2], in_h, float(out_h))
    x0, x1 = axis(window[1], window[3], in_w, float(out_w))
    mean = tf.constant(fill, tf.float32)
    resized = tf.image.crop_and_resize(
        (image - mean)[None],
        tf.stack([y0, x0, y1, x1])[None],
        tf.zeros([1], tf.int32),
        [out_h, out_w],
        method="bilinear",
        extrapolation_value=0.0,
    )[0]
    return resized + mean


def _colour_matrix(saturation: tf.Tensor, hue: tf.Tensor) -> tf.Tensor:
    """``(3, 3)`` RGB matrix: hue rotation by ``hue`` turns about the grey axis, then saturation scaling.

    The hue rotation (Rodrigues about ``(1, 1, 1) / sqrt(3)``) is the linear counterpart of an HSV hue
    shift and the saturation step blends with the luma (Rec. 601 weights), so the whole colour
    distortion is one matrix product instead of two RGB <-> HSV round trips.
    """
    angle = 2.0 * 3.141592653589793 * hue
    cos, sin = tf.cos(angle), tf.sin(angle)
    axis = tf.fill([3], 3.0**-0.5)
    cross = tf.stack([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    rotation = cos * tf.eye(3) + sin * cross + (1.0 - cos) * tf.tensordot(axis, axis, axes=0)
    luma = tf.constant([[0.299, 0.587, 0.114]])
    desaturate = saturation * tf.eye(3) + (1.0 - saturation) * tf.ones([3, 1]) * luma
    return tf.matmul(desaturate, rotation)


def photometric_distort(image: tf.Tensor, config: AugmentConfig, seed: tf.Tensor) -> tf.Tensor:
    """SSD photometric distortion of a float32 ``(H, W, 3)`` [0, 255] image; returns the same shape/range.

    Brightness, then contrast and colour (saturation + hue, see ``_colour_matrix``) in a random
    order; each of the four is applied with probability ``config.photometric_prob``.
    """
    image = tf.cast(image, tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 9)
    p = config.photometric_prob

    def maybe(i: int, value: tf.Tensor, identity: float) -> tf.Tensor:
        return tf.where(_uniform(seeds[i]) < p, value, identity)

    brightness = maybe(0, _uniform(seeds[1], -config.brightness_delta, config.brightness_delta), 0.0)
    contrast = maybe(2, _uniform(seeds[3], *config.contrast_range), 1.0)
    saturation = maybe(4, _uniform(seeds[5], *config.saturation_range), 1.0)
    hue = maybe(6, _uniform(seeds[7], -config.hue_delta, config.hue_delta), 0.0)
    colour = _colour_matrix(saturation, hue)

    def adjust_contrast(x: tf.Tensor) -> tf.Tensor:
        mean = tf.reduce_mean(x, axis=[0, 1], keepdims=True)
        return tf.clip_by_value((x - mean) * contrast + mean, 0.0, 255.0)

    def adjust_colour(x: tf.Tensor) -> tf.Tensor:
        return tf.clip_by_value(tf.tensordot(x, colour, axes=[[2], [1]]), 0.0, 255.0)

    image = tf.clip_by_value(image + brightness, 0.0, 255.0)
    return tf.cond(
        _uniform(seeds[8]) < 0.5,
        lambda: adjust_colour(adjust_contrast(image)),
        lambda: adjust_contrast(adjust_colour(image)),
    )


def _centres_inside(boxes: tf.Tensor, windows: tf.Tensor) -> tf.Tensor:
    """``(T, M)`` bool: centre of box ``m`` strictly inside window ``t``."""
    cy = (boxes[None, :, 0] + boxes[None, :, 2]) / 2
    cx = (boxes[None, :, 1] + boxes[None, :, 3]) / 2
    w = windows[:, None, :]
    return (cy > w[..., 0]) & (cy < w[..., 2]) & (cx > w[..., 1]) & (cx < w[..., 3])


def sample_window(
    boxes: tf.Tensor, classes: tf.Tensor, image_size: tf.Tensor, config: AugmentConfig, seed: tf.Tensor
) -> tf.Tensor:
    """Sample the expand + IoU-constrained-crop window for one image.

    Args:
        boxes: ``(M, 4)`` normalized corner boxes; classes ``(M,)`` with ``-1`` for padding.
        image_size: ``(2,)`` ``(height, width)`` of the image in pixels.
        config: augmentation parameters.
        seed: ``(2,)`` stateless seed.

    Returns:
        ``(4,)`` float32 window ``ymin, xmin, ymax, xmax`` in the image's normalized coordinates
        (may extend beyond [0, 1] when expanded). ``[0, 0, 1, 1]`` when neither op fires, or when
        no crop candidate satisfied the constraints within ``config.crop_trials`` tries.
    """
    seeds = tf.random.experimental.stateless_split(seed, 8)
    boxes = tf.cast(boxes, tf.float32)
    valid = classes >= 0
    has_boxes = tf.reduce_any(valid)
    height, width = tf.cast(image_size[0], tf.float32), tf.cast(image_size[1], tf.float32)

    # Zoom-out: canvas of ratio r x the image, the image at a random offset inside it.
    expand = _uniform(seeds[0]) < config.expand_prob
    ratio = tf.where(expand, _uniform(seeds[1], 1.0, config.max_expand), 1.0)
    offset = _uniform(seeds[2], 0.0, 1.0, [2]) * (ratio - 1.0)  # (oy, ox), image units
    canvas = tf.stack([-offset[0], -offset[1], ratio - offset[0], ratio - offset[1]])

    # Crop: T candidates at once; the first that satisfies the constraints wins.
    trials = config.crop_trials
    choices = tf.constant(config.min_iou_choices, tf.float32)
    min_iou = tf.gather(choices, tf.random.stateless_uniform([], seeds[3], 0, len(config.min_iou_choices), tf.int32))
    scale = _uniform(seeds[4], config.crop_scale[0], config.crop_scale[1], [trials, 2])  # (h, w) fraction of canvas
    pixel_aspect = (scale[:, 0] * height) / (scale[:, 1] * width)
    aspect_ok = (pixel_aspect >= config.crop_aspect_ratio[0]) & (pixel_aspect <= config.crop_aspect_ratio[1])
    start = _uniform(seeds[5], 0.0, 1.0, [trials, 2]) * (1.0 - scale)
    rel = tf.concat([start, start + scale], axis=1)  # canvas-normalized
    candidates = tf.stack(
        [
            canvas[0] + rel[:, 0] * ratio,
            canvas[1] + rel[:, 1] * ratio,
            canvas[0] + rel[:, 2] * ratio,
            canvas[1] + rel[:, 3] * ratio,
        ],
        axis=1,
    )
    iou = iou_matrix(candidates, boxes)
    inside = _centres_inside(boxes, candidates) & valid[None, :]
    iou_ok = tf.reduce_any((iou >= min_iou) & valid[None, :], axis=1)
    box_ok = tf.logical_or(tf.logical_not(has_boxes), iou_ok & tf.reduce_any(inside, axis=1))
    ok = aspect_ok & box_ok
    found = tf.reduce_any(ok)
    first = tf.argmax(tf.cast(ok, tf.int32), output_type=tf.int32)
    do_crop = (_uniform(seeds[6]) < config.crop_prob) & found
    return tf.where(do_crop, candidates[first], canvas)


def apply_window(boxes: tf.Tensor, classes: tf.Tensor, window: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Re-express boxes in ``window``: keep boxes whose centre lies inside it, clip them to it.

    Returns boxes ``(M, 4)`` normalized to the window and classes ``(M,)``; dropped rows get class
    ``-1`` and a zero box.
    """
    boxes = tf.cast(boxes, tf.float32)
    keep = _centres_inside(boxes, window[None])[0] & (classes >= 0)
    size = tf.stack([window[2] - window[0], window[3] - window[1]] * 2)
    moved = tf.clip_by_value((boxes - tf.tile(window[:2], [2])) / size, 0.0, 1.0)
    return tf.where(keep[:, None], moved, 0.0), tf.where(keep, classes, -1)


def flip_horizontal(image: tf.Tensor, boxes: tf.Tensor, classes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Mirror ``image`` ``(H, W, 3)`` left-right and its boxes ``(M, 4)``; padding rows stay zeros."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    flipped = tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)
    return tf.reverse(image, axis=[1]), tf.where((classes >= 0)[:, None], flipped, 0.0)


def augment(
    image: tf.Tensor,
    boxes: tf.Tensor,
    classes: tf.Tensor,
    output_size: Sequence[int],
    config: AugmentConfig,
    seed: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Full SSD augmentation of one image, resized to ``output_size``.

    Args:
        image: ``(H, W, 3)`` uint8 or float32 RGB in [0, 255].
        boxes: ``(M, 4)`` float32 normalized ``ymin, xmin, ymax, xmax`` (padded).
        classes: ``(M,)`` int32 0-based, ``-1`` = padding.
        output_size: ``(height, width)`` of the model input.
        config: augmentation parameters.
        seed: ``(2,)`` int stateless seed.

    Returns:
        image ``(height, width, 3)`` float32 in [0, 255], boxes ``(M, 4)``, classes ``(M,)``.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    classes = tf.cast(classes, tf.int32)
    window = sample_window(boxes, classes, tf.shape(image)[:2], config, seeds[0])
    boxes, classes = apply_window(boxes, classes, window)
    out = resize_window(image, window, output_size, config.mean_pixel)
    if config.photometric_prob > 0:
        out = photometric_distort(out, config, seeds[1])
    if config.flip_prob > 0:
        flip = _uniform(seeds[2]) < config.flip_prob
        flipped_image, flipped_boxes = flip_horizontal(out, boxes, classes)
        out = tf.where(flip, flipped_image, out)
        boxes = tf.where(flip, flipped_boxes, boxes)
    out = tf.ensure_shape(out, [int(output_size[0]), int(output_size[1]), 3])
    return out, boxes, classes
