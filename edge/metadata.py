"""What a ``.tflite`` detector says about itself, read without TensorFlow.

The converter stores one JSON document in the TFLite flatbuffer's ``Model.metadata`` table under the
name ``edge_ssd_metadata`` (schema in ``docs/ARCHITECTURE.md``, "Model file metadata"). The edge
runtime reads it with :func:`read_metadata`, a small hand-written flatbuffer reader that needs only the
standard library, so no sidecar file and no TensorFlow are needed on the Pi.

Anchors are reproducible rather than stored: the metadata carries the ``AnchorConfig``, the
``anchor_code_version`` of ``edge.anchors`` that produced them and the SHA-256 of the float32
``(N, 4)`` ``cy, cx, h, w`` anchor array; :meth:`ModelMetadata.anchors` regenerates and verifies them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
from typing import Any

import numpy as np

from edge.anchors import ANCHOR_CODE_VERSION, AnchorConfig, generate_anchors
from edge.errors import EdgeError

METADATA_NAME = "edge_ssd_metadata"
FORMAT = "edge-ssd"
VERSION = 1
TFLITE_IDENTIFIER = b"TFL3"
QUANTIZATION_MODES = ("float32", "float16", "dynamic", "int8")
POSTPROCESS_MODES = ("numpy", "builtin")
BUILTIN_OUTPUTS = ("boxes", "classes", "scores", "count")


class MetadataError(EdgeError, ValueError):
    """A model file is not a TFLite model, has no edge metadata, or the metadata is invalid."""


def anchors_sha256(anchors: np.ndarray) -> str:
    """Hex SHA-256 of ``anchors`` as C-contiguous little-endian float32 ``(N, 4)``."""
    array = np.ascontiguousarray(np.asarray(anchors, dtype="<f4"))
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"anchors must have shape (N, 4), got {array.shape}")
    return hashlib.sha256(array.tobytes()).hexdigest()


def _require(data: dict, key: str, kind: type | tuple[type, ...], where: str = "metadata") -> Any:
    if key not in data:
        raise MetadataError(f"{where}: missing field '{key}'")
    value = data[key]
    if not isinstance(value, kind) or (kind in (int, float, (int, float)) and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise MetadataError(f"{where}: field '{key}' must be {names}, got {type(value).__name__} {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class ModelMetadata:
    """The self-description embedded in a converted detector.

    ``outputs`` maps ``box_deltas``/``class_scores`` to output tensor indices when
    ``postprocess == "numpy"`` (raw SSD outputs, decoded by ``edge.postprocess``), or
    ``boxes``/``classes``/``scores``/``count`` for ``postprocess == "builtin"``
    (``TFLite_Detection_PostProcess`` in the graph). ``input_dtype`` is ``"uint8"`` for full-int8
    models (raw pixels) and ``"float32"`` otherwise (raw pixels in [0, 255] as float).
    """

    labels: tuple[str, ...]
    input_height: int
    input_width: int
    input_dtype: str
    alpha: float
    anchors_config: AnchorConfig
    anchors_sha256: str
    outputs: dict[str, int]
    postprocess: str = "numpy"
    quantization: str = "float32"
    variances: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)
    anchor_code_version: int = ANCHOR_CODE_VERSION
    input_color: str = "RGB"
    num_anchors: int = 0
    accuracy: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))
        object.__setattr__(self, "variances", tuple(float(v) for v in self.variances))
        object.__setattr__(self, "outputs", {str(k): int(v) for k, v in self.outputs.items()})
        if not self.labels:
            raise MetadataError("metadata: field 'labels' must be a non-empty list of class names")
        if self.input_height <= 0 or self.input_width <= 0:
            raise MetadataError(f"metadata: field 'input' must have positive height/width, got {self.input_size}")
        if self.input_dtype not in ("uint8", "int8", "float32"):
            raise MetadataError(
                f"metadata: field 'input.dtype' must be uint8, int8 or float32, got {self.input_dtype!r}"
            )
        if self.input_color != "RGB":
            raise MetadataError(f"metadata: field 'input.color' must be 'RGB', got {self.input_color!r}")
        if self.quantization not in QUANTIZATION_MODES:
            raise MetadataError(
                f"metadata: field 'quantization' must be one of {list(QUANTIZATION_MODES)}, got {self.quantization!r}"
            )
        if self.postprocess not in POSTPROCESS_MODES:
            raise MetadataError(
                f"metadata: field 'postprocess' must be one of {list(POSTPROCESS_MODES)}, got {self.postprocess!r}"
            )
        expected = ("box_deltas", "class_scores") if self.postprocess == "numpy" else BUILTIN_OUTPUTS
        if sorted(self.outputs) != sorted(expected):
            raise MetadataError(
                f"metadata: field 'outputs' must map {list(expected)} to output indices for "
                f"postprocess={self.postprocess!r}, got {self.outputs}"
            )
        if len(self.variances) != 4:
            raise MetadataError(f"metadata: field 'variances' must have 4 values, got {self.variances}")
        if not isinstance(self.accuracy, dict):
            raise MetadataError(f"metadata: field 'accuracy' must be an object, got {self.accuracy!r}")

    @property
    def input_size(self) -> tuple[int, int]:
        """``(height, width)`` of the model input in pixels."""
        return (self.input_height, self.input_width)

    @property
    def num_classes(self) -> int:
        """Number of object classes (background excluded)."""
        return len(self.labels)

    def anchors(self, verify: bool = True) -> np.ndarray:
        """Regenerate the ``(N, 4)`` float32 ``cy, cx, h, w`` anchors and check them against the stored checksum.

        Raises ``MetadataError`` when this ``edge.anchors`` has a different ``ANCHOR_CODE_VERSION`` or
        produces different anchors than the converter did.
        """
        if verify and self.anchor_code_version != ANCHOR_CODE_VERSION:
            raise MetadataError(
                f"metadata: model anchors were made by anchor code version {self.anchor_code_version}, "
                f"this edge.anchors is version {ANCHOR_CODE_VERSION}; reconvert the model or update the runtime"
            )
        anchors = generate_anchors(self.input_size, self.anchors_config)
        if verify and anchors_sha256(anchors) != self.anchors_sha256:
            raise MetadataError(
                "metadata: field 'anchors_sha256' does not match the anchors regenerated from 'anchors' "
                f"({self.anchors_config}) at input size {self.input_size}; the model and runtime disagree on geometry"
            )
        return anchors

    def to_dict(self) -> dict:
        """The JSON document described in ``docs/ARCHITECTURE.md``."""
        data: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "labels": list(self.labels),
            "input": {
                "height": self.input_height,
                "width": self.input_width,
                "dtype": self.input_dtype,
                "color": self.input_color,
            },
            "alpha": self.alpha,
            "input_size": [self.input_height, self.input_width],
            "anchors": self.anchors_config.to_dict(),
            "anchor_code_version": self.anchor_code_version,
            "anchors_sha256": self.anchors_sha256,
            "num_anchors": self.num_anchors,
            "variances": list(self.variances),
            "outputs": dict(self.outputs),
            "postprocess": self.postprocess,
            "quantization": self.quantization,
            "accuracy": self.accuracy,
        }
        data["anchors"]["aspect_ratios"] = list(data["anchors"]["aspect_ratios"])
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> ModelMetadata:
        """Validate and parse the JSON document; raises ``MetadataError`` naming the bad field."""
        if not isinstance(data, dict):
            raise MetadataError(f"metadata: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise MetadataError(f"metadata: field 'format' must be {FORMAT!r}, got {data.get('format')!r}")
        version = _require(data, "version", int)
        if version > VERSION:
            raise MetadataError(f"metadata: field 'version' is {version}; this runtime reads up to version {VERSION}")
        labels = _require(data, "labels", list)
        if not all(isinstance(label, str) for label in labels):
            raise MetadataError("metadata: field 'labels' must be a list of strings")
        model_input = _require(data, "input", dict)
        anchors = _require(data, "anchors", dict)
        try:
            anchors_config = AnchorConfig.from_dict(anchors)
        except (TypeError, ValueError) as exc:
            raise MetadataError(f"metadata: field 'anchors' is not a valid AnchorConfig: {exc}") from None
        variances = _require(data, "variances", list)
        if len(variances) != 4 or not all(isinstance(v, (int, float)) for v in variances):
            raise MetadataError(f"metadata: field 'variances' must be 4 numbers, got {variances!r}")
        outputs = _require(data, "outputs", dict)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in outputs.values()):
            raise MetadataError(f"metadata: field 'outputs' must map names to integer indices, got {outputs!r}")
        return cls(
            labels=tuple(labels),
            input_height=_require(model_input, "height", int, "metadata.input"),
            input_width=_require(model_input, "width", int, "metadata.input"),
            input_dtype=_require(model_input, "dtype", str, "metadata.input"),
            input_color=_require(model_input, "color", str, "metadata.input"),
            alpha=float(_require(data, "alpha", (int, float))),
            anchors_config=anchors_config,
            anchors_sha256=_require(data, "anchors_sha256", str),
            anchor_code_version=_require(data, "anchor_code_version", int),
            num_anchors=int(data.get("num_anchors", 0)),
            variances=tuple(variances),
            outputs=outputs,
            postprocess=_require(data, "postprocess", str),
            quantization=_require(data, "quantization", str),
            accuracy=data.get("accuracy", {}) or {},
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelMetadata:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MetadataError(f"metadata: not valid JSON ({exc})") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> ModelMetadata:
        return dataclasses.replace(self, **changes)


# --- minimal TFLite flatbuffer reader (schema.fbs: Model, Buffer, Metadata) -------------------------------

_MODEL_BUFFERS = 4  # field ids in tflite/schema.fbs `table Model`
_MODEL_METADATA = 6
_METADATA_NAME = 0  # `table Metadata { name: string; buffer: uint; }`
_METADATA_BUFFER = 1
_BUFFER_DATA = 0  # `table Buffer { data: [ubyte]; offset: ulong; size: ulong; }`
_BUFFER_OFFSET = 1
_BUFFER_SIZE = 2


class _Reader:
    """Bounds-checked reads of flatbuffer tables, vectors and strings from one byte buffer."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.source = source

    def _unpack(self, fmt: str, pos: int) -> int:
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.data):
            raise MetadataError(f"{self.source}: corrupt TFLite flatbuffer (read past the end at byte {pos})")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def field_pos(self, table: int, field_id: int) -> int | None:
        vtable = table - self._unpack("<i", table)
        vtable_size = self._unpack("<H", vtable)
        entry = 4 + 2 * field_id
        if entry >= vtable_size:
            return None
        offset = self._unpack("<H", vtable + entry)
        return table + offset if offset else None

    def scalar(self, table: int, field_id: int, fmt: str, default: int = 0) -> int:
        pos = self.field_pos(table, field_id)
        return default if pos is None else self._unpack(fmt, pos)

    def indirect(self, pos: int) -> int:
        return pos + self._unpack("<I", pos)

    def vector(self, table: int, field_id: int) -> tuple[int, int]:
        """``(start, length)`` of a vector field, ``(0, 0)`` when absent."""
        pos = self.field_pos(table, field_id)
        if pos is None:
            return 0, 0
        vec = self.indirect(pos)
        return vec + 4, self._unpack("<I", vec)

    def string(self, table: int, field_id: int) -> str:
        start, length = self.vector(table, field_id)
        return self.data[start : start + length].decode("utf-8", errors="replace")

    def table_at(self, vector_start: int, index: int) -> int:
        return self.indirect(vector_start + 4 * index)


