"""SSD models this project did not make: what their outputs are, how to feed them, their labels. No TensorFlow.

A "standard SSD" is a ``.tflite`` with one ``(1, H, W, 3)`` image input and the four outputs of
``TFLite_Detection_PostProcess``: ``boxes (1, K, 4)`` normalized ``ymin, xmin, ymax, xmax``,
``classes (1, K)`` 0-based ids, ``scores (1, K)``, ``count (1,)`` — the TF1 detection zoo's ``detect.tflite``,
TF2 Object Detection API exports, Coral's models, and this project's ``--postprocess builtin`` files.

Which output is which (:func:`output_layout`), first match wins:

1. signature output names: ``output_0..3`` = count, scores, classes, boxes (TF2 OD API export, as pycoral
   reads them) or ``detection_boxes`` / ``detection_classes`` / ``detection_scores`` / ``num_detections``;
2. tensor names ``TFLite_Detection_PostProcess``, ``:1``, ``:2``, ``:3`` = boxes, classes, scores, count
   (the op's own output order);
3. shapes, by position: ``(1, K, 4)`` first is the TF1 order boxes, classes, scores, count; ``(1, K, 4)``
   second with the count third is the TF2 order scores, boxes, count, classes.

Input (:func:`input_normalization`): model input = ``(pixel - mean) / std``, then quantized with the input
tensor's scale and zero point when it is an integer tensor. ``mean``/``std`` come from the caller (the
``--input-mean``/``--input-std`` flags), else the TFLite metadata's ``NormalizationOptions``, else the
convention of the tools that run these models (picamera2's examples, rpicam-apps, pycoral): a uint8 input
gets the camera's bytes unchanged, an int8 or float input gets pixels scaled to [-1, 1] (mean = std = 127.5).

Ultralytics-style YOLO exports (one output ``(1, 4 + C, N)``: ``cx, cy, w, h`` and ``C`` class scores per
candidate, :func:`yolo_classes`) run too: ``edge.postprocess.decode_yolo`` decodes them and applies the same
class-aware NMS as our SSDs; their float/int8 input defaults to [0, 1].

Labels (:func:`metadata_labels`): the caller's (``--labels``), else the first ``TENSOR_VALUE_LABELS`` (or
``TENSOR_AXIS_LABELS``) file the TFLite metadata names, read from the zip the metadata writer appends to
the model. Labels files in any of ``edge.labels``' formats; a ``???`` first line is the background.
"""

from __future__ import annotations

import dataclasses
import io
import re
import zipfile
from collections.abc import Mapping, Sequence

import numpy as np

from edge.labels import parse_labels
from edge.metadata import MetadataError, _Reader, read_metadata_buffers

OUTPUT_NAMES = ("boxes", "classes", "scores", "count")
TF1_ORDER = ("boxes", "classes", "scores", "count")
TF2_ORDER = ("scores", "boxes", "count", "classes")
SIGNATURE_NAMES = {
    "output_0": "count",
    "output_1": "scores",
    "output_2": "classes",
    "output_3": "boxes",
    "detection_boxes": "boxes",
    "detection_classes": "classes",
    "detection_scores": "scores",
    "num_detections": "count",
}
"""Signature output name -> output (TF2 OD API TFLite export; TF2 SavedModel names)."""
TFLITE_METADATA = "TFLITE_METADATA"
TFLITE_DEFAULT_NORMALIZATION = (127.5, 127.5)
YOLO_NORMALIZATION = (0.0, 255.0)
"""Ultralytics exports take RGB in [0, 1]."""
_OP_TENSOR = re.compile(r"^TFLite_Detection_PostProcess(?::(\d))?$")

# tflite-support metadata_schema.fbs field ids (a union takes two: type, value)
_MODEL_SUBGRAPHS, _MODEL_FILES = 3, 6
_SUBGRAPH_INPUTS, _SUBGRAPH_OUTPUTS, _SUBGRAPH_FILES = 2, 3, 4
_TENSOR_PROCESS_UNITS, _TENSOR_FILES = 4, 6
_UNIT_OPTIONS_TYPE, _UNIT_OPTIONS = 0, 1
_NORMALIZATION_OPTIONS = 1
_NORM_MEAN, _NORM_STD = 0, 1
_FILE_NAME, _FILE_TYPE = 0, 2
_VALUE_LABELS, _AXIS_LABELS = 3, 2


@dataclasses.dataclass(frozen=True)
class TfliteMetadata:
    """What the standard TFLite metadata (``TFLITE_METADATA``, tflite-support's schema) says, as far as we use it."""

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    label_files: tuple[str, ...] = ()
    """Associated files of type ``TENSOR_VALUE_LABELS`` first, then ``TENSOR_AXIS_LABELS``."""


