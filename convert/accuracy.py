"""Accuracy check at conversion time: the float Keras model vs each TFLite variant, through the edge's decoder.

Every variant is scored by ``train.evaluate.evaluate_predictions`` — images read and resized like the
runtime does, raw outputs decoded by ``edge.postprocess.decode_and_nms``, a builtin model's own
``TFLite_Detection_PostProcess`` outputs read by ``edge.postprocess.select_detections`` — so the numbers
are the ones the edge will see. Results are a table (variant, file size, mAP@0.5, COCO mAP, latency per image
on this machine), written as JSON and Markdown, and an int8-vs-float gate in mAP@0.5 points.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edge.metadata import read_metadata
from edge.postprocess import select_detections
from train.config import ModelConfig
from train.evaluate import DetectFn, GroundTruth, evaluate_predictions, keras_predict_fn

PredictFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
FLOAT_VARIANT = "keras"
EVAL_SCORE_THRESHOLD = 0.01
"""Detections below this score are not scored (``train.evaluate.evaluate_predictions``' default)."""


@dataclasses.dataclass(frozen=True)
class VariantResult:
    """One row of the accuracy table; ``map50``/``coco_map`` in [0, 1], ``latency_ms`` per image."""

    variant: str
    size_bytes: int
    map50: float
    coco_map: float
    latency_ms: float
    num_images: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class AccuracyGateError(RuntimeError):
    """The quantized model lost more mAP@0.5 than allowed."""


def edge_detector(tflite_bytes: bytes, num_threads: int | None = None):
    """The runtime's own ``edge.Detector`` on ``tflite_bytes``: the one way this project runs a TFLite model, so
    the table scores exactly what the edge does (its input quantization, output dequantization and reading)."""
    from edge.detector import Detector

    with tempfile.TemporaryDirectory(prefix="accuracy_") as folder:
        path = Path(folder) / "model.tflite"
        path.write_bytes(tflite_bytes)
        return Detector(path, num_threads=num_threads)  # the interpreter holds the model once loaded


def _edge_outputs(detector, image: np.ndarray, timings: list[float]) -> dict[str, np.ndarray]:
    """One float32 raw-RGB ``(H, W, 3)`` image at the model input size, as a camera frame (rounded to uint8), through
    ``Detector.preprocess`` and ``Detector.invoke`` (timed): the model's float32 outputs by name."""
    tensor = detector.preprocess(np.clip(np.rint(image), 0, 255).astype(np.uint8))
    start = time.perf_counter()
    outputs = detector.invoke(tensor)
    timings.append(time.perf_counter() - start)
    return outputs


def tflite_predict_fn(tflite_bytes: bytes, num_threads: int | None = None) -> tuple[PredictFn, list[float]]:
    """A ``PredictFn`` running a raw-output (``postprocess="numpy"``) TFLite detector image by image.

    Input: ``(B, H, W, 3)`` float32 raw RGB 0..255 (rounded to uint8 pixels, as frames reach the edge). Output:
    ``box_deltas (B, N, 4)``, ``class_scores (B, N, C+1)`` float32, from ``edge.Detector``.
    The second value collects the seconds per ``invoke`` for latency reporting.
    """
    if read_metadata(tflite_bytes).postprocess != "numpy":
        raise ValueError("tflite_predict_fn needs a raw-output model (postprocess='numpy')")
    detector = edge_detector(tflite_bytes, num_threads)
    timings: list[float] = []

    def predict(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = [_edge_outputs(detector, image, timings) for image in batch]
        return (
            np.concatenate([out["box_deltas"] for out in outputs]),
            np.concatenate([out["class_scores"] for out in outputs]),
        )

    return predict, timings


def tflite_detect_fn(
    tflite_bytes: bytes, score_threshold: float = 0.01, num_threads: int | None = None
) -> tuple[DetectFn, list[float]]:
    """A ``DetectFn`` running a ``postprocess="builtin"`` TFLite detector (the file as written) image by image.

    ``edge.Detector`` runs it; the op's four outputs are read by ``edge.postprocess.select_detections``, as the
    runtime reads them, keeping normalized boxes with ``score > score_threshold``. The second value collects
    the seconds per ``invoke``.
    """
    metadata = read_metadata(tflite_bytes)
    if metadata.postprocess != "builtin":
        raise ValueError("tflite_detect_fn needs a model with built-in post-processing (postprocess='builtin')")
    detector = edge_detector(tflite_bytes, num_threads)
    timings: list[float] = []

    def detect(batch: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        results = []
        for image in batch:
            out = _edge_outputs(detector, image, timings)
            results.append(
                select_detections(
                    out["boxes"][0],
                    out["classes"][0],
                    out["scores"][0],
                    out["count"],
                    score_threshold,
                    max_detections=out["scores"].shape[-1],
                    num_classes=metadata.num_classes,
                )
            )
        return results

    return detect, timings


def _timed(predict: PredictFn) -> tuple[PredictFn, list[float]]:
    timings: list[float] = []

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        start = time.perf_counter()
        result = predict(batch)
        timings.extend([(time.perf_counter() - start) / len(batch)] * len(batch))
        return result

    return run, timings


def _score(
    variant: str,
    predict: PredictFn,
    timings: list[float],
    size_bytes: int,
    records: Sequence[GroundTruth],
    config: ModelConfig,
    labels: Sequence[str],
    batch_size: int,
) -> VariantResult:
    result = evaluate_predictions(predict, records, config, labels, batch_size=batch_size, progress=True)
    latency = 1000.0 * float(np.median(timings)) if timings else float("nan")
    return VariantResult(
        variant, size_bytes, float(result["map50"]), float(result["coco_map"]), latency, int(result["num_images"])
    )


def evaluate_keras(
    model,
    records: Sequence[GroundTruth],
    config: ModelConfig,
    labels: Sequence[str],
    size_bytes: int = 0,
    variant: str = FLOAT_VARIANT,
) -> VariantResult:
    """Score the float Keras model (row ``variant``, default ``keras``); latency is per image in batches of 8."""
    predict, timings = _timed(keras_predict_fn(model))
    return _score(variant, predict, timings, size_bytes, records, config, labels, batch_size=8)


def evaluate_tflite(
    variant: str, tflite_bytes: bytes, records: Sequence[GroundTruth], config: ModelConfig, labels: Sequence[str]
) -> VariantResult:
    """Score a TFLite variant as written; latency is the median ``invoke`` time for one image.

    A raw-output model goes through the edge's decoder and NMS; a builtin model's own detections (the op's
    NMS, ``docs/INTEROP.md``) are scored as the runtime reads them.
    """
    if read_metadata(tflite_bytes).postprocess == "builtin":
        detect, timings = tflite_detect_fn(tflite_bytes, score_threshold=EVAL_SCORE_THRESHOLD)
        result = evaluate_predictions(
            None, records, config, labels, batch_size=8, score_threshold=EVAL_SCORE_THRESHOLD, detect_fn=detect
        )
        latency = 1000.0 * float(np.median(timings)) if timings else float("nan")
        return VariantResult(
            variant,
            len(tflite_bytes),
            float(result["map50"]),
            float(result["coco_map"]),
            latency,
            int(result["num_images"]),
        )
    predict, timings = tflite_predict_fn(tflite_bytes)
    return _score(variant, predict, timings, len(tflite_bytes), records, config, labels, batch_size=8)


def map_drop_points(reference: VariantResult, candidate: VariantResult) -> float:
    """How many mAP@0.5 points (percent) ``candidate`` lost against ``reference`` (negative: it gained)."""
    return 100.0 * (reference.map50 - candidate.map50)


def check_gate(results: Sequence[VariantResult], max_map_drop: float, variant: str = "int8") -> float | None:
    """Raise ``AccuracyGateError`` when ``variant`` lost more than ``max_map_drop`` mAP@0.5 points vs ``keras``.

    Returns the drop in points, or None when either row is missing.
    """
    rows = {r.variant: r for r in results}
    if FLOAT_VARIANT not in rows or variant not in rows:
        return None
    drop = map_drop_points(rows[FLOAT_VARIANT], rows[variant])
    if drop > max_map_drop:
        raise AccuracyGateError(
            f"{variant} mAP@0.5 {100 * rows[variant].map50:.2f} is {drop:.2f} points below the float model's "
            f"{100 * rows[FLOAT_VARIANT].map50:.2f}; the limit is --max-map-drop {max_map_drop:g}"
        )
    return drop


def accuracy_metadata(results: Sequence[VariantResult], data: str, split: str) -> dict:
    """The ``accuracy`` entry of the model metadata: mAP per variant measured at conversion."""
    entry: dict = {"data": data, "split": split}
    for row in results:
        name = "float" if row.variant == FLOAT_VARIANT else row.variant
        entry[name] = {"map50": round(row.map50, 5), "coco_map": round(row.coco_map, 5), "num_images": row.num_images}
    return entry


def format_table(results: Sequence[VariantResult]) -> str:
    """Markdown table: variant, file size (and its ratio to the float32 file), mAP@0.5, COCO mAP, latency per image."""
    float32_bytes = next((r.size_bytes for r in results if r.variant == "float32" and r.size_bytes), None)
    lines = [
        "| variant | file size | vs float32 | mAP@0.5 | COCO mAP | latency/image |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        size = f"{r.size_bytes / 1024:.0f} KiB" if r.size_bytes else "-"
        ratio = f"{r.size_bytes / float32_bytes:.3f}x" if r.size_bytes and float32_bytes else "-"
        lines.append(
            f"| {r.variant} | {size} | {ratio} | {100 * r.map50:.2f} | {100 * r.coco_map:.2f} | {r.latency_ms:.1f} ms |"
        )
    return "\n".join(lines)


def write_report(results: Sequence[VariantResult], out_model: Path, extra: dict) -> tuple[Path, Path]:
    """Write ``<out>.accuracy.json`` and ``<out>.accuracy.md`` next to the model; returns both paths."""
    from edge.atomic import atomic_write_bytes

    base = out_model.with_suffix("")
    json_path = base.with_name(base.name + ".accuracy.json")
    md_path = base.with_name(base.name + ".accuracy.md")
    payload = {**extra, "results": [r.to_dict() for r in results]}
    atomic_write_bytes(json_path, (json.dumps(payload, indent=2) + "\n").encode())
    atomic_write_bytes(md_path, (format_table(results) + "\n").encode())
    return json_path, md_path


def evaluate_predict(
    variant: str,
    predict: PredictFn,
    records: Sequence[GroundTruth],
    config: ModelConfig,
    labels: Sequence[str],
    size_bytes: int = 0,
) -> VariantResult:
    """Score any ``PredictFn`` (raw pixels 0..255 in, ``box_deltas``/``class_scores`` out) as row ``variant``.

    Latency is per image in batches of 8. Used for models that are neither Keras 3 nor TFLite (the IMX500's
    MCT-quantized Keras 2 model).
    """
    timed, timings = _timed(predict)
    return _score(variant, timed, timings, size_bytes, records, config, labels, batch_size=8)
