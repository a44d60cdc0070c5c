"""The builtin model's contract as other tools read it (docs/INTEROP.md), checked the way those tools read it.

* pycoral ``adapters/detect.py`` ``get_objects``: with a signature, outputs ``output_0`` count, ``output_1``
  scores, ``output_2`` classes, ``output_3`` boxes; ``int(count[0])``; objects for ``range(count)``.
* rpicam-apps ``object_detect_tf_stage.cpp``: output positions 0, 1, 2 = boxes ``(1, 10, 4)``, classes,
  scores, read for every slot (``dims->data[1]``), ``labels_[classes[i]]`` unchecked.
* picamera2's ``real_time_with_labels.py``: positions 0..3 = boxes, classes, scores, count.
"""

from __future__ import annotations

import numpy as np
import pytest

from convert.converter import BuiltinPostprocess, convert
from edge.detector import Detector
from tests.convert.conftest import LABELS


def _interpreter(model_bytes: bytes):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)
    interpreter.allocate_tensors()
    return interpreter


def _invoke(interpreter, image: np.ndarray) -> list[np.ndarray]:
    """Output tensors by position, as the positional readers (rpicam-apps, picamera2) take them."""
    (model_input,) = interpreter.get_input_details()
    interpreter.set_tensor(model_input["index"], image[None].astype(model_input["dtype"]))
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


def pycoral_get_objects(interpreter, score_threshold: float = -float("inf")) -> list[tuple[int, float, tuple]]:
    """pycoral ``get_objects``' signature path, verbatim in substance: ``(id, score, (ymin, xmin, ymax, xmax))``."""
    signature_list = interpreter._get_full_signature_list()
    assert len(signature_list) == 1, "pycoral: Only support model with one signature."
    signature = signature_list[next(iter(signature_list))]
    count = int(interpreter.tensor(signature["outputs"]["output_0"])()[0])
    scores = interpreter.tensor(signature["outputs"]["output_1"])()[0]
    class_ids = interpreter.tensor(signature["outputs"]["output_2"])()[0]
    boxes = interpreter.tensor(signature["outputs"]["output_3"])()[0]
    return [
        (int(class_ids[i]), float(scores[i]), tuple(boxes[i])) for i in range(count) if scores[i] >= score_threshold
    ]


@pytest.fixture(scope="module")
def int8_builtin(tiny_model, tiny_config, calibration_set) -> bytes:
    return convert(tiny_model, tiny_config, LABELS, "int8", calibration_set, postprocess="builtin")


@pytest.fixture(scope="module")
def int8_builtin_fast_high_threshold(tiny_model, tiny_config, calibration_set) -> bytes:
    """Fast NMS with a score threshold that leaves most slots past ``count`` (the case that gave NaN / 3e38)."""
    options = BuiltinPostprocess(max_detections=20, score_threshold=0.26)
    return convert(
        tiny_model, tiny_config, LABELS, "int8", calibration_set, postprocess="builtin", builtin_options=options
    )


def test_defaults_follow_the_tf_od_api_export():
    options = BuiltinPostprocess()
    assert options.score_threshold == 1e-8 and not options.use_regular_nms and options.max_detections == 100
    with pytest.raises(ValueError, match="NMS IoU threshold"):
        BuiltinPostprocess(iou_threshold=0.0)


@pytest.mark.parametrize("fixture", ["int8_builtin", "int8_builtin_fast_high_threshold"])
def test_every_slot_is_written(request, fixture, calibration_set):
    interpreter = _interpreter(request.getfixturevalue(fixture))
    for image in calibration_set[:4]:
        # Poison the arena first: a slot the model does not write keeps NaN from the previous frame.
        boxes, classes, scores, count = _invoke(interpreter, image)
        for array in (boxes, classes, scores):
            array[...] = np.nan
        boxes, classes, scores, count = _invoke(interpreter, image)
        assert np.isfinite(boxes).all() and np.isfinite(classes).all() and np.isfinite(scores).all()
        assert ((scores >= 0) & (scores <= 1)).all()
        assert np.array_equal(classes, np.rint(classes)) and ((classes >= 0) & (classes < len(LABELS))).all()
        assert ((boxes > -0.5) & (boxes < 1.5)).all()  # decoded boxes may overhang the image a little
        k = scores.shape[-1]
        assert count.shape == (1,) and 0 <= count[0] <= k
        written = int(count[0])
        assert (scores[0, written:] == 0).all() and (boxes[0, written:] == 0).all()


def test_output_positions_and_signature_names(int8_builtin_fast_high_threshold):
    interpreter = _interpreter(int8_builtin_fast_high_threshold)
    shapes = [tuple(d["shape"]) for d in interpreter.get_output_details()]
    assert shapes == [(1, 20, 4), (1, 20), (1, 20), (1,)]  # boxes, classes, scores, count (TF1 / rpicam order)
    assert all(d["dtype"] == np.float32 for d in interpreter.get_output_details())
    (signature,) = interpreter._get_full_signature_list().values()
    assert sorted(signature["outputs"]) == ["output_0", "output_1", "output_2", "output_3"]
    by_index = {d["index"]: tuple(d["shape"]) for d in interpreter.get_output_details()}
    named = {name: by_index[index] for name, index in signature["outputs"].items()}
    assert named == {"output_0": (1,), "output_1": (1, 20), "output_2": (1, 20), "output_3": (1, 20, 4)}
    (model_input,) = interpreter.get_input_details()
    assert model_input["dtype"] == np.uint8 and model_input["quantization"] == (1.0, 0)


def test_pycoral_objects_agree_with_detector(int8_builtin, calibration_set, tiny_config, tmp_path):
    """pycoral's reading and ``edge.Detector`` give the same detections at the same threshold."""
    path = tmp_path / "builtin.tflite"
    path.write_bytes(int8_builtin)
    threshold = 0.25
    detector = Detector(path, score_threshold=threshold)
    interpreter = _interpreter(int8_builtin)
    height, width = tiny_config.input_size
    for image in calibration_set[:3]:
        _invoke(interpreter, image)
        objects = [o for o in pycoral_get_objects(interpreter, threshold) if o[1] > threshold]
        detections = detector(image)
        assert len(objects) == len(detections) > 0
        assert [o[0] for o in objects] == detections.class_ids.tolist()
        np.testing.assert_allclose([o[1] for o in objects], detections.scores, atol=1e-6)
        normalized = np.clip(np.array([o[2] for o in objects]), 0, 1)
        np.testing.assert_allclose(detections.boxes, normalized, atol=1e-6)
        ymin, xmin, ymax, xmax = normalized.T
        expected = np.stack([xmin * width, ymin * height, xmax * width, ymax * height], axis=1)
        np.testing.assert_allclose(detections.pixel_boxes(), expected, atol=1e-3)


def test_resize_detector_keeps_the_weights():
    import keras

    from convert.interop import resize_detector
    from train.config import ModelConfig
    from train.model import build_ssd

    keras.utils.set_random_seed(0)
    config = ModelConfig(alpha=0.25, input_size=(96, 96), num_classes=3)
    model = build_ssd(config)
    resized, resized_config = resize_detector(model, config, (300, 300))
    assert resized_config.input_size == (300, 300) and tuple(resized.inputs[0].shape[1:]) == (300, 300, 3)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), resized.get_weights(), strict=True))
    assert resize_detector(model, config, (96, 96)) == (model, config)
