"""``tf.data`` input pipelines: decode, cache, shuffle, augment, encode SSD targets, batch, prefetch.

Element formats:

* training / validation (``make_dataset``): ``(images, targets)`` with ``images`` float32
  ``(B, H, W, 3)`` raw RGB in [0, 255] and ``targets = {"box_deltas": (B, N, 4) float32 ty, tx, th, tw,
  "class_labels": (B, N) int32}`` (0 = background, ``class + 1``), ``N = config.num_anchors``. The last
  batch of an epoch may be smaller than ``batch_size``.

Records follow the ``train.datasets.Record`` contract (``image_path``, ``boxes`` ``(K, 4)`` float32
normalized ``ymin, xmin, ymax, xmax``, ``classes`` ``(K,)`` int32 0-based, ``height``, ``width``). Boxes
are padded to the largest ``K`` in the set with class ``-1`` (see ``train.augment``).

Caching: decoded images are cached in memory as uint8 when their estimated size fits in
``cache_budget_bytes`` (default a quarter of physical memory). Augmented training caches *before*
augmentation, each image pre-shrunk (aspect kept, never enlarged) so both sides stay at least ``2 x`` the
model input, which keeps crops sharp and the cache small; validation and training without augmentation
cache finished examples (image resized to the model input, rounded to uint8 like camera pixels, and its
encoded targets).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from train.augment import AugmentConfig
from train.augment import augment as augment_image
from train.config import ModelConfig
from train.targets import encode_targets

logger = logging.getLogger(__name__)

CACHE_SIDE_FACTOR = 2.0
"""Training cache keeps each image at least this many times the model input per side."""


def default_cache_budget() -> int:
    """A quarter of physical memory, in bytes (1 GiB if it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):
        return 1 << 30


def _cache_scale(height: float, width: float, input_size: Sequence[int]) -> float:
    return min(1.0, max(CACHE_SIDE_FACTOR * input_size[0] / height, CACHE_SIDE_FACTOR * input_size[1] / width))


