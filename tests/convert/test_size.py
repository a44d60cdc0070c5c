"""The full-int8 file is at most 0.27x the float32 file, and how the file is kept compact.

Per-channel int8 carries a float32 scale and an int64 zero point per output channel of every weight
and bias tensor; on the depthwise-heavy MobileNet-SSD that overhead alone is ~10 % of the int8 file.
``convert.metadata_writer.pack_model`` stores each distinct vector once (all zero points of a given channel count
share one copy) and ``convert.converter.shorten_tensor_names`` drops the fused-op name lists.
"""

from __future__ import annotations

import flatbuffers
import numpy as np
import pytest

from convert.converter import convert, shorten_tensor_names
from convert.metadata_writer import pack_model
from edge.metadata import TFLITE_IDENTIFIER, read_metadata
from tests.convert.conftest import LABELS, build_tiny_detector, run_tflite
from train.config import ModelConfig

SIZE_RATIO_LIMIT = 0.27


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _naive_pack(tflite_bytes: bytes) -> bytes:
    """The same model packed by a plain ``flatbuffers.Builder`` (every vector written out in full)."""
    model = _schema().ModelT.InitFromPackedBuf(bytearray(tflite_bytes), 0)
    builder = flatbuffers.Builder(len(tflite_bytes) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def _outputs(model_bytes: bytes, image: np.ndarray) -> list[np.ndarray]:
    return list(run_tflite(model_bytes, image)[0].values())


def test_int8_is_at_most_027x_float32_size(tiny_config, calibration_set):
    model = build_tiny_detector(tiny_config, width=96)
    float_bytes = convert(model, tiny_config, LABELS, "float32")
    int8_bytes = convert(model, tiny_config, LABELS, "int8", calibration_set[:4])
    assert len(float_bytes) > 2_000_000
    assert len(int8_bytes) <= SIZE_RATIO_LIMIT * len(float_bytes)


@pytest.fixture(scope="module")
def demo_architecture():
    """The project's own MobileNet-SSD at alpha 0.5 with trained-like batch norms; a small input keeps
    conversion fast (the weights, hence the file sizes, do not depend on the input size).

    Fresh batch norms (beta 0, mean 0) fold into all-zero biases, which the converter drops: that made an
    untrained model's int8 file ~35 KB (0.4 points of the ratio) smaller than a trained one's.
    """
    import keras

    from train.model import build_ssd

    config = ModelConfig(alpha=0.5, input_size=(64, 64), num_classes=len(LABELS))
    model = build_ssd(config)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.beta.assign(rng.normal(0.0, 0.1, layer.beta.shape))
            layer.moving_mean.assign(rng.normal(0.0, 0.1, layer.moving_mean.shape))
    return config, model


@pytest.fixture(scope="module")
def demo_architecture_files(demo_architecture, calibration_set):
    config, model = demo_architecture
    return {
        "float32": convert(model, config, LABELS, "float32"),
        "int8": convert(model, config, LABELS, "int8", calibration_set[:4]),
    }


def test_demo_architecture_int8_is_at_most_027x_float32(demo_architecture_files):
    ratio = len(demo_architecture_files["int8"]) / len(demo_architecture_files["float32"])
    assert ratio <= SIZE_RATIO_LIMIT, f"int8 / float32 = {ratio:.4f}"


def test_shared_vectors_shrink_the_file_and_change_nothing(demo_architecture_files, calibration_set):
    int8_bytes = demo_architecture_files["int8"]
    model = _schema().ModelT.InitFromPackedBuf(bytearray(int8_bytes), 0)
    zero_points = sum(
        len(t.quantization.zeroPoint)
        for t in model.subgraphs[0].tensors
        if t.quantization is not None and t.quantization.zeroPoint is not None
    )
    naive = _naive_pack(int8_bytes)
    # nearly all of the 8-byte zero points are shared (one copy per distinct channel count)
    assert len(naive) - len(int8_bytes) > 0.9 * 8 * zero_points
    image = calibration_set[0]
    for shared_output, naive_output in zip(_outputs(int8_bytes, image), _outputs(naive, image), strict=True):
        np.testing.assert_array_equal(shared_output, naive_output)
    assert read_metadata(int8_bytes) == read_metadata(naive)


def test_pack_model_round_trips_the_model(demo_architecture_files):
    int8_bytes = demo_architecture_files["int8"]
    model = _schema().ModelT.InitFromPackedBuf(bytearray(int8_bytes), 0)
    assert pack_model(model) == int8_bytes


def test_tensor_names_keep_the_first_op_without_the_model_scope(demo_architecture, demo_architecture_files):
    _, keras_model = demo_architecture
    for quant, model_bytes in demo_architecture_files.items():
        model = _schema().ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
        names = [t.name.decode() for t in model.subgraphs[0].tensors]
        assert not any(";" in name for name in names), quant
        assert not any(name.startswith(keras_model.name) for name in names), quant
        assert any(name.startswith("conv_pw_13_relu") for name in names), quant
        outputs = {o.name.decode() for o in model.signatureDefs[0].outputs}
        assert outputs == {"box_deltas", "class_scores"}


def test_shorten_tensor_names_only_renames(demo_architecture_files, calibration_set):
    float_bytes = demo_architecture_files["float32"]
    renamed = shorten_tensor_names(float_bytes, "anything")
    image = calibration_set[0]
    for before, after in zip(_outputs(float_bytes, image), _outputs(renamed, image), strict=True):
        np.testing.assert_array_equal(before, after)
