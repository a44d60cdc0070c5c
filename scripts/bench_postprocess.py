"""Benchmark ``edge.postprocess`` on an SSD300-sized output: our NMS step vs OpenCV's NMS, and the whole call.

Input (seeded): 1917 anchors (``generate_anchors(300)``), 21 classes (20 + background); most anchors
are confidently background, ~10 objects each light up a cluster of overlapping anchors with high
scores (a few with a runner-up class too). The candidates are the (anchor, class) pairs scoring above
the threshold, decoded and clipped. Timed, interleaved call by call so that load from other processes
hits all of them alike:

* ``grouped_nms`` alone (the band of IoU tests and greedy pass ``decode_and_nms`` runs) on those candidates in
  the order ``decode_and_nms`` sorts them (grouped by class, best first);
* ``cv2.dnn.NMSBoxesBatched`` alone on the same candidates (it sorts them itself);
* the same sort followed by ``grouped_nms`` (for reference: our NMS if it had to sort like OpenCV);
* the whole ``decode_and_nms`` (score filter, top-k, sort, decode, NMS, output order);
* ``cv2.dnn.NMSBoxesBatched`` given every anchor's decoded box with its best class and score, doing the score
  filter itself: how OpenCV's DNN samples call it. The whole ``decode_and_nms`` must beat this (the decode
  of every anchor is done once, outside the timing, so OpenCV is timed on its filter + NMS only).

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
from edge.postprocess import decode_and_nms, grouped_nms

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


def time_interleaved(calls: dict[str, object], runs: int) -> dict[str, np.ndarray]:
    """Milliseconds per call of each ``calls`` value (a no-argument function), taking turns call by call."""
    for _ in range(50):  # warm-up
        for fn in calls.values():
            fn()
    times = {name: np.empty(runs) for name in calls}
    for i in tqdm(range(runs), desc="timing", leave=False):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name][i] = time.perf_counter() - start
    return {name: values * 1e3 for name, values in times.items()}


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

    # The candidates, decoded and clipped (neither NMS-alone timing includes filtering or decoding).
    anchor_idx, class_idx = np.nonzero(scores[:, 1:] > thr)
    cand_boxes = decode_boxes(deltas[anchor_idx], anchors[anchor_idx], VARIANCES).clip(0, 1)
    cand_scores = scores[anchor_idx, class_idx + 1].astype(np.float32)
    # OpenCV: (x, y, w, h) float64, in anchor order.
    cv_boxes = np.stack(
        [cand_boxes[:, 1], cand_boxes[:, 0], cand_boxes[:, 3] - cand_boxes[:, 1], cand_boxes[:, 2] - cand_boxes[:, 0]],
        axis=1,
    ).astype(np.float64)
    cv_classes = class_idx.astype(np.int32)
    # Ours: the order decode_and_nms hands them to grouped_nms (by class, best first inside a class).
    order = np.lexsort((-cand_scores, class_idx))
    grouped_boxes, grouped_classes = np.ascontiguousarray(cand_boxes[order]), class_idx[order]

    # OpenCV given every anchor: decoded (x, y, w, h) boxes, each anchor's best class and its score.
    every_box = decode_boxes(deltas, anchors, VARIANCES).clip(0, 1)
    every_xywh = np.stack(
        [every_box[:, 1], every_box[:, 0], every_box[:, 3] - every_box[:, 1], every_box[:, 2] - every_box[:, 0]],
        axis=1,
    ).astype(np.float64)
    every_score = scores[:, 1:].max(axis=1).astype(np.float32)
    every_class = scores[:, 1:].argmax(axis=1).astype(np.int32)

    def sort_then_nms() -> list[int]:
        by_class = np.lexsort((-cand_scores, class_idx))
        return grouped_nms(cand_boxes[by_class], class_idx[by_class], iou_thr)

    # top_k=0: OpenCV's top_k cuts candidates *before* NMS; we cut the kept list after it.
    cv_keep = np.asarray(cv2.dnn.NMSBoxesBatched(cv_boxes, cand_scores, cv_classes, thr, iou_thr, 1.0, 0)).ravel()
    ours_keep = order[grouped_nms(grouped_boxes, grouped_classes, iou_thr)]
    whole = decode_and_nms(deltas, scores, anchors, thr, iou_thr, max_det)
    same = set(ours_keep.tolist()) == set(cv_keep.tolist())
    same_whole = bool(np.array_equal(np.sort(cand_scores[ours_keep])[::-1][:max_det], whole[1]))

    times = time_interleaved(
        {
            "grouped_nms": lambda: grouped_nms(grouped_boxes, grouped_classes, iou_thr),
            "cv2_NMSBoxesBatched": lambda: cv2.dnn.NMSBoxesBatched(
                cv_boxes, cand_scores, cv_classes, thr, iou_thr, 1.0, 0
            ),
            "sort_then_grouped_nms": sort_then_nms,
            "decode_and_nms": lambda: decode_and_nms(deltas, scores, anchors, thr, iou_thr, max_det),
            "cv2_NMSBoxesBatched_every_anchor": lambda: cv2.dnn.NMSBoxesBatched(
                every_xywh, every_score, every_class, thr, iou_thr, 1.0, 0
            ),
        },
        args.runs,
    )
    summaries = {name: _summary(values) for name, values in times.items()}
    ours_s, cv_s, whole_s = summaries["grouped_nms"], summaries["cv2_NMSBoxesBatched"], summaries["decode_and_nms"]
    ratio = ours_s["median_ms"] / cv_s["median_ms"]
    every_s = summaries["cv2_NMSBoxesBatched_every_anchor"]
    whole_ratio = whole_s["median_ms"] / every_s["median_ms"]
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
        "nms_only_grouped_nms": ours_s | {"detections": int(ours_keep.size)},
        "nms_only_cv2_NMSBoxesBatched": cv_s | {"detections": int(cv_keep.size)},
        "sort_then_grouped_nms": summaries["sort_then_grouped_nms"],
        "decode_and_nms": whole_s | {"detections": int(whole[0].shape[0])},
        "same_kept_set_as_cv2": bool(same),
        "decode_and_nms_same_detections": same_whole,
        "cv2_NMSBoxesBatched_every_anchor": every_s,
        "ratio_median_whole_decode_and_nms_over_cv2_every_anchor": whole_ratio,
        "ratio_median_whole_decode_and_nms_over_cv2_candidates": whole_s["median_ms"] / cv_s["median_ms"],
        "ratio_median_ours_nms_over_cv2": ratio,
        "target_median_ms": TARGET_MEDIAN_MS,
        "meets_targets": bool(whole_s["median_ms"] <= TARGET_MEDIAN_MS and whole_ratio < 1.0),
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "processor": platform.processor() or platform.machine(),
        },
    }

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "postprocess.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(times, args.out / "postprocess.png", anchor_idx.size)

    print(
        f"candidates above {thr}: {anchor_idx.size} of {scores.shape[0]}x{scores.shape[1] - 1}; kept: ours "
        f"{ours_keep.size}, cv2 {cv_keep.size} (same set: {same}); decode_and_nms detections: {whole[0].shape[0]}"
    )
    print(f"NMS alone, ours (grouped_nms):      median {ours_s['median_ms']:.4f} ms  p95 {ours_s['p95_ms']:.4f} ms")
    print(f"NMS alone, cv2.dnn.NMSBoxesBatched: median {cv_s['median_ms']:.4f} ms  p95 {cv_s['p95_ms']:.4f} ms")
    print(f"ratio ours/cv2 (median): {ratio:.3f}")
    print(f"sort + grouped_nms (reference):     median {summaries['sort_then_grouped_nms']['median_ms']:.4f} ms")
    print(f"whole decode_and_nms:               median {whole_s['median_ms']:.4f} ms  p95 {whole_s['p95_ms']:.4f} ms")
    print(f"cv2.dnn.NMSBoxesBatched, every anchor: median {every_s['median_ms']:.4f} ms (its own score filter + NMS)")
    print(
        f"whole decode_and_nms / cv2 every anchor: {whole_ratio:.3f}; "
        f"/ cv2 on our candidates: {whole_s['median_ms'] / cv_s['median_ms']:.3f}"
    )
    print(
        f"targets (whole <= {TARGET_MEDIAN_MS} ms, whole < cv2 every anchor): "
        f"{'met' if result['meets_targets'] else 'NOT met'}"
    )
    print(f"wrote {args.out / 'postprocess.json'} and {args.out / 'postprocess.png'}")


def _plot(times: dict[str, np.ndarray], path: Path, candidates: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    both = np.concatenate(list(times.values()))
    bins = np.geomspace(both.min() * 0.9, max(both.max(), TARGET_MEDIAN_MS) * 1.1, 100)
    for name, values in times.items():
        ax.hist(values, bins=bins, alpha=0.5, label=f"{name} (median {np.median(values):.4f} ms)")
    ax.axvline(TARGET_MEDIAN_MS, color="k", ls="--", lw=1, label="1 ms target (whole call)")
    ax.set_xscale("log")
    ax.set_xlabel("latency per call [ms] (log scale)")
    ax.set_ylabel("calls")
    ax.set_title(f"SSD300 post-processing: 1917 anchors x 20 classes, {candidates} candidates")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
