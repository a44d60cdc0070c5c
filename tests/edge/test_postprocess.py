"""decode_and_nms / nms: hand-built cases and parity with per-class tf.image.non_max_suppression."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from edge import postprocess
from edge.anchors import generate_anchors
from edge.boxes import corners_to_center, decode_boxes, encode_boxes, iou_matrix
from edge.postprocess import SSDDecoder, decode_and_nms, grouped_nms, nms


def _outputs(boxes: list[list[float]], class_probs: list[dict[int, float]]) -> tuple[np.ndarray, ...]:
    """Model outputs whose decoded boxes are exactly ``boxes`` (anchors = the boxes, zero deltas).

    ``class_probs[i]`` maps 0-based class id -> score for anchor ``i``; 3 classes + background.
    """
    corners = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    anchors = corners_to_center(corners).astype(np.float32)
    deltas = np.zeros_like(anchors)
    scores = np.zeros((len(corners), 4), dtype=np.float32)
    for i, probs in enumerate(class_probs):
        for class_id, p in probs.items():
            scores[i, class_id + 1] = p
        scores[i, 0] = max(0.0, 1.0 - sum(probs.values()))
    return deltas, scores, anchors


def test_overlapping_same_class_suppressed_best_first():
    deltas, scores, anchors = _outputs(
        [[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.52, 0.5], [0.6, 0.6, 0.9, 0.9]],
        [{0: 0.7}, {0: 0.9}, {0: 0.8}],
    )
    boxes, out_scores, class_ids = decode_and_nms(deltas, scores, anchors)
    np.testing.assert_allclose(out_scores, [0.9, 0.8], rtol=1e-6)
    np.testing.assert_allclose(boxes, [[0.12, 0.1, 0.52, 0.5], [0.6, 0.6, 0.9, 0.9]], atol=1e-6)
    assert class_ids.tolist() == [0, 0]
    assert boxes.dtype == np.float32 and out_scores.dtype == np.float32 and class_ids.dtype == np.int32


def test_different_classes_are_not_suppressed_and_multilabel_anchor():
    deltas, scores, anchors = _outputs(
        [[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.5]],
        [{1: 0.9}, {2: 0.8}, {0: 0.45, 1: 0.05}],
    )
    # the same anchor above threshold for two classes keeps both
    scores[2] = [0.0, 0.6, 0.0, 0.7]
    _, out_scores, class_ids = decode_and_nms(deltas, scores, anchors)
    assert class_ids.tolist() == [1, 2, 0]
    np.testing.assert_allclose(out_scores, [0.9, 0.8, 0.6], rtol=1e-6)


def test_score_threshold_is_strict():
    deltas, scores, anchors = _outputs(
        [[0.0, 0.0, 0.2, 0.2], [0.5, 0.5, 0.7, 0.7], [0.3, 0.0, 0.4, 0.1]],
        [{0: 0.5}, {1: 0.51}, {2: 0.3}],
    )
    _, out_scores, class_ids = decode_and_nms(deltas, scores, anchors, score_threshold=0.5)
    assert class_ids.tolist() == [1]
    _, out_scores, class_ids = decode_and_nms(deltas, scores, anchors, score_threshold=0.25)
    assert class_ids.tolist() == [1, 0, 2]


def test_iou_threshold():
    a = [0.0, 0.0, 0.4, 0.4]
    b = [0.0, 0.2, 0.4, 0.6]  # IoU with a = 1/3
    iou = float(iou_matrix(np.array([a]), np.array([b]))[0, 0])
    assert iou == pytest.approx(1 / 3, abs=1e-6)
    deltas, scores, anchors = _outputs([a, b], [{0: 0.9}, {0: 0.8}])
    assert len(decode_and_nms(deltas, scores, anchors, iou_threshold=0.3)[0]) == 1
    assert len(decode_and_nms(deltas, scores, anchors, iou_threshold=0.34)[0]) == 2


def test_empty_inputs():
    for boxes, scores, class_ids in (
        decode_and_nms(np.zeros((0, 4)), np.zeros((0, 5)), np.zeros((0, 4))),
        decode_and_nms(*_outputs([[0.1, 0.1, 0.2, 0.2]], [{0: 0.1}])),
    ):
        assert boxes.shape == (0, 4) and boxes.dtype == np.float32
        assert scores.shape == (0,) and scores.dtype == np.float32
        assert class_ids.shape == (0,) and class_ids.dtype == np.int32


def test_max_detections_keeps_the_best():
    rng = np.random.default_rng(0)
    corners = [[y, x, y + 0.05, x + 0.05] for y in np.arange(0, 0.9, 0.1) for x in np.arange(0, 0.9, 0.1)]
    probs = [{int(rng.integers(3)): float(p)} for p in rng.uniform(0.6, 0.99, len(corners))]
    deltas, scores, anchors = _outputs(corners, probs)
    _, all_scores, _ = decode_and_nms(deltas, scores, anchors, max_detections=1000)
    assert len(all_scores) == len(corners)
    _, top_scores, _ = decode_and_nms(deltas, scores, anchors, max_detections=7)
    np.testing.assert_array_equal(top_scores, np.sort(all_scores)[::-1][:7])
    assert len(decode_and_nms(deltas, scores, anchors, max_detections=0)[0]) == 0


def test_boxes_clipped_and_huge_deltas_finite():
    anchors = np.array([[0.05, 0.95, 0.3, 0.3], [0.5, 0.5, 0.1, 0.1]], dtype=np.float32)
    deltas = np.array([[0.0, 0.0, 0.0, 0.0], [1e4, -1e4, 1e6, 1e30]], dtype=np.float32)
    scores = np.array([[0.1, 0.9, 0.0], [0.2, 0.0, 0.8]], dtype=np.float32)
    boxes, _, class_ids = decode_and_nms(deltas, scores, anchors)
    assert np.isfinite(boxes).all()
    assert boxes.min() >= 0.0 and boxes.max() <= 1.0
    np.testing.assert_allclose(boxes[0], [0.0, 0.8, 0.2, 1.0], atol=1e-6)
    assert class_ids.tolist() == [0, 1]


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="box_deltas"):
        decode_and_nms(np.zeros((3, 3)), np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="anchors"):
        decode_and_nms(np.zeros((3, 4)), np.zeros((3, 2)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="class_scores"):
        decode_and_nms(np.zeros((3, 4)), np.zeros((3,)), np.zeros((3, 4)))


def test_nms_primitive():
    boxes = np.array([[0, 0, 1, 1], [0, 0, 0.9, 1], [0, 2, 1, 3], [0, 0, 1, 1]], dtype=np.float32)
    scores = np.array([0.5, 0.9, 0.7, 0.5], dtype=np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.95).tolist() == [1, 2, 0]  # equal boxes/scores: lower index wins
    assert nms(boxes, scores, 0.95, max_output=2).tolist() == [1, 2]
    assert nms(np.zeros((0, 4)), np.zeros((0,))).shape == (0,)


def _greedy_reference(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep: list[int] = []
    for i in order:
        if all(iou_matrix(boxes[i : i + 1], boxes[k : k + 1])[0, 0] <= threshold for k in keep):
            keep.append(i)
    return keep


def test_nms_matches_plain_greedy_on_random_boxes():
    rng = np.random.default_rng(3)
    for _ in range(30):
        n = int(rng.integers(1, 60))
        corners = rng.uniform(0, 1, (n, 2))
        boxes = np.concatenate([corners, corners + rng.uniform(0, 0.4, (n, 2))], axis=1).astype(np.float32)
        scores = rng.choice(np.linspace(0, 1, 7), n).astype(np.float32)  # with ties
        threshold = float(rng.uniform(0.1, 0.8))
        assert nms(boxes, scores, threshold, max_output=1000).tolist() == _greedy_reference(boxes, scores, threshold)


def _random_grouped(rng: np.random.Generator, sizes: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes in clusters, grouped by class (ascending) with tied scores best first: boxes, scores, classes."""
    classes = np.repeat(np.arange(len(sizes)) * 2, sizes)  # gaps: classes need not be consecutive
    n = classes.size
    centers = rng.uniform(0.2, 0.8, (3, 2))[rng.integers(0, 3, n)] + rng.normal(0, 0.05, (n, 2))
    half = rng.uniform(0.02, 0.2, (n, 2))
    boxes = np.concatenate([centers - half, centers + half], axis=1).clip(0, 1).astype(np.float32)
    scores = rng.choice(np.linspace(0.1, 1, 6), n).astype(np.float32)
    order = np.lexsort((-scores, classes))
    return boxes[order], scores[order], classes[order]