def _load_bytes(model: str | os.PathLike | bytes | bytearray | memoryview) -> tuple[bytes, str]:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), "<model bytes>"
    path = os.fspath(model)
    try:
        with open(path, "rb") as f:
            return f.read(), path
    except OSError as exc:
        raise MetadataError(f"{path}: cannot read model file ({exc.strerror})") from None


def check_tflite(data: bytes, source: str) -> None:
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise MetadataError(
            f"{source}: not a TFLite model (expected the flatbuffer file identifier 'TFL3' at bytes 4..8, "
            f"got {data[4:8]!r})"
        )


def read_metadata_buffers(model: str | os.PathLike | bytes) -> dict[str, bytes]:
    """All ``Model.metadata`` entries of a ``.tflite`` as ``{name: buffer bytes}`` (no TensorFlow needed)."""
    return _metadata_entries(*_load_bytes(model))


def _metadata_entries(data: bytes, source: str) -> dict[str, bytes]:
    check_tflite(data, source)
    reader = _Reader(data, source)
    root = reader.indirect(0)
    buffers_start, num_buffers = reader.vector(root, _MODEL_BUFFERS)
    meta_start, num_meta = reader.vector(root, _MODEL_METADATA)
    entries: dict[str, bytes] = {}
    for i in range(num_meta):
        entry = reader.table_at(meta_start, i)
        name = reader.string(entry, _METADATA_NAME)
        index = reader.scalar(entry, _METADATA_BUFFER, "<I")
        if index >= num_buffers:
            raise MetadataError(f"{source}: metadata '{name}' points at buffer {index}, model has {num_buffers}")
        buffer = reader.table_at(buffers_start, index)
        offset = reader.scalar(buffer, _BUFFER_OFFSET, "<Q")
        if offset > 1:  # large models keep buffer data after the flatbuffer
            size = reader.scalar(buffer, _BUFFER_SIZE, "<Q")
            entries[name] = data[offset : offset + size]
        else:
            start, length = reader.vector(buffer, _BUFFER_DATA)
            entries[name] = data[start : start + length]
    return entries


def read_metadata(model: str | os.PathLike | bytes) -> ModelMetadata:
    """Parse the ``edge_ssd_metadata`` entry of a ``.tflite`` file (path) or its bytes.

    Raises ``MetadataError`` when the input is not a TFLite model, has no edge metadata
    (e.g. it was not converted by ``python -m convert``) or the metadata is invalid.
    """
    data, source = _load_bytes(model)
    entries = _metadata_entries(data, source)
    if METADATA_NAME not in entries:
        raise MetadataError(
            f"{source}: TFLite model has no '{METADATA_NAME}' metadata (found {sorted(entries) or 'none'}); "
            "expected a model converted with `python -m convert`"
        )
    try:
        return ModelMetadata.from_json(entries[METADATA_NAME])
    except MetadataError as exc:
        raise MetadataError(f"{source}: {exc}") from None
