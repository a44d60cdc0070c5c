"""Benchmark ``edge.postprocess.decode_and_nms`` on an SSD300-sized output against OpenCV's NMS alone.

Input (seeded): 1917 anchors (``generate_anchors(300)``), 21 classes (20 + background); most anchors
are confidently background, ~10 objects each light up a cluster of overlapping anchors with high
scores (a few with a runner-up class too). We time the whole ``decode_and_nms`` call, and
``cv2.dnn.NMSBoxesBatched`` doing NMS alone on the same decoded candidates (score > threshold).

Usage: ``python scripts/bench_postprocess.py [--runs 2000] [--out bench/results]``
Writes ``postprocess.json`` and ``postprocess.png`` (latency histograms) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edge.anchors import generate_anchors
from edge.boxes import VARIANCES, decode_boxes, encode_boxes, iou_matrix
from edge.postprocess import decode_and_nms

TARGET_MEDIAN_MS = 1.0


def make_ssd_output(
    anchors: np.ndarray, num_classes: int = 20, num_objects: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Realistic raw SSD outputs for ``anchors`` ``(N, 4)``: deltas ``(N, 4)`` and softmax scores ``(N, C+1)`` float32."""
    rng = np.random.default_rng(seed)
    n = anchors.shape[0]
    centers = rng.uniform(0.15, 0.85, size=(num_objects, 2))
    sizes = rng.uniform(0.08, 0.5, size=(num_objects, 2))
    gt = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1).clip(0, 1).astype(np.float32)
    gt_classes = rng.integers(1, num_classes + 1, size=num_objects)
    anchor_corners = np.concatenate([anchors[:, :2] - anchors[:, 2:] / 2, anchors[:, :2] + anchors[:, 2:] / 2], 1)
    iou = iou_matrix(anchor_corners, gt)  # (N, objects)
    best = iou.argmax(axis=1)
    best_iou = iou.max(axis=1)

    logits = rng.normal(0.0, 1.0, size=(n, num_classes + 1)).astype(np.float32)
    logits[:, 0] += 6.0  # background dominates everywhere ...
    rows = np.flatnonzero(best_iou > 0.35)
    # ... except around the objects: anchors overlapping an object by IoU >~ 0.5 score above 0.5.
    strength = 6.0 + 15.0 * (best_iou[rows] - 0.5) + rng.normal(0.0, 1.0, rows.size)
    logits[rows, gt_classes[best[rows]]] += strength
    confusable = rng.random(rows.size) < 0.1  # some anchors also fire for a second class
    logits[rows[confusable], rng.integers(1, num_classes + 1, int(confusable.sum()))] += 0.9 * strength[confusable]
    scores = np.exp(logits - logits.max(axis=1, keepdims=True))
    scores /= scores.sum(axis=1, keepdims=True)

    deltas = rng.normal(0.0, 0.5, size=(n, 4)).astype(np.float32)
    jitter = rng.normal(0.0, 0.02, size=(rows.size, 4)).astype(np.float32)
    deltas[rows] = encode_boxes(gt[best[rows]] + jitter, anchors[rows], VARIANCES)
    return deltas, scores.astype(np.float32)


def _filter_and_decode(deltas: np.ndarray, scores: np.ndarray, anchors: np.ndarray, thr: float) -> np.ndarray:
    """The part of ``decode_and_nms`` before NMS (same NumPy calls), to show the floor of a pure-NumPy version."""
    candidate = scores > thr
    candidate[:, 0] = False
    flat = np.flatnonzero(candidate)
    order = np.argsort(-scores.reshape(-1)[flat], kind="stable")
    anchor_index, _ = np.divmod(flat[order], scores.shape[1])
    return decode_boxes(deltas[anchor_index], anchors[anchor_index], VARIANCES).clip(0, 1)


def _time_ms(fn, runs: int, desc: str) -> np.ndarray:
    for _ in range(50):  # warm-up
        fn()
    times = np.empty(runs)
    for i in tqdm(range(runs), desc=desc, leave=False):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    return times * 1e3


