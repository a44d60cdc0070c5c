"""The committed demo model on golden synthetic frames: detections match the ground truth by IoU.

Golden frames are rendered deterministically from fixed seeds with ``edge.synthetic_scene`` (1-3 shapes of
25-60 % of the frame, 320x240, the dataset's backgrounds). The committed demo model (alpha 0.5 at 224,
val mAP@0.5 0.918, ``models/demo_int8.accuracy.md``) measured recall 0.96 (80/83) / precision 0.78
(80/102) here at score 0.2 (0.92 / 0.93 at score 0.5); the floors sit below that, so a regression in the
model, the converter or the runtime's preprocessing/decoding fails here.
"""

from pathlib import Path

import numpy as np
import pytest

from edge import Detector
from edge.boxes import iou_matrix
from edge.synthetic_scene import CLASS_NAMES, generate_scene

DEMO_MODEL = Path(__file__).resolve().parents[2] / "models" / "demo_int8.tflite"
GOLDEN_SEEDS = range(40)
SCORE_THRESHOLD = 0.2
RECALL_FLOOR = 0.85
PRECISION_FLOOR = 0.6


def golden_frames():
    for seed in GOLDEN_SEEDS:
        rng = np.random.default_rng([2026, seed])
        yield generate_scene(rng, 240, 320, max_objects=3, min_size_frac=0.25, max_size_frac=0.6)


@pytest.fixture(scope="module")
def detector():
    if not DEMO_MODEL.exists():
        pytest.fail(f"{DEMO_MODEL} is missing: it is committed; rebuild it with `make train convert`")
    return Detector(str(DEMO_MODEL), score_threshold=SCORE_THRESHOLD)


def test_demo_model_knows_the_synthetic_classes(detector):
    assert detector.labels == list(CLASS_NAMES)


def test_detections_match_golden_ground_truth_by_iou(detector):
    matched = total_gt = total_det = 0
    for scene in golden_frames():
        result = detector(scene.image)
        total_gt += len(scene.boxes)
        total_det += len(result.boxes)
        if not len(result.boxes) or not len(scene.boxes):
            continue
        iou = iou_matrix(result.boxes, scene.boxes)
        same_class = result.class_ids[:, None] == scene.class_ids[None, :]
        hits = (iou >= 0.5) & same_class
        used = np.zeros(len(scene.boxes), bool)
        for row in hits:  # detections come best first: greedy one-to-one matching
            free = np.flatnonzero(row & ~used)
            if free.size:
                used[free[0]] = True
        matched += int(used.sum())
    recall, precision = matched / total_gt, matched / max(total_det, 1)
    assert recall >= RECALL_FLOOR, f"recall {recall:.2f} on {total_gt} golden objects"
    assert precision >= PRECISION_FLOOR, f"precision {precision:.2f} of {total_det} detections"
