"""``Detector``: RGB frame -> TFLite SSD -> ``Detections``. NumPy + a TFLite runtime (+ OpenCV to resize).

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

from edge import standard_ssd
from edge.boxes import normalized_to_pixels
from edge.image import frame_as_rgb, resize_rgb
from edge.labels import parse_labels
from edge.metadata import METADATA_NAME, MetadataError, ModelMetadata, read_metadata, read_metadata_buffers
from edge.postprocess import SSDDecoder, decode_yolo, select_detections
from edge.runtime import ModelLoadError, load_interpreter

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Detections:
    """Detections in one frame, in the canonical box format.

    ``boxes`` ``(K, 4)`` float32 normalized ``ymin, xmin, ymax, xmax`` in [0, 1] of the frame (as TFLite SSD
    outputs and ``edge.boxes``), ``scores`` ``(K,)`` float32, ``class_ids`` ``(K,)`` int32 0-based indices into
    ``labels`` (background excluded), best first; ``frame_size`` ``(height, width)`` of the frame, which
    ``pixel_boxes`` uses; ``*_ms`` are the stage times that produced them.
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

    def pixel_boxes(self, frame_size: Sequence[int] | None = None) -> np.ndarray:
        """``(K, 4)`` float32 pixel ``xmin, ymin, xmax, ymax`` in a frame of ``frame_size`` ``(height, width)``
        (default: ``self.frame_size``; e.g. the main stream's size for detections made on lores)."""
        height, width = (self.frame_size if frame_size is None else frame_size)[:2]
        if not (height and width):
            raise ValueError("Detections.pixel_boxes: no frame size (pass frame_size=(height, width))")
        return normalized_to_pixels(self.boxes, int(height), int(width))

    @property
    def names(self) -> list[str]:
        """Label of each detection."""
        return [self.labels[i] for i in self.class_ids.tolist()]

    @property
    def timings_ms(self) -> dict[str, float]:
        return {"preprocess": self.preprocess_ms, "invoke": self.invoke_ms, "postprocess": self.postprocess_ms}