def _summary(times_ms: np.ndarray) -> dict:
    return {
        "median_ms": float(np.median(times_ms)),
        "p95_ms": float(np.percentile(times_ms, 95)),
        "mean_ms": float(times_ms.mean()),
        "min_ms": float(times_ms.min()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="timed calls per method (>= 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--score-threshold", type=float, default=0.5)
    parser.add_argument("--iou-threshold", type=float, default=0.5)
    parser.add_argument("--max-detections", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    if args.runs < 1000:
        parser.error("--runs must be >= 1000")

    anchors = generate_anchors(300)
    deltas, scores = make_ssd_output(anchors, seed=args.seed)
    thr, iou_thr, max_det = args.score_threshold, args.iou_threshold, args.max_detections

    # OpenCV input: the same candidates, already decoded (its timing excludes filtering and decoding).
    anchor_idx, class_idx = np.nonzero(scores[:, 1:] > thr)
    cand_boxes = decode_boxes(deltas[anchor_idx], anchors[anchor_idx], VARIANCES).clip(0, 1)
    cv_boxes = np.stack(
        [cand_boxes[:, 1], cand_boxes[:, 0], cand_boxes[:, 3] - cand_boxes[:, 1], cand_boxes[:, 2] - cand_boxes[:, 0]],
        axis=1,
    ).astype(np.float64)
    cv_scores = scores[anchor_idx, class_idx + 1].astype(np.float32)
    cv_classes = class_idx.astype(np.int32)

    ours = decode_and_nms(deltas, scores, anchors, thr, iou_thr, max_det)
    # top_k=0: OpenCV's top_k cuts candidates *before* NMS; we cut the kept list after it.
    cv_keep = np.asarray(cv2.dnn.NMSBoxesBatched(cv_boxes, cv_scores, cv_classes, thr, iou_thr, 1.0, 0)).ravel()
    cv_keep = cv_keep[np.argsort(-cv_scores[cv_keep], kind="stable")][:max_det]
    same = np.allclose(np.sort(cv_scores[cv_keep]), np.sort(ours[1]))

    ours_ms = _time_ms(lambda: decode_and_nms(deltas, scores, anchors, thr, iou_thr, max_det), args.runs, "numpy")
    cv_ms = _time_ms(
        lambda: cv2.dnn.NMSBoxesBatched(cv_boxes, cv_scores, cv_classes, thr, iou_thr, 1.0, 0),
        args.runs,
        "opencv",
    )
    # The same NumPy work without NMS: a lower bound for any pure-NumPy decode_and_nms.
    floor_ms = _time_ms(lambda: _filter_and_decode(deltas, scores, anchors, thr), args.runs, "filter+decode")
    ours_s, cv_s = _summary(ours_ms), _summary(cv_ms)
    ratio = ours_s["median_ms"] / cv_s["median_ms"]
    result = {
        "input": {
            "anchors": int(anchors.shape[0]),
            "classes_with_background": int(scores.shape[1]),
            "candidates_above_threshold": int(anchor_idx.size),
            "seed": args.seed,
            "score_threshold": thr,
            "iou_threshold": iou_thr,
            "max_detections": max_det,
        },
        "runs": args.runs,
        "decode_and_nms": ours_s | {"detections": int(ours[0].shape[0])},
        "cv2_NMSBoxesBatched_nms_only": cv_s | {"detections": int(cv_keep.size)},
        "filter_and_decode_only": _summary(floor_ms),
        "same_detections": bool(same),
        "ratio_median_ours_over_cv2": ratio,
        "target_median_ms": TARGET_MEDIAN_MS,
        "meets_targets": bool(ours_s["median_ms"] <= TARGET_MEDIAN_MS and ratio <= 1.0),
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "processor": platform.processor() or platform.machine(),
        },
    }

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "postprocess.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(ours_ms, cv_ms, args.out / "postprocess.png", anchor_idx.size)

    print(
        f"candidates above {thr}: {anchor_idx.size} of {scores.shape[0]}x{scores.shape[1] - 1}; "
        f"detections: ours {ours[0].shape[0]}, cv2 {cv_keep.size} (same set: {same})"
    )
    print(f"decode_and_nms (filter+decode+NMS): median {ours_s['median_ms']:.3f} ms  p95 {ours_s['p95_ms']:.3f} ms")
    print(f"cv2.dnn.NMSBoxesBatched (NMS only): median {cv_s['median_ms']:.3f} ms  p95 {cv_s['p95_ms']:.3f} ms")
    print(f"score filter + top-k + decode, no NMS:  median {np.median(floor_ms):.3f} ms")
    print(f"ratio ours/cv2 (median): {ratio:.2f}  -> targets {'met' if result['meets_targets'] else 'NOT met'}")
    print(f"wrote {args.out / 'postprocess.json'} and {args.out / 'postprocess.png'}")


def _plot(ours_ms: np.ndarray, cv_ms: np.ndarray, path: Path, candidates: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    both = np.concatenate([ours_ms, cv_ms])
    bins = np.geomspace(both.min() * 0.9, max(both.max(), TARGET_MEDIAN_MS) * 1.1, 80)
    ax.hist(ours_ms, bins=bins, alpha=0.6, label=f"decode_and_nms (median {np.median(ours_ms):.3f} ms)")
    ax.hist(cv_ms, bins=bins, alpha=0.6, label=f"cv2 NMSBoxesBatched, NMS only (median {np.median(cv_ms):.3f} ms)")
    ax.axvline(TARGET_MEDIAN_MS, color="k", ls="--", lw=1, label="1 ms target")
    ax.set_xscale("log")
    ax.set_xlabel("latency per call [ms] (log scale)")
    ax.set_ylabel("calls")
    ax.set_title(f"SSD300 post-processing: 1917 anchors x 20 classes, {candidates} candidates")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
