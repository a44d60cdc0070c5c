"""Pascal VOC AP / mAP (edge.metrics) on hand-checked cases."""

import math

import numpy as np
import pytest

from edge.boxes import iou_matrix
from edge.metrics import (
    FALSE_POSITIVE,
    IGNORED,
    TRUE_POSITIVE,
    DetectionEvaluator,
    average_precision,
    match_detections,
)

EMPTY_BOXES = np.zeros((0, 4), np.float32)
EMPTY = np.zeros((0,))


def shifted(box, dx):
    """``box`` (ymin, xmin, ymax, xmax) moved right by ``dx``."""
    ymin, xmin, ymax, xmax = box
    return [ymin, xmin + dx, ymax, xmax + dx]


def test_average_precision_all_point_envelope():
    # Points (R, P): (.25, 1), (.25, .5), (.5, .67), (.5, .5), (.75, .6).
    # Right-to-left envelope: P_interp(.25) = 1, P_interp(.5) = .67, P_interp(.75) = .6, P(1) = 0.
    # AP = .25 * 1 + .25 * .67 + .25 * .6 = .5675 (the .5 at recall .5 is lifted by nothing, .67 dominates).
    recall = np.array([0.25, 0.25, 0.5, 0.5, 0.75])
    precision = np.array([1.0, 0.5, 0.67, 0.5, 0.6])
    assert average_precision(recall, precision) == pytest.approx(0.25 + 0.25 * 0.67 + 0.25 * 0.6)
    assert average_precision(np.zeros(0), np.zeros(0)) == 0.0
    with pytest.raises(ValueError, match="equal length"):
        average_precision(np.zeros(2), np.zeros(3))


def test_hand_checked_single_class():
    """1 class, 3 GT over 2 images, 5 detections.

    Image A: GT g1 = [.1,.1,.4,.4], g2 = [.5,.5,.9,.9]. Image B: GT g3 = [.2,.2,.6,.6].
    Detections (score, target):
      d1 .9 A: exactly g1                     -> TP (g1 taken)
      d2 .8 B: far from everything            -> FP
      d3 .7 A: g1 shifted (IoU ~.6 with g1)    -> FP (duplicate: g1 already taken)
      d4 .6 B: g3 shifted (IoU ~.82)           -> TP
      d5 .5 A: g2 shifted (IoU ~.4 < .5)       -> FP (below the IoU threshold); g2 is never found
    Cumulative (TP, FP) -> (P, R): (1,0) 1, 1/3 | (1,1) 1/2, 1/3 | (1,2) 1/3, 1/3 | (2,2) 1/2, 2/3 | (2,3) 2/5, 2/3
    Envelope: P(1/3) = 1, P(2/3) = max(1/2, 2/5) = 1/2  ->  AP = 1/3 * 1 + 1/3 * 1/2 = 0.5.
    """
    g1, g2, g3 = [0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9], [0.2, 0.2, 0.6, 0.6]
    d3, d4, d5 = shifted(g1, 0.075), shifted(g3, 0.04), shifted(g2, 0.17)
    # The constructed IoUs really are on the intended side of 0.5.
    assert 0.5 < iou_matrix(np.array([d3]), np.array([g1]))[0, 0] < 0.7
    assert iou_matrix(np.array([d4]), np.array([g3]))[0, 0] > 0.8
    assert iou_matrix(np.array([d5]), np.array([g2]))[0, 0] < 0.5

    evaluator = DetectionEvaluator(num_classes=1)
    # Image B first: the result must not depend on the order images are added in.
    evaluator.add(np.array([[0.0, 0.0, 0.05, 0.05], d4]), np.array([0.8, 0.6]), np.array([0, 0]), np.array([g3]), [0])
    evaluator.add(np.array([g1, d3, d5]), np.array([0.9, 0.7, 0.5]), np.array([0, 0, 0]), np.array([g1, g2]), [0, 0])

    precision, recall = evaluator.precision_recall(0)
    np.testing.assert_allclose(precision, [1, 1 / 2, 1 / 3, 1 / 2, 2 / 5])
    np.testing.assert_allclose(recall, [1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3])
    result = evaluator.result()
    assert result["per_class_ap"] == [pytest.approx(0.5)]
    assert result["map"] == pytest.approx(0.5)
    assert result["num_gt"] == [3]
    assert result["num_detections"] == [5]
    assert result["per_class_recall"] == [pytest.approx(2 / 3)]
    assert result["num_images"] == 2


