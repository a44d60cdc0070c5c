"""convert.converter: every quantization mode, I/O dtypes and shapes, parity with Keras, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from convert.converter import QUANT_MODES, check_detector, convert
from edge.metadata import read_metadata
from tests.convert.conftest import LABELS, run_tflite

INT8_TOLERANCE_STEPS = 4
"""Documented int8 tolerance: each dequantized output is within 4 of its own quantization steps
(``scale``) of the float Keras output (box_deltas scale ~1e-3, class_scores scale 1/256)."""


@pytest.fixture(scope="module")
def converted(tiny_model, tiny_config, calibration_set) -> dict[str, bytes]:
    return {
        quant: convert(tiny_model, tiny_config, LABELS, quant, calibration_set if quant == "int8" else None)
        for quant in QUANT_MODES
    }


def _interpreter(model_bytes: bytes):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)
    interpreter.allocate_tensors()
    return interpreter


@pytest.mark.parametrize("quant", QUANT_MODES)
def test_each_mode_converts_with_promised_io(converted, tiny_config, quant):
    model_bytes = converted[quant]
    interpreter = _interpreter(model_bytes)
    (model_input,) = interpreter.get_input_details()
    height, width = tiny_config.input_size
    assert tuple(model_input["shape"]) == (1, height, width, 3)
    metadata = read_metadata(model_bytes)
    outputs = interpreter.get_output_details()
    box, score = outputs[metadata.outputs["box_deltas"]], outputs[metadata.outputs["class_scores"]]
    assert tuple(box["shape"]) == (1, tiny_config.num_anchors, 4)
    assert tuple(score["shape"]) == (1, tiny_config.num_anchors, tiny_config.num_classes + 1)
    if quant == "int8":
        assert model_input["dtype"] == np.uint8
        assert model_input["quantization"] == (1.0, 0)  # raw camera pixels go in unchanged
        assert box["dtype"] == np.int8 and score["dtype"] == np.int8
    else:
        assert model_input["dtype"] == np.float32
        assert box["dtype"] == np.float32 and score["dtype"] == np.float32
    assert metadata.quantization == quant
    assert metadata.input_dtype == ("uint8" if quant == "int8" else "float32")
    assert metadata.labels == tuple(LABELS)
    assert metadata.postprocess == "numpy"
    assert metadata.num_anchors == tiny_config.num_anchors
    np.testing.assert_array_equal(metadata.anchors(), tiny_config.generate_anchors())


def test_int8_weights_are_per_channel_int8(converted):
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(converted["int8"]), 0)
    tensors = model.subgraphs[0].tensors
    conv_weights = [
        t
        for t in tensors
        if t.type == schema.TensorType.INT8
        and t.shape is not None
        and len(t.shape) == 4
        and t.buffer
        and model.buffers[t.buffer].data is not None
    ]
    assert conv_weights, "expected int8 4-D conv weight tensors"
    assert all(len(t.quantization.scale) == t.shape[0] for t in conv_weights)  # one scale per output channel
    float_tensors = [t for t in tensors if t.type == schema.TensorType.FLOAT32]
    assert not float_tensors, f"full-int8 model still has float tensors: {[t.name for t in float_tensors]}"


def test_float32_matches_keras(converted, tiny_model, calibration_set):
    for image in calibration_set[:3]:
        outputs, _ = run_tflite(converted["float32"], image)
        deltas, scores = outputs["box_deltas"][0], outputs["class_scores"][0]
        ref_deltas, ref_scores = tiny_model.predict_on_batch(image[None].astype(np.float32))
        np.testing.assert_allclose(deltas, ref_deltas[0], atol=1e-4)
        np.testing.assert_allclose(scores, ref_scores[0], atol=1e-4)


def test_int8_matches_keras_within_quantization_steps(converted, tiny_model, calibration_set):
    for image in calibration_set[:3]:
        outputs, details = run_tflite(converted["int8"], image)
        deltas, scores = outputs["box_deltas"][0], outputs["class_scores"][0]
        ref_deltas, ref_scores = tiny_model.predict_on_batch(image[None].astype(np.float32))
        box_scale, score_scale = (details[name]["quantization"][0] for name in ("box_deltas", "class_scores"))
        assert score_scale == pytest.approx(1 / 256)
        assert np.abs(deltas - ref_deltas[0]).max() <= INT8_TOLERANCE_STEPS * box_scale
        assert np.abs(scores - ref_scores[0]).max() <= INT8_TOLERANCE_STEPS * score_scale


def test_unknown_mode_lists_valid_ones(tiny_model, tiny_config):
    with pytest.raises(ValueError, match="float32, float16, dynamic, int8"):
        convert(tiny_model, tiny_config, LABELS, "int4")
    with pytest.raises(ValueError, match="numpy, builtin"):
        convert(tiny_model, tiny_config, LABELS, "float32", postprocess="tflite")


def test_int8_needs_a_non_empty_calibration_set(tiny_model, tiny_config):
    with pytest.raises(ValueError, match="needs calibration_images"):
        convert(tiny_model, tiny_config, LABELS, "int8", None)
    with pytest.raises(ValueError, match="calibration set is empty"):
        convert(tiny_model, tiny_config, LABELS, "int8", [])


def test_calibration_images_must_match_input_size(tiny_model, tiny_config):
    wrong = [np.zeros((32, 32, 3), np.uint8)]
    with pytest.raises(ValueError, match=r"expected uint8 RGB \(64, 64, 3\)"):
        convert(tiny_model, tiny_config, LABELS, "int8", wrong)


def test_rejects_a_model_that_is_not_a_detector(tiny_config):
    import keras

    classifier = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.Flatten(), keras.layers.Dense(10)])
    with pytest.raises(ValueError, match="expected a detector from this project"):
        check_detector(classifier, tiny_config)
    with pytest.raises(ValueError, match="expected a detector"):
        convert(classifier, tiny_config, LABELS, "float32")


def test_labels_must_match_num_classes(tiny_model, tiny_config):
    with pytest.raises(ValueError, match="num_classes=3"):
        convert(tiny_model, tiny_config, ["only-one"], "float32")