def read_tflite_metadata(data: bytes, source: str = "<model bytes>") -> TfliteMetadata | None:
    """Parse the ``TFLITE_METADATA`` entry of a ``.tflite`` (None when it has none)."""
    buffer = read_metadata_buffers(data).get(TFLITE_METADATA)
    if not buffer:
        return None
    reader = _Reader(bytes(buffer), f"{source}: {TFLITE_METADATA}")
    root = reader.indirect(0)
    files: list[tuple[int, str]] = []

    def collect(table: int, field_id: int) -> None:
        start, length = reader.vector(table, field_id)
        for i in range(length):
            entry = reader.table_at(start, i)
            kind = reader.scalar(entry, _FILE_TYPE, "<b")
            if kind in (_VALUE_LABELS, _AXIS_LABELS):
                files.append((0 if kind == _VALUE_LABELS else 1, reader.string(entry, _FILE_NAME)))

    mean = std = None
    collect(root, _MODEL_FILES)
    subgraphs, num_subgraphs = reader.vector(root, _MODEL_SUBGRAPHS)
    if num_subgraphs:
        subgraph = reader.table_at(subgraphs, 0)
        collect(subgraph, _SUBGRAPH_FILES)
        inputs, num_inputs = reader.vector(subgraph, _SUBGRAPH_INPUTS)
        if num_inputs:
            tensor = reader.table_at(inputs, 0)
            units, num_units = reader.vector(tensor, _TENSOR_PROCESS_UNITS)
            for i in range(num_units):
                unit = reader.table_at(units, i)
                options = reader.field_pos(unit, _UNIT_OPTIONS)
                if options is not None and reader.scalar(unit, _UNIT_OPTIONS_TYPE, "<B") == _NORMALIZATION_OPTIONS:
                    table = reader.indirect(options)
                    mean, std = (_floats(reader, table, f) for f in (_NORM_MEAN, _NORM_STD))
        outputs, num_outputs = reader.vector(subgraph, _SUBGRAPH_OUTPUTS)
        for i in range(num_outputs):
            collect(reader.table_at(outputs, i), _TENSOR_FILES)
    names = tuple(dict.fromkeys(name for _, name in sorted(files, key=lambda f: f[0])))
    return TfliteMetadata(mean or None, std or None, names)


def _floats(reader: _Reader, table: int, field_id: int) -> tuple[float, ...]:
    start, length = reader.vector(table, field_id)
    return tuple(float(v) for v in np.frombuffer(reader.data, "<f4", length, start)) if length else ()


def associated_file(data: bytes, name: str) -> bytes | None:
    """A file packed into the model by the TFLite metadata writer (a zip appended to the flatbuffer)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return archive.read(name)
    except (zipfile.BadZipFile, KeyError):
        return None


def metadata_labels(data: bytes, source: str = "<model bytes>") -> list[str] | None:
    """Labels from the model's own metadata (an associated labels file), or None."""
    metadata = read_tflite_metadata(data, source)
    for name in metadata.label_files if metadata else ():
        content = associated_file(data, name)
        if content is not None:
            return parse_labels(content.decode("utf-8", errors="replace"), f"{source}: {name}")
    return None


def output_layout(
    output_details: Sequence[Mapping], signature_outputs: Mapping[str, int] | None = None
) -> tuple[dict[str, int], str]:
    """``({boxes, classes, scores, count: position in output_details}, how it was told)``.

    ``output_details``: the interpreter's ``get_output_details()``; ``signature_outputs``: ``{name: tensor
    index}`` of its one signature, if any. Raises ``ValueError`` saying what was expected.
    """
    shapes = [tuple(int(n) for n in d["shape"]) for d in output_details]
    expected = (
        "the 4 outputs of TFLite_Detection_PostProcess: boxes (1, K, 4), classes (1, K), scores (1, K), count (1,)"
    )
    if len(shapes) != 4:
        raise ValueError(f"{len(shapes)} output tensors {shapes}; expected {expected}")
    positions = {int(d["index"]): i for i, d in enumerate(output_details)}
    if signature_outputs and all(name in SIGNATURE_NAMES for name in signature_outputs):
        named = {SIGNATURE_NAMES[name]: positions.get(index) for name, index in signature_outputs.items()}
        if set(named) == set(OUTPUT_NAMES) and None not in named.values():
            return _checked(named, shapes, expected), "signature names " + ", ".join(sorted(signature_outputs))
    tensor_names = [_OP_TENSOR.match(str(d.get("name", ""))) for d in output_details]
    if all(tensor_names):
        by_op_output = {int(m.group(1) or 0): i for m, i in zip(tensor_names, range(4), strict=True)}
        if sorted(by_op_output) == [0, 1, 2, 3]:
            named = {name: by_op_output[k] for k, name in enumerate(TF1_ORDER)}
            return _checked(named, shapes, expected), "tensor names TFLite_Detection_PostProcess:0..3"
    if len(shapes[0]) == 3 and shapes[0][-1] == 4:
        return _checked(dict(zip(TF1_ORDER, range(4), strict=True)), shapes, expected), "TF1 order (by shapes)"
    if len(shapes[1]) == 3 and shapes[1][-1] == 4 and int(np.prod(shapes[2])) == 1:
        named = {name: i for i, name in enumerate(TF2_ORDER)}
        return _checked(named, shapes, expected), "TF2 order (by shapes)"
    raise ValueError(f"outputs {shapes} are in no known order; expected {expected}")


