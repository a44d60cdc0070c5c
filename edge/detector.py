"""``Detector``: RGB frame -> TFLite SSD -> detections in frame pixels. NumPy + a TFLite runtime (+ OpenCV to resize).

Everything about the model (labels, input size and dtype, anchors, variances, output indices,
quantization, built-in or NumPy post-processing) comes from the metadata embedded in the
``.tflite`` (``edge.metadata``). The three stages are separate methods so a pipeline can overlap
them: ``preprocess(frame)`` -> ``invoke(tensor)`` -> ``postprocess(outputs, frame_shape)``;
``det(frame)`` runs all three and records per-stage times.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Sequence

import numpy as np

from edge.boxes import normalized_to_pixels
from edge.metadata import MetadataError, ModelMetadata, read_metadata
from edge.postprocess import decode_and_nms, select_detections
from edge.runtime import ModelLoadError, load_interpreter

try:  # OpenCV headless is part of the edge install; the NumPy resize below is the fallback.
    import cv2
except ImportError:  # pragma: no cover - exercised only where OpenCV is absent
    cv2 = None

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Detections:
    """Detections in one frame.

    ``boxes`` ``(K, 4)`` float32 pixel ``xmin, ymin, xmax, ymax`` in the frame, ``scores`` ``(K,)``
    float32, ``class_ids`` ``(K,)`` int32 0-based indices into ``labels`` (background excluded),
    best first; ``*_ms`` are the stage times that produced them.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    labels: list[str]
    frame_size: tuple[int, int] = (0, 0)
    """``(height, width)`` of the frame the boxes refer to."""
    preprocess_ms: float = 0.0
    invoke_ms: float = 0.0
    postprocess_ms: float = 0.0

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def names(self) -> list[str]:
        """Label of each detection."""
        return [self.labels[i] for i in self.class_ids.tolist()]

    @property
    def timings_ms(self) -> dict[str, float]:
        return {"preprocess": self.preprocess_ms, "invoke": self.invoke_ms, "postprocess": self.postprocess_ms}


def to_rgb(frame: np.ndarray) -> np.ndarray:
    """Any supported frame -> ``(H, W, 3)`` uint8 RGB (a view when possible).

    Accepts uint8 ``(H, W)`` / ``(H, W, 1)`` grayscale, ``(H, W, 3)`` RGB and ``(H, W, 4)`` RGBA
    (alpha dropped), contiguous or not. Raises ``ValueError`` naming what was expected otherwise.
    """
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f"frame: expected dtype uint8 (RGB pixels 0..255), got {frame.dtype}")
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.ndim != 3 or frame.shape[2] not in (1, 3, 4) or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"frame: expected shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {frame.shape}")
    if frame.shape[2] == 1:
        return np.repeat(frame, 3, axis=2)
    return frame[:, :, :3]