@pytest.mark.parametrize("sizes", [[1], [5], [3, 1, 7, 1], [12, 30, 2], [70, 4], [1, 1, 1]])
def test_grouped_nms_is_per_class_greedy(sizes):
    rng = np.random.default_rng(sum(sizes))
    boxes, scores, classes = _random_grouped(rng, sizes)
    for threshold in (0.0, 0.3, 0.5, 0.9, 1.0):
        expected = []
        for c in np.unique(classes):
            rows = np.flatnonzero(classes == c)
            expected += rows[_greedy_reference(boxes[rows], scores[rows], threshold)].tolist()
        assert grouped_nms(boxes, classes, threshold) == sorted(expected)


def test_grouped_nms_in_several_steps_matches_one(monkeypatch):
    """Large bands are compared a few columns at a time; the result must not depend on the step."""
    boxes, _, classes = _random_grouped(np.random.default_rng(5), [40, 3, 60, 1])
    whole = grouped_nms(boxes, classes, 0.4)
    monkeypatch.setattr(postprocess, "_BAND_PAIRS", 7 * 61)  # 7 boxes per step for the 61-deep band
    assert grouped_nms(boxes, classes, 0.4) == whole
    monkeypatch.setattr(postprocess, "_BAND_PAIRS", 1)
    assert grouped_nms(boxes, classes, 0.4) == whole


