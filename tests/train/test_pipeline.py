"""tf.data pipelines on real JPEG/PNG files: shapes, targets, order, caching, corrupt files."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from edge.boxes import decode_boxes
from train.augment import AugmentConfig
from train.config import ModelConfig
from train.pipeline import make_dataset

CONFIG = ModelConfig(alpha=0.25, input_size=(64, 96), num_classes=3)


@dataclasses.dataclass
class Rec:
    """The ``train.datasets.Record`` contract, built by hand."""

    image_path: str
    boxes: np.ndarray
    classes: np.ndarray
    height: int
    width: int


def _write_records(directory: Path, count: int) -> list[Rec]:
    rng = np.random.default_rng(0)
    records = []
    for i in range(count):
        height, width = int(rng.integers(60, 140)), int(rng.integers(80, 200))
        image = np.full((height, width, 3), (i * 20) % 256, np.uint8)
        k = i % 3  # 0, 1 or 2 objects
        boxes = []
        for _ in range(k):
            y0, x0 = rng.uniform(0, 0.5, 2)
            y1, x1 = y0 + rng.uniform(0.2, 0.5), x0 + rng.uniform(0.2, 0.5)
            boxes.append([y0, x0, y1, x1])
            image[int(y0 * height) : int(y1 * height), int(x0 * width) : int(x1 * width)] = 255
        path = directory / (f"img{i}.png" if i % 2 else f"img{i}.jpg")
        Image.fromarray(image).save(path, quality=95)
        records.append(
            Rec(
                str(path),
                np.array(boxes, np.float32).reshape(-1, 4),
                rng.integers(0, CONFIG.num_classes, k).astype(np.int32),
                height,
                width,
            )
        )
    return records


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return _write_records(tmp_path_factory.mktemp("images"), 7)


def test_validation_targets_decode_to_record_boxes(records):
    dataset = make_dataset(records, CONFIG, batch_size=3, training=False)
    anchors = CONFIG.generate_anchors()
    seen = 0
    for images, targets in dataset:
        assert images.dtype == tf.float32 and images.shape[1:] == (64, 96, 3)
        assert targets["box_deltas"].shape[1:] == (CONFIG.num_anchors, 4)
        assert targets["class_labels"].dtype == tf.int32
        for deltas, labels in zip(targets["box_deltas"].numpy(), targets["class_labels"].numpy(), strict=True):
            record = records[seen]
            positive = labels > 0
            assert set(labels[positive] - 1) == set(record.classes.tolist())
            decoded = decode_boxes(deltas[positive], anchors[positive])
            # every positive decodes to one of the record's boxes
            distance = np.abs(decoded[:, None, :] - record.boxes[None]).max(-1)
            assert (distance.min(axis=1) < 1e-4).all() if len(record.boxes) else not positive.any()
            seen += 1
    assert seen == len(records)


def test_training_epoch_augmented_shapes_and_fresh_randomness(records):
    dataset = make_dataset(records, CONFIG, batch_size=4, training=True, augment=AugmentConfig(), shuffle_seed=1)
    epochs = []
    for _ in range(2):
        batches = list(dataset)
        assert [int(b[0].shape[0]) for b in batches] == [4, 3]
        for images, targets in batches:
            assert np.isfinite(images.numpy()).all() and images.numpy().max() <= 255.0
            assert np.isfinite(targets["box_deltas"].numpy()).all()
            labels = targets["class_labels"].numpy()
            assert labels.min() >= 0 and labels.max() <= CONFIG.num_classes
        epochs.append(np.concatenate([b[0].numpy() for b in batches]))
    assert not np.array_equal(epochs[0], epochs[1])  # new shuffle / augmentation every epoch


def test_training_without_augment_and_without_cache(records):
    cached = make_dataset(records, CONFIG, batch_size=7, training=True, augment=None, shuffle_seed=3)
    uncached = make_dataset(records, CONFIG, batch_size=7, training=True, cache_budget_bytes=0, shuffle_seed=3)
    for dataset in (cached, uncached):
        images, targets = next(iter(dataset))
        assert images.shape == (7, 64, 96, 3)
        # all objects of the set are present exactly (no augmentation): positives per class
        labels = targets["class_labels"].numpy()
        assert sorted({int(c) for c in labels[labels > 0] - 1}) == sorted({int(c) for r in records for c in r.classes})


def test_corrupt_image_is_skipped_not_fatal(records, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with_bad = [*records[:3], Rec(str(bad), np.zeros((0, 4), np.float32), np.zeros(0, np.int32), 50, 50)]
    dataset = make_dataset(with_bad, CONFIG, batch_size=2, training=True, augment=AugmentConfig())
    assert sum(int(images.shape[0]) for images, _ in dataset) == 3


def test_bad_class_id_names_the_file(records):
    bad = dataclasses.replace(records[1], classes=np.array([CONFIG.num_classes], np.int32))
    with pytest.raises(ValueError, match=r"img1\.png.*classes"):
        make_dataset([bad], CONFIG, batch_size=1, training=True)
    with pytest.raises(ValueError, match="empty"):
        make_dataset([], CONFIG, batch_size=1, training=False)