def _dequantize(values: np.ndarray, quantization: tuple[float, int]) -> np.ndarray:
    scale, zero_point = quantization
    if values.dtype == np.float32:
        return values
    if scale == 0:  # not quantized (e.g. an integer count)
        return values.astype(np.float32)
    return (values.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


class Detector:
    """Run an SSD ``.tflite`` on RGB frames: ours, or a standard SSD someone else made.

    ``Detector(model_path)(frame)`` -> :class:`Detections` of that frame. Our models describe themselves
    (``edge.metadata``). A model without that metadata runs when it is a standard SSD with
    ``TFLite_Detection_PostProcess`` outputs (``edge.standard_ssd``: TF1 zoo ``detect.tflite``, TF2 OD API
    exports, Coral models): ``labels`` (a list of names or a labels file path) unless its TFLite metadata
    carries them, ``input_mean``/``input_std`` unless its metadata or the dtype convention says.

    Thresholds apply to the NumPy post-processing; a model with built-in post-processing has its NMS baked
    in, here only ``score_threshold`` and ``max_detections`` further filter its output.

    Raises ``ModelLoadError`` (one line naming the file) when the model file is missing or corrupt, has
    invalid edge metadata, is neither ours nor a standard SSD, or its inputs/outputs do not fit.
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
        labels: Sequence[str] | str | os.PathLike | None = None,
        input_mean: float | Sequence[float] | None = None,
        input_std: float | Sequence[float] | None = None,
    ) -> None:
        self.model_path = os.fspath(model_path)
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.max_detections = int(max_detections)
        loaded = load_interpreter(self.model_path, num_threads=num_threads, delegate=delegate, backends=backends)
        self.backend = loaded.backend
        self._interpreter = loaded.interpreter
        self._lock = threading.Lock()
        try:
            entries = read_metadata_buffers(self.model_path)
            if METADATA_NAME in entries:
                self.metadata: ModelMetadata | None = read_metadata(self.model_path)
                self.anchors = self.metadata.anchors() if self.metadata.postprocess == "numpy" else None
                # The per-anchor decode constants, computed once for every frame's post-processing.
                self._decoder = SSDDecoder(self.anchors, self.metadata.variances) if self.anchors is not None else None
        except MetadataError as exc:
            raise ModelLoadError(str(exc)) from None
        if METADATA_NAME in entries:
            if input_mean is not None or input_std is not None:
                raise self._fail("--input-mean/--input-std: this model's input normalization is in its metadata")
            self.postprocess_mode = self.metadata.postprocess
            self.labels: list[str] = self._labels(labels) if labels is not None else list(self.metadata.labels)
            if len(self.labels) != len(self.metadata.labels):
                raise self._fail(f"labels: {len(self.labels)} names, the model has {len(self.metadata.labels)} classes")
            self._input_size = self.metadata.input_size
            self._positions = dict(self.metadata.outputs)
            self.normalization: tuple[np.ndarray, np.ndarray] | None = None
            self.source_description = "edge_ssd_metadata"
        else:
            self.metadata, self.anchors, self._decoder = None, None, None
            self._describe_standard_ssd(labels, input_mean, input_std)
        self._check_input()
        self._outputs = self._check_outputs()

    def _labels(self, labels: Sequence[str] | str | os.PathLike) -> list[str]:
        if isinstance(labels, (str, os.PathLike)):
            try:
                with open(labels, encoding="utf-8") as f:
                    return parse_labels(f.read(), os.fspath(labels))
            except OSError as exc:
                raise self._fail(f"labels file {os.fspath(labels)}: {exc.strerror}") from None
            except ValueError as exc:
                raise self._fail(str(exc)) from None
        return [str(name) for name in labels]

    def _describe_standard_ssd(self, labels, input_mean, input_std) -> None:
        """A model without our metadata: a standard SSD read by ``edge.standard_ssd``."""
        interpreter = self._interpreter
        signatures = interpreter._get_full_signature_list() if hasattr(interpreter, "_get_full_signature_list") else {}
        signature_outputs = next(iter(signatures.values())).get("outputs") if len(signatures or {}) == 1 else None
        yolo_classes = standard_ssd.yolo_classes(interpreter.get_output_details())
        if yolo_classes is not None:
            self._positions, layout = {"predictions": 0}, f"YOLO export, {yolo_classes} classes"
        else:
            try:
                self._positions, layout = standard_ssd.output_layout(
                    interpreter.get_output_details(), signature_outputs
                )
            except ValueError as exc:
                raise self._fail(
                    f"no '{METADATA_NAME}' metadata (not converted by `python -m convert`), not a standard SSD and "
                    f"not a YOLO export: {exc}"
                ) from None
        with open(self.model_path, "rb") as f:
            data = f.read()
        try:
            tflite_metadata = standard_ssd.read_tflite_metadata(data, self.model_path)
            names = self._labels(labels) if labels is not None else standard_ssd.metadata_labels(data, self.model_path)
        except MetadataError as exc:
            raise self._fail(str(exc)) from None
        if not names:
            raise self._fail(
                "standard SSD without labels in its metadata: pass labels (--labels labelmap.txt, one name per line "
                "or 'index name' lines; a first line ??? is the background)"
            )
        (detail,) = interpreter.get_input_details()[:1]
        try:
            mean, std, where = standard_ssd.input_normalization(
                np.dtype(detail["dtype"]),
                tuple(detail["quantization"]),
                input_mean,
                input_std,
                tflite_metadata,
                standard_ssd.YOLO_NORMALIZATION if yolo_classes else standard_ssd.TFLITE_DEFAULT_NORMALIZATION,
            )
        except ValueError as exc:
            raise self._fail(str(exc)) from None
        if yolo_classes is not None and len(names) != yolo_classes:
            raise self._fail(f"labels: {len(names)} names, the YOLO output has {yolo_classes} classes")
        self.labels = list(names)
        self._input_size = (int(detail["shape"][1]), int(detail["shape"][2])) if len(detail["shape"]) == 4 else (0, 0)
        self.normalization = (mean, std)
        self.postprocess_mode = "builtin" if yolo_classes is None else "yolo"
        self.source_description = f"standard SSD ({layout}; input normalization: {where})"
        log.info("%s: %s", self.model_path, self.source_description)

    @property
    def input_size(self) -> tuple[int, int]:
        """``(height, width)`` of the model input."""
        return self._input_size

    def _fail(self, what: str) -> ModelLoadError:
        return ModelLoadError(f"{self.model_path}: {what}")

    def _check_input(self) -> None:
        details = self._interpreter.get_input_details()
        if len(details) != 1:
            raise self._fail(f"expected 1 input tensor, model has {len(details)}")
        (detail,) = details
        height, width = self.input_size
        if tuple(detail["shape"]) != (1, height, width, 3):
            where = "metadata 'input'" if self.metadata is not None else "an RGB image"
            raise self._fail(f"input shape {tuple(detail['shape'])} does not match {where} (1, {height}, {width}, 3)")
        if detail["dtype"] not in (np.uint8, np.int8, np.float32):
            raise self._fail(f"input dtype {np.dtype(detail['dtype']).name}; expected uint8, int8 or float32")
        self._input_index = detail["index"]
        self._input_dtype = np.dtype(detail["dtype"])
        self._input_quantization = detail["quantization"]

    def _check_outputs(self) -> dict[str, tuple[int, tuple[float, int]]]:
        """``{name: (tensor index, (scale, zero_point))}`` for the model's outputs, shapes checked."""
        details = self._interpreter.get_output_details()
        outputs = {}
        for name, position in self._positions.items():
            if not 0 <= position < len(details):
                raise self._fail(
                    f"metadata 'outputs.{name}' = {position}, but the model has {len(details)} output tensors"
                )
            outputs[name] = details[position]
        num_classes = len(self.labels)
        if self.postprocess_mode == "yolo":
            expected = {}
        elif self.postprocess_mode == "numpy":
            num_anchors = self.anchors.shape[0]
            expected = {"box_deltas": (1, num_anchors, 4), "class_scores": (1, num_anchors, num_classes + 1)}
        else:
            max_boxes = int(outputs["scores"]["shape"][-1])
            expected = {"boxes": (1, max_boxes, 4), "classes": (1, max_boxes), "scores": (1, max_boxes)}
            if int(np.prod(outputs["count"]["shape"])) != 1:
                raise self._fail(f"output 'count' has shape {tuple(outputs['count']['shape'])}; expected (1,)")
        for name, shape in expected.items():
            if tuple(outputs[name]["shape"]) != shape:
                raise self._fail(f"output '{name}' has shape {tuple(outputs[name]['shape'])}; expected {shape}")
        return {name: (d["index"], d["quantization"]) for name, d in outputs.items()}

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        """RGB uint8 frame of any size (grayscale / RGBA accepted) -> model input ``(1, H, W, 3)`` in its dtype.

        Our models (edge metadata): uint8 pixels go in unchanged for a uint8 model with scale 1 / zero point
        0; an int8 (or other-scaled) input is quantized with its scale and zero point; a float model gets
        float32 pixels in [0, 255] (normalization is inside the model). A standard SSD gets
        ``(pixel - mean) / std`` (``self.normalization``, see ``edge.standard_ssd``), quantized for an integer input.
        """
        height, width = self.input_size
        image = resize_rgb(frame_as_rgb(frame), height, width)[None]
        scale, zero_point = self._input_quantization
        if self.normalization is not None:
            mean, std = self.normalization
            raw = (
                self._input_dtype == np.uint8
                and scale
                and np.allclose(mean, zero_point)
                and np.allclose(std * scale, 1)
            )
            if raw:
                return image
            values = (image.astype(np.float32) - mean) / std
        else:
            values = image
        if self._input_dtype == np.float32:
            return values.astype(np.float32)
        if self.normalization is None and self._input_dtype == np.uint8 and (scale in (0.0, 1.0)) and zero_point == 0:
            return image
        info = np.iinfo(self._input_dtype)
        quantized = np.round(values.astype(np.float32) / np.float32(scale or 1.0)) + zero_point
        return np.clip(quantized, info.min, info.max).astype(self._input_dtype)

    def invoke(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Run the interpreter on a preprocessed ``(1, H, W, 3)`` tensor; returns dequantized float32 outputs by name.

        Outputs are copies, so the next ``invoke`` may run while these are post-processed.
        """
        return self.dequantize(self.invoke_raw(tensor))

    def invoke_raw(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """``invoke`` without the dequantization: copies of the output tensors in the model's own dtypes.

        The pipeline's inference thread calls this and leaves ``dequantize`` to the output thread, so the
        thread that feeds the interpreter does as little as possible between two invokes.
        """
        with self._lock:
            self._interpreter.set_tensor(self._input_index, tensor)
            self._interpreter.invoke()
            return {name: self._interpreter.get_tensor(index) for name, (index, _) in self._outputs.items()}

    def dequantize(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs from ``invoke_raw`` -> float32 outputs by name (``(q - zero_point) * scale``; floats unchanged)."""
        return {name: _dequantize(raw[name], quantization) for name, (_, quantization) in self._outputs.items()}

    def postprocess(self, outputs: dict[str, np.ndarray], frame_size: Sequence[int]) -> Detections:
        """Model outputs (from ``invoke``) -> :class:`Detections` in a frame of ``frame_size``.

        ``frame_size`` is ``(height, width)`` or a whole ``frame.shape`` (``(H, W)`` / ``(H, W, C)``).
        """
        if self.postprocess_mode == "numpy":
            boxes, scores, class_ids = self._decoder(
                outputs["box_deltas"][0],
                outputs["class_scores"][0],
                self.score_threshold,
                self.iou_threshold,
                self.max_detections,
            )
        elif self.postprocess_mode == "yolo":
            boxes, scores, class_ids = decode_yolo(
                outputs["predictions"],
                self.input_size,
                self.score_threshold,
                self.iou_threshold,
                self.max_detections,
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
        return Detections(boxes, scores, class_ids, self.labels, (int(frame_size[0]), int(frame_size[1])))

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
            f"input_dtype={self._input_dtype.name}, postprocess={self.postprocess_mode}, "
            f"labels={len(self.labels)}, described_by={self.source_description!r})"
        )