def test_grouped_nms_edge_cases():
    square = [0.125, 0.125, 0.625, 0.625]
    point = [0.25, 0.25, 0.25, 0.25]  # zero area: never suppressed, suppresses nothing
    half = [0.125, 0.125, 0.625, 0.375]  # IoU with square exactly 0.5
    boxes = np.array([square, square, point, point, half], dtype=np.float32)
    assert grouped_nms(boxes, np.zeros(5, dtype=np.int64), 0.5) == [0, 2, 3, 4]
    assert grouped_nms(boxes, np.zeros(5, dtype=np.int64), 0.49) == [0, 2, 3]
    assert grouped_nms(boxes, np.array([0, 1, 1, 2, 2]), 0.5) == [0, 1, 2, 3, 4]
    assert grouped_nms(np.zeros((0, 4), dtype=np.float32), np.zeros(0, dtype=np.int64)) == []
    with pytest.raises(ValueError, match="boxes"):
        grouped_nms(np.zeros((3, 3)), np.zeros(3, dtype=np.int64))


def _realistic_outputs(seed: int, num_classes: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SSD300-like outputs: background everywhere, clusters of confident anchors around ~10 objects."""
    rng = np.random.default_rng(seed)
    anchors = generate_anchors(300)
    n = anchors.shape[0]
    centers = rng.uniform(0.15, 0.85, (10, 2))
    sizes = rng.uniform(0.08, 0.5, (10, 2))
    gt = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1).clip(0, 1).astype(np.float32)
    gt_classes = rng.integers(1, 4, 10)  # few classes: several objects per class
    iou = iou_matrix(decode_boxes(np.zeros_like(anchors), anchors), gt)
    best, best_iou = iou.argmax(1), iou.max(1)
    logits = rng.normal(0, 1, (n, num_classes + 1)).astype(np.float32)
    logits[:, 0] += 6
    rows = np.flatnonzero(best_iou > 0.3)
    logits[rows, gt_classes[best[rows]]] += 6 + 15 * (best_iou[rows] - 0.5) + rng.normal(0, 1, rows.size)
    scores = np.exp(logits - logits.max(1, keepdims=True))
    scores /= scores.sum(1, keepdims=True)
    deltas = rng.normal(0, 0.5, (n, 4)).astype(np.float32)
    deltas[rows] = encode_boxes(gt[best[rows]] + rng.normal(0, 0.03, (rows.size, 4)), anchors[rows])
    return deltas, scores.astype(np.float32), anchors


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="TensorFlow is not installed")
@pytest.mark.parametrize("seed", range(4))
def test_parity_with_tf_per_class_nms(seed):
    import tensorflow as tf

    deltas, scores, anchors = _realistic_outputs(seed)
    score_threshold, iou_threshold = 0.3, 0.45
    boxes_all = decode_boxes(deltas, anchors).clip(0, 1)
    expected = []
    for class_index in range(1, scores.shape[1]):
        rows = np.flatnonzero(scores[:, class_index] > score_threshold)
        if not rows.size:
            continue
        kept = tf.image.non_max_suppression(
            boxes_all[rows], scores[rows, class_index], rows.size, iou_threshold, score_threshold
        ).numpy()
        expected += [(class_index - 1, float(scores[r, class_index]), *boxes_all[r]) for r in rows[kept]]
    expected.sort(key=lambda row: -row[1])
    candidates = int((scores[:, 1:] > score_threshold).sum())
    assert 20 < candidates < 400, "the generator should give a realistic, un-truncated candidate count"

    boxes, out_scores, class_ids = decode_and_nms(
        deltas, scores, anchors, score_threshold, iou_threshold, max_detections=1000
    )
    assert len(expected) > 5
    ours = sorted(zip(class_ids.tolist(), out_scores.tolist(), *boxes.T.tolist(), strict=True), key=lambda r: r[:2])
    assert len(ours) == len(expected)
    np.testing.assert_allclose(np.array(ours), np.array(sorted(expected, key=lambda r: r[:2])), atol=1e-6)
    assert np.all(np.diff(out_scores) <= 0)


def _reference_decode_and_nms(deltas, scores, anchors, score_threshold, iou_threshold, max_detections, top_k):
    """decode_and_nms written plainly: candidates, top-k, greedy NMS class by class, best first."""
    boxes = decode_boxes(deltas, anchors).clip(0, 1)
    anchor_index, column = np.nonzero(scores > score_threshold)
    candidates = sorted(
        (-float(scores[a, c]), int(a), int(c)) for a, c in zip(anchor_index, column, strict=True) if c > 0
    )
    if top_k > 0:
        candidates = candidates[:top_k]
    kept = []
    for c in sorted({c for _, _, c in candidates}):
        ordered = [k for k in candidates if k[2] == c]
        rows = [a for _, a, _ in ordered]
        kept += [ordered[i] for i in _greedy_reference(boxes[rows], -np.array([k[0] for k in ordered]), iou_threshold)]
    kept = sorted(kept)[:max_detections]
    rows = [a for _, a, _ in kept]
    return (
        boxes[rows].reshape(-1, 4).astype(np.float32),
        scores[rows, [c for _, _, c in kept]].astype(np.float32),
        np.array([c - 1 for _, _, c in kept], dtype=np.int32),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_decode_and_nms_matches_plain_reference(dtype):
    """Random outputs, ties included (few distinct scores; uint8 as a quantized model gives them)."""
    rng = np.random.default_rng(7)
    for trial in range(12):
        n, columns = int(rng.integers(1, 300)), int(rng.integers(2, 7))
        anchors = np.concatenate([rng.uniform(0, 1, (n, 2)), rng.uniform(0.02, 0.4, (n, 2))], 1).astype(np.float32)
        deltas = rng.normal(0, 0.6, (n, 4)).astype(np.float32)
        levels = np.linspace(0, 1, int(rng.integers(3, 40)))
        scores = rng.choice(levels, (n, columns))
        scores = (scores * 255).round().astype(np.uint8) if dtype == np.uint8 else scores.astype(dtype)
        threshold = float(rng.choice([0.0, 0.3, 0.5, levels[1]])) * (255 if dtype == np.uint8 else 1)
        if dtype == np.float64 and trial % 3 == 0:
            threshold = -0.1  # negative thresholds take every score
        iou_threshold = float(rng.uniform(0.2, 0.8))
        max_detections, top_k = int(rng.integers(1, 60)), int(rng.choice([0, 5, 50, 400]))
        got = decode_and_nms(deltas, scores, anchors, threshold, iou_threshold, max_detections, pre_nms_top_k=top_k)
        expected = _reference_decode_and_nms(deltas, scores, anchors, threshold, iou_threshold, max_detections, top_k)
        for ours, theirs in zip(got, expected, strict=True):
            assert ours.dtype == theirs.dtype
            np.testing.assert_array_equal(ours, theirs)


def test_score_filter_edge_cases():
    deltas, scores, anchors = _outputs([[0.1, 0.1, 0.2, 0.2], [0.5, 0.5, 0.9, 0.9]], [{0: 0.5}, {1: 0.5}])
    assert len(decode_and_nms(deltas, scores, anchors, score_threshold=0.5)[0]) == 0  # equal is not above
    just_below = float(np.nextafter(np.float32(0.5), 0))
    assert decode_and_nms(deltas, scores, anchors, score_threshold=just_below)[2].tolist() == [0, 1]
    assert len(decode_and_nms(deltas, scores, anchors, score_threshold=1.0)[0]) == 0  # no candidates
    # every (anchor, class) pair a candidate, the background never: 2 anchors x 3 classes, none overlapping
    every = np.full_like(scores, 0.9)
    boxes, out_scores, class_ids = decode_and_nms(deltas, every, anchors, score_threshold=0.0, max_detections=10)
    assert class_ids.tolist() == [0, 1, 2, 0, 1, 2]  # equal scores: lower anchor, then lower class first
    np.testing.assert_allclose(boxes, [[0.1, 0.1, 0.2, 0.2]] * 3 + [[0.5, 0.5, 0.9, 0.9]] * 3, atol=1e-6)
    assert decode_and_nms(deltas, every, anchors, 0.0, pre_nms_top_k=4)[2].tolist() == [0, 1, 2, 0]
    assert len(decode_and_nms(deltas, np.full_like(scores, np.nan), anchors, score_threshold=0.0)[0]) == 0


def test_decoded_boxes_are_decode_boxes_clipped():
    """The decoder's own decode gives decode_boxes' values bit for bit, extreme deltas included."""
    rng = np.random.default_rng(1)
    anchors = generate_anchors(300)
    deltas = rng.normal(0, 3, anchors.shape).astype(np.float32)
    deltas[::7] *= 1e4
    scores = np.zeros((anchors.shape[0], 2), dtype=np.float32)
    scores[:, 1] = rng.uniform(0.5, 1, anchors.shape[0])
    boxes, out_scores, _ = SSDDecoder(anchors)(deltas, scores, 0.0, 1.0, 10_000, pre_nms_top_k=0)
    order = np.argsort(-scores[:, 1], kind="stable")
    np.testing.assert_array_equal(out_scores, scores[order, 1])
    np.testing.assert_array_equal(boxes, decode_boxes(deltas, anchors).clip(0, 1)[order])


def test_decode_and_nms_notices_other_or_changed_anchors():
    deltas, scores, anchors = _outputs([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]], [{0: 0.9}, {1: 0.8}])
    before = decode_and_nms(deltas, scores, anchors)[0]
    moved = anchors.copy()
    moved[:, :2] += 0.05
    after = decode_and_nms(deltas, scores, moved)[0]
    np.testing.assert_allclose(after, before + 0.05, atol=1e-6)
    np.testing.assert_array_equal(decode_and_nms(deltas, scores, anchors)[0], before)
    anchors[:, :2] += 0.05  # the same array, changed in place
    np.testing.assert_array_equal(decode_and_nms(deltas, scores, anchors)[0], after)
    wider = decode_and_nms(deltas, scores, anchors, variances=(0.1, 0.1, 0.4, 0.4))[0]
    np.testing.assert_array_equal(wider, SSDDecoder(anchors, (0.1, 0.1, 0.4, 0.4))(deltas, scores)[0])
    with pytest.raises(ValueError, match="box_deltas"):
        SSDDecoder(anchors)(deltas[:1], scores)
    with pytest.raises(ValueError, match="class_scores"):
        SSDDecoder(anchors)(deltas, scores[:1])


def test_select_detections_reads_only_written_valid_slots():
    from edge.postprocess import select_detections

    boxes = np.array([[0.1, 0.1, 0.5, 0.5], [-0.1, 0.2, 1.2, 0.9], [0.2, 0.2, 0.3, 0.3], [np.nan, 0, 3e38, 1]])
    classes = np.array([2.0, 0.0, 7.0, np.nan])
    scores = np.array([0.9, 0.6, 0.8, np.nan])
    got_boxes, got_scores, got_ids = select_detections(boxes, classes, scores, np.array([4.0]), 0.5, 10, 3)
    np.testing.assert_array_equal(got_ids, [2, 0])  # class 7 is out of range, slot 3 is not finite
    np.testing.assert_allclose(got_scores, [0.9, 0.6])
    np.testing.assert_allclose(got_boxes[1], [0.0, 0.2, 1.0, 0.9])  # clipped to the image
    assert len(select_detections(boxes, classes, scores, np.array([1.0]), 0.5)[1]) == 1  # slots past count ignored
    assert len(select_detections(boxes, classes, scores, np.array([np.nan]), 0.5)[1]) == 0
    assert len(select_detections(boxes, classes, scores, 99.0, 0.5, max_detections=1)[1]) == 1
    with pytest.raises(ValueError, match="same number of slots"):
        select_detections(boxes[:2], classes, scores, 4.0)
