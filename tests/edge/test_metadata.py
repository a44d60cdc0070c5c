"""edge.metadata: JSON round trip with validation, embedding in a real .tflite, reading it back without TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convert.metadata_writer import embed_metadata
from edge.anchors import ANCHOR_CODE_VERSION, AnchorConfig, generate_anchors
from edge.metadata import (
    METADATA_NAME,
    MetadataError,
    ModelMetadata,
    anchors_sha256,
    read_metadata,
    read_metadata_buffers,
)

ROOT = Path(__file__).resolve().parents[2]
INPUT_SIZE = (96, 128)
ANCHORS = AnchorConfig(min_scale=0.15, num_layers=5)


def _metadata(**changes) -> ModelMetadata:
    values = dict(
        labels=("cat", "dog"),
        input_height=INPUT_SIZE[0],
        input_width=INPUT_SIZE[1],
        input_dtype="uint8",
        alpha=0.5,
        anchors_config=ANCHORS,
        anchors_sha256=anchors_sha256(generate_anchors(INPUT_SIZE, ANCHORS)),
        num_anchors=len(generate_anchors(INPUT_SIZE, ANCHORS)),
        outputs={"box_deltas": 1, "class_scores": 0},
        quantization="int8",
        accuracy={"float": {"map50": 0.9}, "int8": {"map50": 0.895}},
    )
    values.update(changes)
    return ModelMetadata(**values)


@pytest.fixture(scope="module")
def plain_tflite() -> bytes:
    """A real (tiny) TFLite flatbuffer without any metadata."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def double(x):
        return {"y": x * 2.0 + tf.constant([1.0, 2.0, 3.0, 4.0])}

    return bytes(tf.lite.TFLiteConverter.from_concrete_functions([double.get_concrete_function()]).convert())


def test_json_round_trip():
    metadata = _metadata()
    data = json.loads(metadata.to_json())
    assert data["format"] == "edge-ssd" and data["version"] == 1
    assert data["input"] == {"height": 96, "width": 128, "dtype": "uint8", "color": "RGB"}
    assert data["anchor_code_version"] == ANCHOR_CODE_VERSION
    assert data["anchors"]["num_layers"] == 5
    assert ModelMetadata.from_json(metadata.to_json()) == metadata


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("labels"), "missing field 'labels'"),
        (lambda d: d["input"].pop("height"), r"metadata.input: missing field 'height'"),
        (lambda d: d.update(quantization="int4"), r"'quantization' must be one of \['float32'"),
        (lambda d: d.update(outputs={"boxes": 0}), "field 'outputs' must map"),
        (lambda d: d.update(format="other"), "field 'format' must be 'edge-ssd'"),
        (lambda d: d.update(alpha="wide"), "field 'alpha' must be int or float"),
        (lambda d: d["anchors"].update(min_scale=2.0), "field 'anchors' is not a valid AnchorConfig"),
        (lambda d: d.update(variances=[0.1, 0.2]), "field 'variances' must be 4 numbers"),
    ],
)
def test_invalid_metadata_names_the_field(mutate, message):
    data = _metadata().to_dict()
    mutate(data)
    with pytest.raises(MetadataError, match=message):
        ModelMetadata.from_dict(data)


def test_anchors_are_regenerated_and_verified():
    metadata = _metadata()
    np.testing.assert_array_equal(metadata.anchors(), generate_anchors(INPUT_SIZE, ANCHORS))
    tampered = _metadata(anchors_sha256=anchors_sha256(generate_anchors(INPUT_SIZE)))
    with pytest.raises(MetadataError, match="anchors_sha256"):
        tampered.anchors()
    with pytest.raises(MetadataError, match="anchor code version 999"):
        _metadata(anchor_code_version=999).anchors()


def test_embed_then_read_back(plain_tflite, tmp_path):
    metadata = _metadata()
    model_bytes = embed_metadata(plain_tflite, metadata)
    assert read_metadata(model_bytes) == metadata
    path = tmp_path / "model.tflite"
    path.write_bytes(model_bytes)
    assert read_metadata(path) == metadata
    # Replacing keeps one entry, and the model still runs with the same output.
    updated = metadata.replace(accuracy={"int8": {"map50": 0.5}})
    model_bytes = embed_metadata(model_bytes, updated)
    assert list(read_metadata_buffers(model_bytes)) == [
        *[k for k in read_metadata_buffers(plain_tflite)],
        METADATA_NAME,
    ]
    assert read_metadata(model_bytes).accuracy == {"int8": {"map50": 0.5}}
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.ones((1, 4), np.float32))
    interpreter.invoke()
    np.testing.assert_allclose(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]), [[3, 4, 5, 6]])


def test_read_back_in_a_process_without_tensorflow(plain_tflite, tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(embed_metadata(plain_tflite, _metadata()))
    script = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        "from edge.metadata import read_metadata\n"
        f"m = read_metadata({str(path)!r})\n"
        "anchors = m.anchors()\n"
        "assert 'tensorflow' not in [k for k, v in sys.modules.items() if v is not None]\n"
        "print(m.labels, m.input_size, m.quantization, m.outputs['box_deltas'], anchors.shape, m.accuracy['int8'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    num_anchors = len(generate_anchors(INPUT_SIZE, ANCHORS))
    expected = f"('cat', 'dog') (96, 128) int8 1 ({num_anchors}, 4) {{'map50': 0.895}}"
    assert result.stdout.strip() == expected


def test_not_a_tflite_file(tmp_path):
    path = tmp_path / "weights.keras"
    path.write_bytes(b"PK\x03\x04 definitely a zip file")
    with pytest.raises(MetadataError, match=r"weights.keras: not a TFLite model"):
        read_metadata(path)
    with pytest.raises(MetadataError, match="cannot read model file"):
        read_metadata(tmp_path / "missing.tflite")


def test_tflite_without_edge_metadata(plain_tflite):
    with pytest.raises(MetadataError, match="has no 'edge_ssd_metadata' metadata.*python -m convert"):
        read_metadata(plain_tflite)


def test_truncated_file_is_reported_not_crashing(plain_tflite):
    data = embed_metadata(plain_tflite, _metadata())
    with pytest.raises(MetadataError):
        read_metadata(data[: len(data) // 3])