def yolo_classes(output_details: Sequence[Mapping]) -> int | None:
    """Number of classes of an Ultralytics-style YOLO export (one ``(1, 4 + C, N)`` output), else None."""
    if len(output_details) != 1:
        return None
    shape = tuple(int(n) for n in output_details[0]["shape"])
    if len(shape) != 3 or shape[0] != 1 or min(shape[1:]) < 5 or shape[1] == shape[2]:
        return None
    return min(shape[1:]) - 4


def _checked(named: dict[str, int], shapes: list[tuple[int, ...]], expected: str) -> dict[str, int]:
    boxes = shapes[named["boxes"]]
    k = boxes[1] if len(boxes) == 3 else -1
    want = {"boxes": (1, k, 4), "classes": (1, k), "scores": (1, k)}
    bad = {name: shapes[named[name]] for name, shape in want.items() if shapes[named[name]] != shape}
    if k < 1 or bad or int(np.prod(shapes[named["count"]])) != 1:
        raise ValueError(f"outputs {shapes} do not fit {expected}")
    return named


def input_normalization(
    dtype: np.dtype,
    quantization: tuple[float, int],
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    metadata: TfliteMetadata | None = None,
    default: tuple[float, float] = TFLITE_DEFAULT_NORMALIZATION,
) -> tuple[np.ndarray, np.ndarray, str]:
    """``(mean, std, where from)``: the model input is ``(pixel - mean) / std`` (then quantized), float32 ``(C,)``.

    Flags first (both or neither), then the metadata's ``NormalizationOptions``, then the tools' convention
    (module docstring): uint8 camera bytes, else ``default`` (SSD: [-1, 1]; YOLO: ``YOLO_NORMALIZATION``, [0, 1]).
    """
    if (mean is None) != (std is None):
        raise ValueError("--input-mean and --input-std go together")
    if mean is not None:
        chosen, where = (mean, std), "flags"
    elif metadata is not None and metadata.mean and metadata.std:
        chosen, where = (metadata.mean, metadata.std), "TFLite metadata NormalizationOptions"
    elif np.dtype(dtype) == np.uint8 and quantization[0]:
        scale, zero_point = quantization
        chosen, where = (float(zero_point), 1.0 / float(scale)), "uint8 input: camera bytes unchanged"
    else:
        low, high = (0 - default[0]) / default[1], (255 - default[0]) / default[1]
        chosen, where = default, f"default [{low:g}, {high:g}] (mean {default[0]:g}, std {default[1]:g})"
    mean_array = np.atleast_1d(np.asarray(chosen[0], dtype=np.float32))
    std_array = np.atleast_1d(np.asarray(chosen[1], dtype=np.float32))
    if (std_array == 0).any() or mean_array.size not in (1, 3) or std_array.size not in (1, 3):
        raise ValueError(
            f"input normalization from {where}: mean {chosen[0]} / std {chosen[1]} must be 1 or 3 values, std non-zero"
        )
    return mean_array, std_array, where


def describe(
    data: bytes,
    input_details: Sequence[Mapping],
    output_details: Sequence[Mapping],
    signatures: Mapping[str, Mapping] | None,
    source: str = "<model bytes>",
) -> dict:
    """A JSON-able description of a standard SSD or YOLO export for ``python -m edge info``; else ``ValueError``."""
    signature_outputs = None
    if signatures and len(signatures) == 1:
        signature_outputs = next(iter(signatures.values())).get("outputs")
    classes = yolo_classes(output_details)
    if classes is None:
        layout, how = output_layout(output_details, signature_outputs)
        kind = "standard SSD (TFLite_Detection_PostProcess outputs, no edge_ssd_metadata)"
        max_detections: int | None = int(output_details[layout["scores"]]["shape"][-1])
    else:
        layout, how = {"predictions": 0}, f"one (1, 4 + {classes}, N) output"
        kind, max_detections = "YOLO export (decoded and NMS'd by edge.postprocess.decode_yolo)", None
    (model_input,) = input_details
    metadata = read_tflite_metadata(data, source)
    mean, std, where = input_normalization(
        np.dtype(model_input["dtype"]),
        tuple(model_input["quantization"]),
        metadata=metadata,
        default=TFLITE_DEFAULT_NORMALIZATION if classes is None else YOLO_NORMALIZATION,
    )
    try:
        labels = metadata_labels(data, source)
    except (ValueError, MetadataError):
        labels = None
    return {
        "kind": kind,
        "input": {
            "shape": [int(n) for n in model_input["shape"]],
            "dtype": np.dtype(model_input["dtype"]).name,
            "quantization": [float(model_input["quantization"][0]), int(model_input["quantization"][1])],
            "normalization": {"mean": mean.tolist(), "std": std.tolist(), "from": where},
        },
        "outputs": layout,
        "outputs_from": how,
        "max_detections": max_detections,
        "labels": labels,
        "labels_from": "TFLite metadata associated file" if labels else "none in the model: pass --labels FILE",
    }