def _record_arrays(records: Sequence, num_classes: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Paths, boxes ``(R, M, 4)`` float32 and classes ``(R, M)`` int32 padded with ``-1``."""
    if not records:
        raise ValueError("make_dataset: records is empty; expected at least one train.datasets.Record")
    max_boxes = max(1, max(len(r.classes) for r in records))
    boxes = np.zeros((len(records), max_boxes, 4), np.float32)
    classes = np.full((len(records), max_boxes), -1, np.int32)
    for i, record in enumerate(records):
        record_boxes = np.asarray(record.boxes, np.float32).reshape(-1, 4)
        record_classes = np.asarray(record.classes, np.int32).reshape(-1)
        if len(record_boxes) != len(record_classes):
            raise ValueError(
                f"{record.image_path}: record has {len(record_boxes)} boxes but {len(record_classes)} classes"
            )
        if record_classes.size and (record_classes.min() < 0 or record_classes.max() >= num_classes):
            raise ValueError(
                f"{record.image_path}: field 'classes' has {record_classes.tolist()}, "
                f"expected 0-based ids below num_classes={num_classes}"
            )
        boxes[i, : len(record_boxes)] = record_boxes
        classes[i, : len(record_classes)] = record_classes
    return [str(r.image_path) for r in records], boxes, classes


def _decode(path: tf.Tensor) -> tf.Tensor:
    """JPEG/PNG/BMP/GIF file -> ``(H, W, 3)`` uint8 RGB."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return tf.ensure_shape(image, [None, None, 3])


def _fits_in_cache(records: Sequence, bytes_per_image, budget: int | None) -> bool:
    budget = default_cache_budget() if budget is None else budget
    total = sum(bytes_per_image(r) for r in records)
    fits = total <= budget
    logger.info(
        "image cache: %.1f MiB for %d images, budget %.1f MiB -> %s",
        total / 2**20,
        len(records),
        budget / 2**20,
        "caching in memory" if fits else "not caching (decoding every epoch)",
    )
    return fits


def _load(dataset: tf.data.Dataset, load, size: int, use_cache: bool, shuffle: bool, seed: int) -> tf.data.Dataset:
    """``dataset.map(load)`` over ``size`` records, skipping undecodable files, cached when ``use_cache``.

    With ``shuffle``, an uncached pipeline shuffles the cheap file list with a full buffer, a cached one shuffles
    the cached elements through a buffer of at most 1024 (new order every epoch, reproducible from ``seed``).
    """
    if shuffle and not use_cache:
        dataset = dataset.shuffle(size, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors(log_warning=True)
    if use_cache:
        dataset = dataset.cache()
        if shuffle:
            dataset = dataset.shuffle(min(size, 1024), seed=seed, reshuffle_each_iteration=True)
    return dataset


def make_dataset(
    records: Sequence,
    config: ModelConfig,
    batch_size: int,
    training: bool,
    augment: AugmentConfig | None = None,
    shuffle_seed: int = 0,
    cache: bool = True,
    cache_budget_bytes: int | None = None,
) -> tf.data.Dataset:
    """Batched ``(images, {"box_deltas", "class_labels"})`` for training or validation loss.

    Args:
        records: ``train.datasets.Record`` list (class ids must be below ``config.num_classes``).
        config: model geometry: input size, anchors, variances.
        batch_size: images per batch (global batch under ``tf.distribute``).
        training: shuffle and augment (when ``augment`` is given); otherwise record order, resize only.
        augment: SSD augmentation; ``None`` resizes only.
        shuffle_seed: seed of the shuffle and of the per-image augmentation seeds (new every epoch).
        cache: cache decoded images in memory when they fit in ``cache_budget_bytes``.
        cache_budget_bytes: memory budget for the cache (default: a quarter of physical memory).

    One finite epoch per iteration; undecodable images are skipped with a warning (``ignore_errors``).
    """
    if batch_size < 1:
        raise ValueError(f"make_dataset: batch_size must be >= 1, got {batch_size}")
    paths, boxes, classes = _record_arrays(records, config.num_classes)
    input_size = config.input_size
    anchors = tf.constant(config.generate_anchors())
    variances = config.variances
    dataset = tf.data.Dataset.from_tensor_slices((paths, boxes, classes))

    if not training or augment is None:
        # Without augmentation every example is fixed: resize and encode it once, then cache the result, so
        # later epochs only shuffle and batch (the per-epoch resize + anchor matching cost ~20 % of a CPU step).

        def load_fixed(path, box, cls):
            image = tf.image.resize(_decode(path), input_size, method="bilinear")
            loc, labels = encode_targets(box, cls, anchors, variances)
            return tf.cast(tf.round(image), tf.uint8), {"box_deltas": loc, "class_labels": labels}

        example_bytes = input_size[0] * input_size[1] * 3 + int(anchors.shape[0]) * (4 * 4 + 4)
        use_cache = cache and _fits_in_cache(records, lambda r: example_bytes, cache_budget_bytes)
        dataset = _load(dataset, load_fixed, len(paths), use_cache, training, shuffle_seed)
        dataset = dataset.map(lambda image, targets: (tf.cast(image, tf.float32), targets))
        return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def cached_bytes(record) -> int:
        scale = _cache_scale(record.height, record.width, input_size)
        return int(record.height * scale) * int(record.width * scale) * 3

    use_cache = cache and _fits_in_cache(records, cached_bytes, cache_budget_bytes)

    def load_train(path, box, cls):
        image = _decode(path)
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = tf.minimum(
            1.0, tf.maximum(CACHE_SIDE_FACTOR * input_size[0] / shape[0], CACHE_SIDE_FACTOR * input_size[1] / shape[1])
        )
        size = tf.cast(tf.round(shape * scale), tf.int32)
        image = tf.cond(
            scale < 1.0,
            lambda: tf.cast(tf.round(tf.image.resize(image, size, method="area")), tf.uint8),
            lambda: image,
        )
        return image, box, cls

    dataset = _load(dataset, load_train, len(paths), use_cache, True, shuffle_seed)
    seeds = tf.data.Dataset.random(seed=shuffle_seed, rerandomize_each_iteration=True).batch(2)
    dataset = tf.data.Dataset.zip(dataset, seeds)

    def transform(element, seed):
        image, box, cls = element
        image, box, cls = augment_image(image, box, cls, input_size, augment, seed)
        loc, labels = encode_targets(box, cls, anchors, variances)
        return image, {"box_deltas": loc, "class_labels": labels}

    dataset = dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
