"""Pascal VOC average precision in pure NumPy — used by ``train.evaluate`` and the edge's live report.

Boxes are ``(N, 4)`` normalized ``ymin, xmin, ymax, xmax``; class ids are 0-based indices into the
labels (background excluded), as returned by ``edge.postprocess.decode_and_nms``.

Matching follows the VOC devkit (``VOCevaldet``): per image and class, detections are taken in
descending score order and each is assigned to the ground truth it overlaps most. It is a true
positive when that IoU is ``>= iou_threshold`` and the ground truth is not yet taken, a false positive
otherwise (including a second detection of the same object). A detection whose best ground truth is
marked ``difficult`` is ignored (neither TP nor FP), and difficult ground truths do not count towards
recall. AP is the area under the precision/recall curve with all-point interpolation (VOC2010+).
"""

from __future__ import annotations

import math
from array import array

import numpy as np

from edge.boxes import iou_matrix

TRUE_POSITIVE = 1
FALSE_POSITIVE = 0
IGNORED = -1


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP (VOC2010+) of a precision/recall curve.

    ``recall`` and ``precision`` are ``(K,)`` arrays in detection order (recall non-decreasing).
    Precision is made monotonically non-increasing from the right, then integrated over recall.
    An empty curve has AP 0.
    """
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if recall.shape != precision.shape or recall.ndim != 1:
        raise ValueError(f"recall and precision must be 1-D of equal length, got {recall.shape} and {precision.shape}")
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    changes = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[changes + 1] - mrec[changes]) * mpre[changes + 1]))


def match_detections(
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    gt_boxes: np.ndarray,
    gt_difficult: np.ndarray | None = None,
    iou_threshold: float = 0.5,
) -> np.ndarray:
    """Greedy VOC matching of one image's detections of one class to its ground truths.

    ``det_boxes`` ``(D, 4)``, ``det_scores`` ``(D,)``, ``gt_boxes`` ``(G, 4)`` normalized
    ``ymin, xmin, ymax, xmax``; ``gt_difficult`` ``(G,)`` bool or None. Returns ``(D,)`` int8 in the
    order of the input detections: ``TRUE_POSITIVE`` (1), ``FALSE_POSITIVE`` (0) or ``IGNORED`` (-1).
    """
    det_boxes = np.asarray(det_boxes, dtype=np.float32).reshape(-1, 4)
    det_scores = np.asarray(det_scores, dtype=np.float32).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float32).reshape(-1, 4)
    difficult = np.zeros(len(gt_boxes), bool) if gt_difficult is None else np.asarray(gt_difficult, bool).reshape(-1)
    if len(det_boxes) != len(det_scores):
        raise ValueError(f"det_boxes {det_boxes.shape} and det_scores {det_scores.shape} disagree in length")
    if len(difficult) != len(gt_boxes):
        raise ValueError(f"gt_difficult {difficult.shape} and gt_boxes {gt_boxes.shape} disagree in length")
    labels = np.full(len(det_boxes), FALSE_POSITIVE, dtype=np.int8)
    if len(det_boxes) == 0 or len(gt_boxes) == 0:
        return labels
    ious = iou_matrix(det_boxes, gt_boxes)  # (D, G)
    taken = np.zeros(len(gt_boxes), bool)
    for d in np.argsort(-det_scores, kind="stable"):
        best = int(np.argmax(ious[d]))
        if ious[d, best] < iou_threshold:
            continue
        if difficult[best]:
            labels[d] = IGNORED
        elif not taken[best]:
            taken[best] = True
            labels[d] = TRUE_POSITIVE
    return labels


class DetectionEvaluator:
    """Streaming Pascal VOC mAP: ``add`` one image at a time, ``result`` at any point.

    Memory grows with the number of detections (one score and one flag per detection), not images.
    """

    def __init__(self, num_classes: int, iou_threshold: float = 0.5) -> None:
        if num_classes < 1:
            raise ValueError(f"DetectionEvaluator: num_classes must be >= 1, got {num_classes}")
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"DetectionEvaluator: iou_threshold must be in (0, 1], got {iou_threshold}")
        self.num_classes = int(num_classes)
        self.iou_threshold = float(iou_threshold)
        self.reset()

    def reset(self) -> None:
        """Forget everything added so far."""
        self.num_images = 0
        self._num_gt = np.zeros(self.num_classes, dtype=np.int64)
        # One flat buffer per class (4 + 1 bytes a detection), not two arrays per image and class: a live run
        # adds every frame for hours (``scripts/soak.py``), and ~100-byte array objects per frame add up.
        self._scores: list[array] = [array("f") for _ in range(self.num_classes)]
        self._labels: list[array] = [array("b") for _ in range(self.num_classes)]

    def _check_classes(self, classes: np.ndarray, name: str) -> np.ndarray:
        classes = np.asarray(classes).reshape(-1)
        if classes.size and (classes.min() < 0 or classes.max() >= self.num_classes):
            raise ValueError(
                f"{name} must be 0-based class ids in [0, {self.num_classes}), got values {np.unique(classes).tolist()}"
            )
        return classes.astype(np.int64)

    def add(
        self,
        det_boxes: np.ndarray,
        det_scores: np.ndarray,
        det_classes: np.ndarray,
        gt_boxes: np.ndarray,
        gt_classes: np.ndarray,
        gt_difficult: np.ndarray | None = None,
    ) -> None:
        """Add one image.

        ``det_boxes`` ``(D, 4)`` / ``gt_boxes`` ``(G, 4)``: normalized ``ymin, xmin, ymax, xmax`` (any float
        dtype); ``det_scores`` ``(D,)`` float; ``det_classes`` ``(D,)`` / ``gt_classes`` ``(G,)`` int 0-based;
        ``gt_difficult`` ``(G,)`` bool or None (no difficult objects).
        """
        det_boxes = np.asarray(det_boxes, dtype=np.float32).reshape(-1, 4)
        det_scores = np.asarray(det_scores, dtype=np.float32).reshape(-1)
        det_classes = self._check_classes(det_classes, "det_classes")
        gt_boxes = np.asarray(gt_boxes, dtype=np.float32).reshape(-1, 4)
        gt_classes = self._check_classes(gt_classes, "gt_classes")
        difficult = (
            np.zeros(len(gt_boxes), bool) if gt_difficult is None else np.asarray(gt_difficult, bool).reshape(-1)
        )
        if not len(det_boxes) == len(det_scores) == len(det_classes):
            raise ValueError(
                f"det_boxes {det_boxes.shape}, det_scores {det_scores.shape} and det_classes {det_classes.shape} "
                "must have the same length"
            )
        if not len(gt_boxes) == len(gt_classes) == len(difficult):
            raise ValueError(
                f"gt_boxes {gt_boxes.shape}, gt_classes {gt_classes.shape} and gt_difficult {difficult.shape} "
                "must have the same length"
            )
        self.num_images += 1
        self._num_gt += np.bincount(gt_classes[~difficult], minlength=self.num_classes)
        for c in np.unique(det_classes):
            det_mask = det_classes == c
            gt_mask = gt_classes == c
            labels = match_detections(
                det_boxes[det_mask], det_scores[det_mask], gt_boxes[gt_mask], difficult[gt_mask], self.iou_threshold
            )
            self._scores[c].frombytes(det_scores[det_mask].tobytes())
            self._labels[c].frombytes(np.asarray(labels, dtype=np.int8).tobytes())

    def precision_recall(self, class_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``(precision, recall)`` ``(K,)`` float64 of one class over its non-ignored detections, by descending score.

        Ties in score keep the order in which detections were added. Recall is NaN-free: with no
        ground truth it is all zeros.
        """
        if not 0 <= class_id < self.num_classes:
            raise ValueError(f"class_id must be in [0, {self.num_classes}), got {class_id}")
        if not self._scores[class_id]:
            return np.zeros(0), np.zeros(0)
        scores = np.frombuffer(self._scores[class_id], dtype=np.float32)
        labels = np.frombuffer(self._labels[class_id], dtype=np.int8)
        order = np.argsort(-scores, kind="stable")
        labels = labels[order]
        labels = labels[labels != IGNORED]
        tp = np.cumsum(labels == TRUE_POSITIVE, dtype=np.float64)
        fp = np.cumsum(labels == FALSE_POSITIVE, dtype=np.float64)
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        recall = tp / max(int(self._num_gt[class_id]), 1)
        return precision, recall

    def result(self) -> dict:
        """Metrics so far.

        Returns ``{"map": float, "per_class_ap": [float | None] * C, "num_gt": [int] * C,
        "num_detections": [int] * C, "per_class_recall": [float | None] * C, "num_images": int,
        "iou_threshold": float}``. A class without (non-difficult) ground truth has AP ``None`` and is
        left out of the mean; ``map`` is NaN when no class has ground truth. ``per_class_recall`` is the
        recall at the lowest score kept.
        """
        per_class_ap: list[float | None] = []
        per_class_recall: list[float | None] = []
        num_detections = []
        for c in range(self.num_classes):
            num_detections.append(len(self._scores[c]))
            if self._num_gt[c] == 0:
                per_class_ap.append(None)
                per_class_recall.append(None)
                continue
            precision, recall = self.precision_recall(c)
            per_class_ap.append(average_precision(recall, precision))
            per_class_recall.append(float(recall[-1]) if len(recall) else 0.0)
        valid = [ap for ap in per_class_ap if ap is not None]
        return {
            "map": float(np.mean(valid)) if valid else math.nan,
            "per_class_ap": per_class_ap,
            "num_gt": self._num_gt.astype(int).tolist(),
            "num_detections": num_detections,
            "per_class_recall": per_class_recall,
            "num_images": self.num_images,
            "iou_threshold": self.iou_threshold,
        }
