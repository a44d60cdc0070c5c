"""Evaluate a detector: Pascal VOC mAP@0.5 (``edge.metrics``) and COCO mAP@[.5:.95] (pycocotools).

Library: ``coco_map``, ``evaluate_predictions`` (any ``predict_fn``, e.g. a TFLite interpreter) and
``evaluate_model`` (a Keras model following the contract in docs/ARCHITECTURE.md).

CLI::

    python -m train.evaluate --run runs/NAME [--checkpoint best|last|PATH] [--data D] [--split val] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import cv2
import numpy as np
from tqdm.auto import tqdm

from edge.boxes import normalized_to_pixels
from edge.metrics import DetectionEvaluator
from train.config import ModelConfig
from train.rundir import RunDir

logger = logging.getLogger(__name__)

PredictFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""``batch (B, H, W, 3) float32 raw 0..255 RGB -> (box_deltas (B, N, 4), class_scores (B, N, C+1))``."""
DecodeFn = Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]
"""Signature of ``edge.postprocess.decode_and_nms``."""
DetectFn = Callable[[np.ndarray], Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]]
"""``batch (B, H, W, 3) float32 raw 0..255 RGB -> B x (boxes (K, 4) normalized ymin, xmin, ymax, xmax, scores (K,),
class_ids (K,))``: a model that does its own post-processing (e.g. ``TFLite_Detection_PostProcess``)."""


class GroundTruth(Protocol):
    """What evaluation needs from one annotated image (``train.datasets.Record`` satisfies it).

    ``boxes`` ``(K, 4)`` float32 normalized ``ymin, xmin, ymax, xmax``; ``classes`` ``(K,)`` int 0-based;
    ``height``/``width`` the original image size in pixels. An optional ``difficult`` ``(K,)`` bool.
    """

    boxes: np.ndarray
    classes: np.ndarray
    height: int
    width: int


