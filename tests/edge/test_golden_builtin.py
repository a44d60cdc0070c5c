"""The committed builtin demo model (``make convert-builtin``) on the golden frames, read as other tools read it.

``models/demo_int8_builtin.tflite`` is what picamera2's examples and pycoral run. On every golden frame of
``tests/edge/test_golden.py``: all output slots are finite, scores in [0, 1], class ids in range; pycoral's
signature reading (``output_0..3``) and the positional reading of rpicam-apps / picamera2 (outputs 0..3) see the
same tensors; ``edge.Detector`` reports the same count and detections; and the detections match the ground
truth by IoU. The committed file (the 4-epoch demo run, val mAP@0.5 92.89 as written) measured recall
78/83 = 0.94 here at score 0.5; the floor sits below, so a change in the file or the runtime's reading fails here.
"""

from pathlib import Path

import numpy as np
import pytest

from edge import Detector
from edge.boxes import iou_matrix
from edge.labels import parse_labels
from edge.runtime import load_interpreter
from edge.synthetic_scene import CLASS_NAMES
from tests.edge.test_golden import golden_frames

BUILTIN_MODEL = Path(__file__).resolve().parents[2] / "models" / "demo_int8_builtin.tflite"
SCORE_THRESHOLD = 0.5
RECALL_FLOOR = 0.9


@pytest.fixture(scope="module")
def model_path() -> Path:
    if not BUILTIN_MODEL.exists():
        pytest.fail(f"{BUILTIN_MODEL} is missing: it is committed; rebuild it with `make train convert-builtin`")
    return BUILTIN_MODEL


def test_labels_file_next_to_the_model(model_path):
    labels_file = model_path.with_name("demo_int8_builtin.labels.txt")
    assert labels_file.read_text().splitlines()[0] == f"0 {CLASS_NAMES[0]}"
    assert parse_labels(labels_file.read_text()) == list(CLASS_NAMES)


def test_tools_and_detector_agree_on_golden_frames(model_path):
    interpreter = load_interpreter(str(model_path)).interpreter
    (model_input,) = interpreter.get_input_details()
    (signature,) = interpreter._get_full_signature_list().values()
    positions = [d["index"] for d in interpreter.get_output_details()]
    detector = Detector(model_path, score_threshold=SCORE_THRESHOLD)
    height, width = detector.input_size
    matched = total_gt = 0
    for scene in golden_frames():
        interpreter.set_tensor(model_input["index"], detector.preprocess(scene.image))
        interpreter.invoke()
        boxes, classes, scores, count = (interpreter.get_tensor(i) for i in positions)  # rpicam-apps / picamera2
        named = {name: interpreter.get_tensor(index) for name, index in signature["outputs"].items()}  # pycoral
        np.testing.assert_array_equal(named["output_0"], count)
        np.testing.assert_array_equal(named["output_3"], boxes)
        assert np.isfinite(boxes).all() and ((scores >= 0) & (scores <= 1)).all()
        assert ((classes >= 0) & (classes < len(CLASS_NAMES)) & (classes == np.rint(classes))).all()

        result = detector(scene.image)
        pycoral = [i for i in range(int(count[0])) if scores[0, i] > SCORE_THRESHOLD]
        assert len(result) == len(pycoral)
        assert result.class_ids.tolist() == [int(classes[0, i]) for i in pycoral]
        np.testing.assert_allclose(result.scores, scores[0, pycoral])

        total_gt += len(scene.boxes)
        if len(result) and len(scene.boxes):
            hits = (iou_matrix(result.boxes, scene.boxes) >= 0.5) & (
                result.class_ids[:, None] == scene.class_ids[None, :]
            )
            matched += int(hits.any(axis=0).sum())
    assert (height, width) == (224, 224)
    assert matched / total_gt >= RECALL_FLOOR, f"recall {matched}/{total_gt}"