def test_iou_threshold_changes_outcome():
    gt = np.array([[0.1, 0.1, 0.5, 0.5]])
    det = np.array([shifted(gt[0], 0.12)])  # IoU = .28 / .52 ~ 0.54
    iou = iou_matrix(det, gt)[0, 0]
    assert 0.5 < iou < 0.6
    assert match_detections(det, [0.9], gt, iou_threshold=0.5).tolist() == [TRUE_POSITIVE]
    assert match_detections(det, [0.9], gt, iou_threshold=0.6).tolist() == [FALSE_POSITIVE]
    strict = DetectionEvaluator(1, iou_threshold=0.6)
    strict.add(det, [0.9], [0], gt, [0])
    assert strict.result()["map"] == 0.0


def test_match_detections_prefers_higher_score():
    gt = np.array([[0.1, 0.1, 0.5, 0.5]])
    dets = np.array([gt[0], shifted(gt[0], 0.02)])
    # The lower-scored exact box arrives second in score order, so it is the duplicate.
    assert match_detections(dets, [0.3, 0.9], gt).tolist() == [FALSE_POSITIVE, TRUE_POSITIVE]


def test_multi_class():
    """4 classes: c0 perfect (AP 1), c1 half found before a FP (AP .5), c2 no GT (None, excluded), c3 missed (AP 0).

    c1: 2 GT; d(.9) TP -> (P 1, R .5), d(.3) FP -> (P .5, R .5); envelope -> AP = .5 * 1 = .5.
    A class-2 detection sitting exactly on c0's GT counts for nothing in class 0.
    mAP = mean(1, .5, 0) = 0.5.
    """
    a, b, c = [0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.8, 0.8], [0.1, 0.6, 0.4, 0.9]
    far = [0.9, 0.0, 1.0, 0.1]
    evaluator = DetectionEvaluator(num_classes=4)
    evaluator.add(
        det_boxes=np.array([a, b, a, far]),
        det_scores=np.array([0.8, 0.9, 0.95, 0.3]),
        det_classes=np.array([0, 1, 2, 1]),
        gt_boxes=np.array([a, b, c]),
        gt_classes=np.array([0, 1, 1]),
    )
    evaluator.add(EMPTY_BOXES, EMPTY, EMPTY, np.array([b]), np.array([3]))
    result = evaluator.result()
    assert result["per_class_ap"] == [pytest.approx(1.0), pytest.approx(0.5), None, 0.0]
    assert result["map"] == pytest.approx(0.5)
    assert result["num_gt"] == [1, 2, 0, 1]
    assert result["num_detections"] == [1, 2, 1, 0]
    assert result["per_class_recall"] == [1.0, 0.5, None, 0.0]


def test_difficult_ground_truth_is_ignored():
    """g_easy normal, g_hard difficult. d1 (.9) on g_hard and d2 (.85) on g_hard again -> both ignored;
    d3 (.8) on g_easy -> TP. Only g_easy counts: (P 1, R 1) -> AP 1.
    Without the flag: TP, FP (duplicate), TP over 2 GT -> (1, .5), (.5, .5), (2/3, 1) -> AP = .5 + .5 * 2/3."""
    g_easy, g_hard = [0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9]
    dets = np.array([g_hard, shifted(g_hard, 0.02), g_easy])
    scores = np.array([0.9, 0.85, 0.8])
    labels = match_detections(dets, scores, np.array([g_easy, g_hard]), np.array([False, True]))
    assert labels.tolist() == [IGNORED, IGNORED, TRUE_POSITIVE]

    with_flag = DetectionEvaluator(1)
    with_flag.add(dets, scores, [0, 0, 0], np.array([g_easy, g_hard]), [0, 0], gt_difficult=[False, True])
    assert with_flag.result()["per_class_ap"] == [pytest.approx(1.0)]
    assert with_flag.result()["num_gt"] == [1]

    without_flag = DetectionEvaluator(1)
    without_flag.add(dets, scores, [0, 0, 0], np.array([g_easy, g_hard]), [0, 0])
    assert without_flag.result()["per_class_ap"] == [pytest.approx(0.5 + 0.5 * 2 / 3)]


