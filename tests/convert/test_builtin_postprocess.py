"""postprocess="builtin": TFLite_Detection_PostProcess in the graph gives the NumPy decoder's detections."""

from __future__ import annotations

import numpy as np
import pytest

from convert.converter import BuiltinPostprocess, convert
from edge.boxes import iou_matrix
from edge.metadata import read_metadata
from edge.postprocess import decode_and_nms
from tests.convert.conftest import LABELS, run_tflite

SCORE_THRESHOLD = 0.26  # the untrained stand-in scores ~1/4 everywhere: a few hundred candidates pass
OPTIONS = BuiltinPostprocess(
    max_detections=20, score_threshold=SCORE_THRESHOLD, iou_threshold=0.5, use_regular_nms=True, detections_per_class=20
)


def _invoke(model_bytes: bytes, image: np.ndarray) -> dict[str, np.ndarray]:
    return run_tflite(model_bytes, image)[0]


def _numpy_detections(outputs: dict[str, np.ndarray], config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The edge's decoder and NMS on the raw variant's outputs, with the builtin op's settings."""
    return decode_and_nms(
        outputs["box_deltas"][0],
        outputs["class_scores"][0],
        config.generate_anchors(),
        score_threshold=SCORE_THRESHOLD,
        iou_threshold=OPTIONS.iou_threshold,
        max_detections=OPTIONS.max_detections,
        variances=config.variances,
    )


def _builtin_detections(outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    count = int(outputs["count"][0])
    boxes = np.clip(outputs["boxes"][0, :count], 0.0, 1.0)
    return boxes, outputs["scores"][0, :count], outputs["classes"][0, :count].astype(np.int32)


@pytest.fixture(scope="module")
def float_models(tiny_model, tiny_config):
    raw = convert(tiny_model, tiny_config, LABELS, "float32")
    builtin = convert(tiny_model, tiny_config, LABELS, "float32", postprocess="builtin", builtin_options=OPTIONS)
    return raw, builtin


def test_builtin_outputs_and_metadata(float_models, tiny_config, calibration_set):
    _, builtin = float_models
    metadata = read_metadata(builtin)
    assert metadata.postprocess == "builtin"
    assert sorted(metadata.outputs) == ["boxes", "classes", "count", "scores"]
    outputs = _invoke(builtin, calibration_set[0])
    assert outputs["boxes"].shape == (1, OPTIONS.max_detections, 4)
    assert outputs["classes"].shape == outputs["scores"].shape == (1, OPTIONS.max_detections)
    assert outputs["count"].shape == (1,)
    assert 0 < outputs["count"][0] <= OPTIONS.max_detections


def test_builtin_matches_numpy_decoder(float_models, tiny_config, calibration_set):
    raw, builtin = float_models
    for image in calibration_set[:4]:
        expected = _numpy_detections(_invoke(raw, image), tiny_config)
        boxes, scores, classes = _builtin_detections(_invoke(builtin, image))
        assert len(scores) == len(expected[1]) > 0
        np.testing.assert_allclose(scores, expected[1], atol=1e-5)
        np.testing.assert_array_equal(classes, expected[2])
        np.testing.assert_allclose(boxes, expected[0], atol=1e-4)


def test_int8_builtin_matches_numpy_decoder_on_the_same_int8_outputs(tiny_model, tiny_config, calibration_set):
    raw = convert(tiny_model, tiny_config, LABELS, "int8", calibration_set)
    builtin = convert(
        tiny_model, tiny_config, LABELS, "int8", calibration_set, postprocess="builtin", builtin_options=OPTIONS
    )
    assert read_metadata(builtin).input_dtype == "uint8"
    image = calibration_set[0]
    expected = _numpy_detections(_invoke(raw, image), tiny_config)
    boxes, scores, classes = _builtin_detections(_invoke(builtin, image))
    # int8 scores are multiples of 1/256, so equal scores are common and the two NMS implementations may
    # break those ties differently; every detection above the lowest score level must be found in both.
    lowest = max(scores.min(), expected[1].min())
    keep = expected[1] > lowest
    assert keep.sum() >= 5
    ious = iou_matrix(expected[0][keep], boxes)
    for row, (score, class_id) in enumerate(zip(expected[1][keep], expected[2][keep], strict=True)):
        same = (classes == class_id) & np.isclose(scores, score, atol=1e-6)
        assert same.any() and ious[row][same].max() > 0.95  # boxes differ only by the op's quantized anchors