class Detections(NamedTuple):
    """One image's detections: ``boxes`` ``(K, 4)`` normalized ``ymin, xmin, ymax, xmax``,
    ``scores`` ``(K,)`` float32, ``class_ids`` ``(K,)`` int 0-based (background excluded)."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray


def _difficult(record: Any) -> np.ndarray | None:
    difficult = getattr(record, "difficult", None)
    return None if difficult is None else np.asarray(difficult, bool).reshape(-1)


def _pixel_xywh(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    xyxy = normalized_to_pixels(np.asarray(boxes, np.float32).reshape(-1, 4), height, width).astype(np.float64)
    return np.stack([xyxy[:, 0], xyxy[:, 1], xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]], axis=-1)


def coco_map(
    detections: Sequence[Detections | tuple[np.ndarray, np.ndarray, np.ndarray]],
    ground_truth: Sequence[GroundTruth],
    labels: Sequence[str],
    max_detections: int = 100,
) -> dict[str, float]:
    """COCO box AP with pycocotools, on our normalized boxes.

    ``detections[i]`` and ``ground_truth[i]`` describe the same image; boxes are converted to pixel
    ``x, y, w, h`` with ``ground_truth[i].height/width`` and a COCO ground truth is built in memory
    (``difficult`` objects, when a record has them, become ``iscrowd`` regions: matching them is not
    counted either way). pycocotools' own printing is captured. Returns ``{"map": AP@[.5:.95],
    "ap50": AP@0.5, "ap75": AP@0.75}`` as floats; 0.0 for each when there is ground truth but no
    detection, NaN when there is no ground truth at all.
    """
    if len(detections) != len(ground_truth):
        raise ValueError(f"coco_map: {len(detections)} detection lists for {len(ground_truth)} images")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for image_id, (dets, record) in enumerate(zip(detections, ground_truth, strict=True), start=1):
        height, width = int(record.height), int(record.width)
        images.append({"id": image_id, "height": height, "width": width})
        classes = np.asarray(record.classes).reshape(-1)
        difficult = _difficult(record)
        for k, (box, cls) in enumerate(zip(_pixel_xywh(record.boxes, height, width), classes, strict=True)):
            if not 0 <= cls < len(labels):
                raise ValueError(f"coco_map: image {image_id}: ground-truth class {cls} not in [0, {len(labels)})")
            crowd = int(difficult is not None and difficult[k])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(cls) + 1,
                    "bbox": [float(v) for v in box],
                    "area": float(box[2] * box[3]),
                    "iscrowd": crowd,
                }
            )
        boxes, scores, class_ids = dets
        for box, score, cls in zip(
            _pixel_xywh(boxes, height, width), np.reshape(scores, -1), np.reshape(class_ids, -1), strict=True
        ):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(cls) + 1,
                    "bbox": [float(v) for v in box],
                    "score": float(score),
                }
            )
    if not annotations or all(a["iscrowd"] for a in annotations):
        return {"map": math.nan, "ap50": math.nan, "ap75": math.nan}
    if not results:
        return {"map": 0.0, "ap50": 0.0, "ap75": 0.0}
    categories = [{"id": i + 1, "name": str(name)} for i, name in enumerate(labels)]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": annotations, "categories": categories}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        coco_eval = COCOeval(coco_gt, coco_dt, iouType="bbox")
        coco_eval.params.maxDets = [1, 10, max(int(max_detections), 1)]
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    stats = coco_eval.stats
    return {"map": max(float(stats[0]), 0.0), "ap50": max(float(stats[1]), 0.0), "ap75": max(float(stats[2]), 0.0)}


def load_image(path: str | Path, input_size: tuple[int, int]) -> np.ndarray | None:
    """Read ``path`` as RGB uint8 resized (bilinear) to ``input_size`` ``(height, width)`` -> ``(H, W, 3)``;
    None when the file cannot be read or decoded. The resize and colour order are the edge's own
    (``edge.image``), so evaluation and calibration see the pixels a camera frame gives the runtime."""
    from edge.image import convert_to_rgb, resize_rgb

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        return None
    return resize_rgb(convert_to_rgb(bgr, "BGR"), *input_size)


def _default_decode() -> DecodeFn:
    from edge.postprocess import decode_and_nms

    return decode_and_nms


def evaluate_predictions(
    predict_fn: PredictFn | None,
    records: Sequence[GroundTruth],
    config: ModelConfig,
    labels: Sequence[str],
    batch_size: int = 32,
    score_threshold: float = 0.01,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
    decode_fn: DecodeFn | None = None,
    progress: bool = True,
    detect_fn: DetectFn | None = None,
) -> dict:
    """Run ``predict_fn`` over ``records`` (objects with ``image_path``, ``boxes``, ``classes``, ``height``,
    ``width``) and score the decoded detections.

    Images are read as RGB, resized to ``config.input_size`` and passed as float32 ``(B, H, W, 3)`` in
    0..255. ``predict_fn`` returns ``box_deltas`` ``(B, N, 4)`` and ``class_scores`` ``(B, N, C+1)``;
    each image is decoded by ``decode_fn`` (default ``edge.postprocess.decode_and_nms``) with the
    config's anchors and variances, ``score_threshold``, NMS ``iou_threshold`` and ``max_detections``.
    With ``detect_fn`` (then ``predict_fn`` may be None) the model's own detections are scored as they come.
    Detections are matched to ground truth at IoU 0.5 (VOC) and 0.5:0.95 (COCO) whatever the NMS IoU.
    Unreadable images are skipped, logged and counted.

    Returns ``{"map50", "per_class_ap50": {label: AP or None}, "num_gt": {label: int}, "coco_map",
    "coco_ap50", "coco_ap75", "num_images", "skipped_images": [paths]}``.
    """
    if len(labels) != config.num_classes:
        raise ValueError(f"evaluate: {len(labels)} labels but ModelConfig.num_classes={config.num_classes}")
    if batch_size < 1:
        raise ValueError(f"evaluate: batch_size must be >= 1, got {batch_size}")
    decode_fn = decode_fn or _default_decode()
    anchors = config.generate_anchors()
    evaluator = DetectionEvaluator(config.num_classes, iou_threshold=0.5)
    detections: list[Detections] = []
    kept: list[GroundTruth] = []
    skipped: list[str] = []

    def flush(batch: list[np.ndarray], batch_records: list[GroundTruth]) -> None:
        if detect_fn is not None:
            per_image = [Detections(*dets) for dets in detect_fn(np.stack(batch).astype(np.float32))]
            if len(per_image) != len(batch):
                raise ValueError(f"evaluate: detect_fn returned {len(per_image)} results for {len(batch)} images")
            for dets, record in zip(per_image, batch_records, strict=True):
                evaluator.add(*dets, record.boxes, record.classes, _difficult(record))
                detections.append(dets)
                kept.append(record)
            return
        box_deltas, class_scores = predict_fn(np.stack(batch).astype(np.float32))
        box_deltas, class_scores = np.asarray(box_deltas), np.asarray(class_scores)
        expected = (len(batch), len(anchors))
        if box_deltas.shape[:2] != expected or class_scores.shape[:2] != expected:
            raise ValueError(
                f"evaluate: predict_fn returned box_deltas {box_deltas.shape} and class_scores {class_scores.shape}; "
                f"expected (batch={expected[0]}, num_anchors={expected[1]}, ...)"
            )
        for deltas, scores, record in zip(box_deltas, class_scores, batch_records, strict=True):
            dets = Detections(
                *decode_fn(
                    deltas,
                    scores,
                    anchors,
                    score_threshold=score_threshold,
                    iou_threshold=iou_threshold,
                    max_detections=max_detections,
                    variances=config.variances,
                )
            )
            evaluator.add(*dets, record.boxes, record.classes, _difficult(record))
            detections.append(dets)
            kept.append(record)

    batch: list[np.ndarray] = []
    batch_records: list[GroundTruth] = []
    for record in tqdm(records, desc="evaluate", unit="img", disable=not progress, leave=False):
        image = load_image(record.image_path, config.input_size)
        if image is None:
            logger.warning("evaluate: cannot read image %s, skipped", record.image_path)
            skipped.append(str(record.image_path))
            continue
        batch.append(image)
        batch_records.append(record)
        if len(batch) == batch_size:
            flush(batch, batch_records)
            batch, batch_records = [], []
    if batch:
        flush(batch, batch_records)
    if skipped:
        logger.warning("evaluate: %d unreadable image(s) skipped", len(skipped))

    voc = evaluator.result()
    coco = coco_map(detections, kept, labels, max_detections=max_detections)
    return {
        "map50": voc["map"],
        "per_class_ap50": dict(zip(labels, voc["per_class_ap"], strict=True)),
        "num_gt": dict(zip(labels, voc["num_gt"], strict=True)),
        "coco_map": coco["map"],
        "coco_ap50": coco["ap50"],
        "coco_ap75": coco["ap75"],
        "num_images": len(kept),
        "skipped_images": skipped,
    }


def keras_predict_fn(model: Any) -> PredictFn:
    """Wrap a Keras model (outputs ``box_deltas``, ``class_scores`` as a dict or in that order) as a ``PredictFn``."""

    def predict(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = model.predict_on_batch(batch)
        if isinstance(outputs, dict):
            missing = {"box_deltas", "class_scores"} - set(outputs)
            if missing:
                raise ValueError(f"evaluate: model outputs {sorted(outputs)} lack {sorted(missing)}")
            return np.asarray(outputs["box_deltas"]), np.asarray(outputs["class_scores"])
        if isinstance(outputs, (list, tuple)) and len(outputs) >= 2:
            return np.asarray(outputs[0]), np.asarray(outputs[1])
        raise ValueError("evaluate: model must output (box_deltas, class_scores) as a dict or a list")

    return predict


def evaluate_model(
    model: Any, records: Sequence[GroundTruth], config: ModelConfig, labels: Sequence[str], **options
) -> dict:
    """Evaluate a Keras inference model (docs/ARCHITECTURE.md contract) on ``records``.

    ``evaluate_predictions`` with ``keras_predict_fn(model)``: same keyword ``options`` (``batch_size``,
    ``score_threshold``, ``iou_threshold``, ``max_detections``, ``decode_fn``, ``progress``) and result
    (``map50``, ``per_class_ap50``, ``coco_map``, ...).
    """
    return evaluate_predictions(keras_predict_fn(model), records, config, labels, **options)


def format_report(result: dict) -> str:
    """A readable per-class AP@0.5 table followed by mAP@0.5 and COCO mAP@[.5:.95]."""

    def fmt(value: float | None) -> str:
        return "   n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:6.4f}"

    labels = list(result["per_class_ap50"])
    width = max([len("COCO mAP@[.5:.95]"), *(len(label) for label in labels)])
    lines = [f"{'class':<{width}}  AP@0.5  #gt", f"{'-' * width}  ------  ---"]
    for label in labels:
        lines.append(f"{label:<{width}}  {fmt(result['per_class_ap50'][label])}  {result['num_gt'].get(label, 0)}")
    lines.append(f"{'-' * width}  ------")
    lines.append(f"{'mAP@0.5':<{width}}  {fmt(result['map50'])}")
    lines.append(f"{'COCO mAP@[.5:.95]':<{width}}  {fmt(result['coco_map'])}")
    lines.append(f"{'COCO AP@0.75':<{width}}  {fmt(result['coco_ap75'])}")
    lines.append(f"images: {result['num_images']}  skipped: {len(result['skipped_images'])}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train.evaluate",
        description="Pascal VOC mAP@0.5 (per class) and COCO mAP@[.5:.95] of a trained run's checkpoint.",
    )
    parser.add_argument("--run", required=True, type=Path, help="training run directory (holds run.json)")
    parser.add_argument("--checkpoint", default="best", help="best, last, or a path to a .keras model (default best)")
    parser.add_argument("--data", default=None, help="dataset path (default: the one recorded in run.json)")
    parser.add_argument("--split", default="val", help="dataset split (default val)")
    parser.add_argument("--format", default="auto", help="dataset format: auto, voc or coco (default auto)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--score-threshold", type=float, default=0.01)
    parser.add_argument("--nms-iou", type=float, default=0.5, help="NMS IoU threshold (default 0.5)")
    parser.add_argument("--max-detections", type=int, default=100)
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON to this file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_dir = RunDir(args.run)
    try:
        info = run_dir.read_info()
        config, labels = info.config, info.labels
        data_path = run_dir.data_path(args.data)
        checkpoint = run_dir.checkpoint(args.checkpoint)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    import keras

    from train.datasets import load_dataset

    dataset = load_dataset(data_path, args.split, fmt=args.format, labels=labels)
    if list(dataset.labels) != labels:
        print(f"error: dataset {data_path} labels {dataset.labels} differ from run labels {labels}", file=sys.stderr)
        return 2
    for reason, paths in dataset.skipped.items():
        if paths:
            logger.warning("dataset: %d file(s) skipped (%s)", len(paths), reason)
    logger.info("evaluating %s on %s [%s]: %d images", checkpoint, data_path, args.split, len(dataset.records))
    model = keras.models.load_model(checkpoint, compile=False)
    result = evaluate_model(
        model,
        dataset.records,
        config,
        labels,
        batch_size=args.batch_size,
        score_threshold=args.score_threshold,
        iou_threshold=args.nms_iou,
        max_detections=args.max_detections,
    )
    result.update({"checkpoint": str(checkpoint), "data": str(data_path), "split": args.split})
    print(format_report(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        logger.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