def resize_rgb(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a uint8 ``(H, W, 3)`` frame to ``(height, width, 3)`` uint8 (half-pixel centers)."""
    if frame.shape[:2] == (height, width):
        return np.ascontiguousarray(frame)
    if cv2 is not None:
        return cv2.resize(np.ascontiguousarray(frame), (width, height), interpolation=cv2.INTER_LINEAR)
    src_h, src_w = frame.shape[:2]
    y = np.clip((np.arange(height) + 0.5) * src_h / height - 0.5, 0, src_h - 1)
    x = np.clip((np.arange(width) + 0.5) * src_w / width - 0.5, 0, src_w - 1)
    y0, x0 = y.astype(np.int64), x.astype(np.int64)
    y1, x1 = np.minimum(y0 + 1, src_h - 1), np.minimum(x0 + 1, src_w - 1)
    wy, wx = (y - y0)[:, None, None], (x - x0)[None, :, None]
    f = frame.astype(np.float32)
    top = f[y0][:, x0] * (1 - wx) + f[y0][:, x1] * wx
    bottom = f[y1][:, x0] * (1 - wx) + f[y1][:, x1] * wx
    return np.clip(top * (1 - wy) + bottom * wy + 0.5, 0, 255).astype(np.uint8)


def _dequantize(values: np.ndarray, quantization: tuple[float, int]) -> np.ndarray:
    scale, zero_point = quantization
    if values.dtype == np.float32:
        return values
    if scale == 0:  # not quantized (e.g. an integer count)
        return values.astype(np.float32)
    return (values.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


class Detector:
    """Run a converted SSD ``.tflite`` on RGB frames.

    ``Detector(model_path)(frame)`` -> :class:`Detections` in frame pixels. Thresholds apply to the
    NumPy post-processing; a model with built-in post-processing (``"postprocess": "builtin"``) has
    its NMS IoU threshold baked in at conversion, here only ``score_threshold`` and
    ``max_detections`` further filter its output.

    Raises ``ModelLoadError`` (one line naming the file) when the model file is missing or corrupt,
    has no valid edge metadata, or its inputs/outputs do not match that metadata.
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        num_threads: int | None = None,
        score_threshold: float = 0.5,
        iou_threshold: float = 0.5,
        max_detections: int = 100,
        delegate: str | None = None,
        backends: Sequence[str] | None = None,
    ) -> None:
        self.model_path = os.fspath(model_path)
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.max_detections = int(max_detections)
        loaded = load_interpreter(self.model_path, num_threads=num_threads, delegate=delegate, backends=backends)
        try:
            self.metadata: ModelMetadata = read_metadata(self.model_path)
            self.anchors = self.metadata.anchors() if self.metadata.postprocess == "numpy" else None
        except MetadataError as exc:
            raise ModelLoadError(str(exc)) from None
        self.backend = loaded.backend
        self.labels: list[str] = list(self.metadata.labels)
        self._interpreter = loaded.interpreter
        self._lock = threading.Lock()
        self._check_input()
        self._outputs = self._check_outputs()

    @property
    def input_size(self) -> tuple[int, int]:
        """``(height, width)`` of the model input."""
        return self.metadata.input_size

    def _fail(self, what: str) -> ModelLoadError:
        return ModelLoadError(f"{self.model_path}: {what}")

    def _check_input(self) -> None:
        details = self._interpreter.get_input_details()
        if len(details) != 1:
            raise self._fail(f"expected 1 input tensor, model has {len(details)}")
        (detail,) = details
        height, width = self.input_size
        if tuple(detail["shape"]) != (1, height, width, 3):
            raise self._fail(
                f"input shape {tuple(detail['shape'])} does not match metadata 'input' (1, {height}, {width}, 3)"
            )
        if detail["dtype"] not in (np.uint8, np.int8, np.float32):
            raise self._fail(f"input dtype {np.dtype(detail['dtype']).name}; expected uint8, int8 or float32")
        self._input_index = detail["index"]
        self._input_dtype = np.dtype(detail["dtype"])
        self._input_quantization = detail["quantization"]

    def _check_outputs(self) -> dict[str, tuple[int, tuple[float, int]]]:
        """``{name: (tensor index, (scale, zero_point))}`` for the outputs the metadata names, shapes checked."""
        details = self._interpreter.get_output_details()
        outputs = {}
        for name, position in self.metadata.outputs.items():
            if not 0 <= position < len(details):
                raise self._fail(
                    f"metadata 'outputs.{name}' = {position}, but the model has {len(details)} output tensors"
                )
            outputs[name] = details[position]
        num_classes = len(self.labels)
        if self.metadata.postprocess == "numpy":
            num_anchors = self.anchors.shape[0]
            expected = {"box_deltas": (1, num_anchors, 4), "class_scores": (1, num_anchors, num_classes + 1)}
        else:
            max_boxes = int(outputs["scores"]["shape"][-1])
            expected = {"boxes": (1, max_boxes, 4), "classes": (1, max_boxes), "scores": (1, max_boxes), "count": (1,)}
        for name, shape in expected.items():
            if tuple(outputs[name]["shape"]) != shape:
                raise self._fail(f"output '{name}' has shape {tuple(outputs[name]['shape'])}; expected {shape}")
        return {name: (d["index"], d["quantization"]) for name, d in outputs.items()}

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        """RGB uint8 frame of any size (grayscale / RGBA accepted) -> model input ``(1, H, W, 3)`` in its dtype.

        uint8 pixels go in unchanged for a uint8 model with scale 1 / zero point 0; an int8 (or
        other-scaled) input is quantized with its scale and zero point; a float model gets float32
        pixels in [0, 255] (normalization is inside the model).
        """
        height, width = self.input_size
        image = resize_rgb(to_rgb(frame), height, width)[None]
        if self._input_dtype == np.float32:
            return image.astype(np.float32)
        scale, zero_point = self._input_quantization
        if self._input_dtype == np.uint8 and (scale in (0.0, 1.0)) and zero_point == 0:
            return image
        info = np.iinfo(self._input_dtype)
        quantized = np.round(image.astype(np.float32) / np.float32(scale or 1.0)) + zero_point
        return np.clip(quantized, info.min, info.max).astype(self._input_dtype)

    def invoke(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Run the interpreter on a preprocessed ``(1, H, W, 3)`` tensor; returns dequantized float32 outputs by name.

        Outputs are copies, so the next ``invoke`` may run while these are post-processed.
        """
        with self._lock:
            self._interpreter.set_tensor(self._input_index, tensor)
            self._interpreter.invoke()
            raw = {name: self._interpreter.get_tensor(index) for name, (index, _) in self._outputs.items()}
        return {name: _dequantize(raw[name], quantization) for name, (_, quantization) in self._outputs.items()}

    def postprocess(self, outputs: dict[str, np.ndarray], frame_size: Sequence[int]) -> Detections:
        """Model outputs (from ``invoke``) -> :class:`Detections` in a frame of ``frame_size``.

        ``frame_size`` is ``(height, width)`` or a whole ``frame.shape`` (``(H, W)`` / ``(H, W, C)``).
        """
        if self.metadata.postprocess == "numpy":
            boxes, scores, class_ids = decode_and_nms(
                outputs["box_deltas"][0],
                outputs["class_scores"][0],
                self.anchors,
                self.score_threshold,
                self.iou_threshold,
                self.max_detections,
                self.metadata.variances,
            )
        else:
            boxes, scores, class_ids = select_detections(
                outputs["boxes"][0],
                outputs["classes"][0],
                outputs["scores"][0],
                outputs["count"],
                self.score_threshold,
                self.max_detections,
                num_classes=len(self.labels),
            )
        height, width = int(frame_size[0]), int(frame_size[1])
        return Detections(normalized_to_pixels(boxes, height, width), scores, class_ids, self.labels, (height, width))

    def __call__(self, frame: np.ndarray) -> Detections:
        """Detect objects in one RGB uint8 frame ``(H, W, 3)`` (also ``(H, W)``, ``(H, W, 1)``, ``(H, W, 4)``)."""
        start = time.perf_counter()
        tensor = self.preprocess(frame)
        preprocessed = time.perf_counter()
        outputs = self.invoke(tensor)
        invoked = time.perf_counter()
        detections = self.postprocess(outputs, np.shape(frame)[:2])
        done = time.perf_counter()
        detections.preprocess_ms = (preprocessed - start) * 1e3
        detections.invoke_ms = (invoked - preprocessed) * 1e3
        detections.postprocess_ms = (done - invoked) * 1e3
        return detections

    def __repr__(self) -> str:
        return (
            f"Detector({self.model_path!r}, backend={self.backend}, input={self.input_size}, "
            f"quantization={self.metadata.quantization}, postprocess={self.metadata.postprocess}, "
            f"labels={len(self.labels)})"
        )