def test_only_difficult_ground_truth_class_is_excluded():
    evaluator = DetectionEvaluator(2)
    box = [0.2, 0.2, 0.6, 0.6]
    evaluator.add([box, box], [0.9, 0.8], [0, 1], [box, box], [0, 1], gt_difficult=[False, True])
    result = evaluator.result()
    assert result["per_class_ap"] == [1.0, None]
    assert result["map"] == 1.0


def test_empty_detections_and_empty_evaluator():
    evaluator = DetectionEvaluator(2)
    result = evaluator.result()
    assert math.isnan(result["map"])
    assert result["per_class_ap"] == [None, None]

    evaluator.add(EMPTY_BOXES, EMPTY, EMPTY, np.array([[0.1, 0.1, 0.5, 0.5]]), np.array([1]))
    evaluator.add(EMPTY_BOXES, EMPTY, EMPTY, EMPTY_BOXES, EMPTY)  # background-only image, nothing detected
    result = evaluator.result()
    assert result["per_class_ap"] == [None, 0.0]
    assert result["map"] == 0.0
    assert result["num_images"] == 2

    evaluator.reset()
    assert evaluator.result()["num_images"] == 0


def test_detections_on_image_without_ground_truth_are_false_positives():
    box = [0.2, 0.2, 0.6, 0.6]
    evaluator = DetectionEvaluator(1)
    evaluator.add([box], [0.95], [0], EMPTY_BOXES, EMPTY)  # highest score, on an empty image
    evaluator.add([box], [0.9], [0], [box], [0])
    # FP then TP: (P 0, R 0), (P .5, R 1) -> AP = .5
    assert evaluator.result()["map"] == pytest.approx(0.5)


def test_perfect_detections_score_one():
    rng = np.random.default_rng(0)
    evaluator = DetectionEvaluator(num_classes=5)
    for _ in range(20):
        count = int(rng.integers(0, 6))
        ymin, xmin = rng.uniform(0, 0.6, size=(2, count))
        height, width = rng.uniform(0.05, 0.4, size=(2, count))
        boxes = np.stack([ymin, xmin, ymin + height, xmin + width], axis=-1)
        classes = rng.integers(0, 5, size=count)
        evaluator.add(boxes, rng.uniform(0.1, 1.0, size=count), classes, boxes, classes)
    result = evaluator.result()
    assert result["map"] == pytest.approx(1.0)
    assert all(ap is None or ap == pytest.approx(1.0) for ap in result["per_class_ap"])


def test_invalid_input_is_rejected_with_clear_errors():
    evaluator = DetectionEvaluator(2)
    box = [[0.1, 0.1, 0.5, 0.5]]
    with pytest.raises(ValueError, match=r"det_classes must be 0-based class ids in \[0, 2\)"):
        evaluator.add(box, [0.9], [2], box, [0])
    with pytest.raises(ValueError, match="gt_classes"):
        evaluator.add(box, [0.9], [0], box, [-1])
    with pytest.raises(ValueError, match="same length"):
        evaluator.add(box, [0.9, 0.8], [0], box, [0])
    with pytest.raises(ValueError, match="num_classes"):
        DetectionEvaluator(0)
    with pytest.raises(ValueError, match="iou_threshold"):
        DetectionEvaluator(1, iou_threshold=0.0)


def test_memory_per_added_image_stays_small():
    """A live run adds every frame for hours: the evaluator keeps a few bytes per detection, not arrays per image."""
    import tracemalloc

    rng = np.random.default_rng(0)
    evaluator = DetectionEvaluator(num_classes=3)
    gt = np.array([[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9]], np.float32)
    det = gt[[0, 1, 1]] + np.float32(0.01)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(2000):
        evaluator.add(det, rng.random(3, dtype=np.float32), np.array([0, 1, 2]), gt, np.array([0, 1]))
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 2000 * 3 * 16, f"{grown} bytes for 6000 detections"
    assert evaluator.result()["num_detections"] == [2000, 2000, 2000]
