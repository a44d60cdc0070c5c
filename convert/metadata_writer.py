"""Writing a model's ``edge_ssd_metadata`` into a ``.tflite`` (conversion's job; the edge only reads it).

The schema (``ModelMetadata``) and the reader live in ``edge.metadata``; this module embeds an entry and
re-packs the flatbuffer with the TFLite schema bindings shipped with ``ai-edge-litert`` (no TensorFlow).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge.metadata import METADATA_NAME, TFLITE_IDENTIFIER, ModelMetadata, check_tflite


def embed_metadata(tflite_bytes: bytes, metadata: ModelMetadata | bytes, name: str = METADATA_NAME) -> bytes:
    """Return ``tflite_bytes`` with a ``Model.metadata`` entry ``name`` holding ``metadata`` (JSON), replacing any old one.

    Uses the TFLite schema bindings shipped with ``ai-edge-litert`` (and the ``flatbuffers`` package), not TensorFlow.
    """
    from ai_edge_litert import schema_py_generated as schema  # only needed when writing

    check_tflite(bytes(tflite_bytes[:8]), "<model bytes>")
    payload = metadata.to_json().encode("utf-8") if isinstance(metadata, ModelMetadata) else bytes(metadata)
    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite_bytes), 0)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(payload, dtype=np.uint8)
    model.buffers = list(model.buffers or [])
    model.metadata = list(model.metadata or [])
    existing = [m for m in model.metadata if (m.name.decode() if isinstance(m.name, bytes) else m.name) == name]
    if existing:
        model.buffers[existing[0].buffer] = buffer
    else:
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = name
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    return pack_model(model, size_hint=len(tflite_bytes) + len(payload))


def pack_model(model: Any, size_hint: int = 1 << 20) -> bytes:
    """Serialize a TFLite ``schema.ModelT`` to ``.tflite`` bytes, writing each distinct vector only once.

    Flatbuffer tables refer to vectors by offset, so tables with equal contents may share one copy. A
    per-channel int8 model repeats the same all-zero int64 zero-point vector for every weight and bias
    tensor (8 bytes per output channel, ~10 % of a small MobileNet-SSD); sharing stores it once per
    channel count. The interpreter reads the result exactly as before.
    """
    import flatbuffers

    class SharingBuilder(flatbuffers.Builder):
        def __init__(self, initial_size: int) -> None:
            super().__init__(initial_size)
            self._vectors: dict[tuple[str, bytes], int] = {}

        def CreateNumpyVector(self, x: np.ndarray) -> int:  # noqa: N802 - flatbuffers' API name
            key = (x.dtype.str, x.tobytes())
            if key not in self._vectors:
                self._vectors[key] = super().CreateNumpyVector(x)
            return self._vectors[key]

    builder = SharingBuilder(size_hint + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())
