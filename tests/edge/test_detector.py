"""edge.Detector on real converted .tflite files (tiny untrained SSD, see conftest.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edge import Detections, Detector
from edge.metadata import read_metadata, read_metadata_buffers
from edge.postprocess import decode_and_nms
from edge.runtime import ModelLoadError
from tests.edge.conftest import INPUT_SIZE, LABELS

ROOT = Path(__file__).resolve().parents[2]


def _frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("kind", ["float32", "int8"])
def test_boxes_on_odd_frame_sizes(tiny_models, kind):
    # An untrained model scores background ~0.99 everywhere, so threshold 0 makes every anchor a candidate.
    det = Detector(tiny_models[kind], score_threshold=0.0, max_detections=50)
    assert det.labels == LABELS and det.input_size == INPUT_SIZE
    for height, width in ((37, 53), (481, 641), (96, 128)):
        frame = _frame(height, width)
        result = det(frame)
        assert isinstance(result, Detections)
        assert 0 < len(result) <= 50
        assert result.boxes.shape == (len(result), 4) and result.boxes.dtype == np.float32
        assert result.scores.dtype == np.float32 and result.class_ids.dtype == np.int32
        assert np.all((result.class_ids >= 0) & (result.class_ids < len(LABELS)))
        assert result.frame_size == (height, width)
        assert np.all(np.diff(result.scores) <= 0)
        for name in ("preprocess", "invoke", "postprocess"):
            assert result.timings_ms[name] > 0
        # same detections as decoding the raw outputs by hand: normalized ymin, xmin, ymax, xmax
        outputs = det.invoke(det.preprocess(frame))
        boxes, scores, class_ids = decode_and_nms(
            outputs["box_deltas"][0], outputs["class_scores"][0], det.anchors, 0.0, 0.5, 50
        )
        np.testing.assert_array_equal(result.boxes, boxes)
        np.testing.assert_array_equal(result.class_ids, class_ids)
        # and in frame pixels xmin, ymin, xmax, ymax
        expected = np.stack([boxes[:, 1] * width, boxes[:, 0] * height, boxes[:, 3] * width, boxes[:, 2] * height], 1)
        pixels = result.pixel_boxes()
        np.testing.assert_allclose(pixels, expected, rtol=1e-5, atol=1e-3)
        assert pixels.dtype == np.float32
        split = det.postprocess(outputs, frame.shape)  # the pipeline passes the whole shape
        np.testing.assert_array_equal(split.boxes, result.boxes)
        np.testing.assert_array_equal(split.pixel_boxes(), pixels)
        assert np.all(pixels[:, 2] >= pixels[:, 0]) and np.all(pixels[:, 3] >= pixels[:, 1])
        assert pixels[:, [0, 2]].max() <= width + 1e-3 and pixels[:, [1, 3]].max() <= height + 1e-3
        assert result.boxes.min() >= 0.0 and result.boxes.max() <= 1.0


def test_input_tensor_dtype_and_quantization(tiny_models):
    frame = _frame(96, 128)
    int8 = Detector(tiny_models["int8"])
    tensor = int8.preprocess(frame)
    assert tensor.dtype == np.uint8 and tensor.shape == (1, *INPUT_SIZE, 3)
    np.testing.assert_array_equal(tensor[0], frame)  # raw pixels go in unchanged (scale 1, zero point 0)
    float_tensor = Detector(tiny_models["float32"]).preprocess(frame)
    assert float_tensor.dtype == np.float32
    np.testing.assert_array_equal(float_tensor[0], frame.astype(np.float32))
    outputs = int8.invoke(tensor)
    assert outputs["class_scores"].dtype == np.float32
    # dequantized softmax: probabilities that sum to ~1 per anchor
    np.testing.assert_allclose(outputs["class_scores"][0].sum(-1), 1.0, atol=0.05)


def test_int8_close_to_float(tiny_models):
    frame = _frame(120, 160, seed=3)
    float_scores = Detector(tiny_models["float32"]).invoke(Detector(tiny_models["float32"]).preprocess(frame))
    int8 = Detector(tiny_models["int8"])
    int8_scores = int8.invoke(int8.preprocess(frame))
    np.testing.assert_allclose(int8_scores["class_scores"], float_scores["class_scores"], atol=0.05)


@pytest.mark.parametrize("kind", ["float32", "int8"])
def test_grayscale_rgba_and_non_contiguous_frames(tiny_models, kind):
    det = Detector(tiny_models[kind], score_threshold=0.0, max_detections=20)
    rgb = _frame(75, 99, seed=1)
    gray = rgb[:, :, 1].copy()
    reference = det(np.repeat(gray[:, :, None], 3, axis=2))
    for variant in (gray, gray[:, :, None]):
        result = det(variant)
        np.testing.assert_array_equal(result.boxes, reference.boxes)
        np.testing.assert_array_equal(result.scores, reference.scores)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(det(rgba).scores, det(rgb).scores)
    big = _frame(150, 198, seed=2)
    view = big[::2, ::2]  # non-contiguous
    assert not view.flags.c_contiguous
    np.testing.assert_array_equal(det(view).boxes, det(np.ascontiguousarray(view)).boxes)
    bgr_view = big[:, ::-1, ::-1]  # negative strides
    np.testing.assert_array_equal(det(bgr_view).scores, det(bgr_view.copy()).scores)


def test_bad_frames(tiny_models):
    det = Detector(tiny_models["float32"])
    with pytest.raises(ValueError, match="frame: expected dtype uint8"):
        det(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="frame: expected shape"):
        det(np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(ValueError, match="frame: expected shape"):
        det(np.zeros((0, 10, 3), np.uint8))


def test_builtin_postprocess_model(tiny_models):
    det = Detector(tiny_models["builtin"], score_threshold=0.0)
    assert det.metadata.postprocess == "builtin"
    result = det(_frame(200, 300))
    assert result.boxes.dtype == np.float32 and result.boxes.shape == (len(result), 4)
    assert result.scores.shape == (len(result),) and result.class_ids.dtype == np.int32
    assert np.isfinite(result.boxes).all()
    assert np.all((result.class_ids >= 0) & (result.class_ids < len(LABELS)))
    assert result.pixel_boxes()[:, [0, 2]].max(initial=0) <= 300 + 1e-3
    assert ((result.boxes >= 0.0) & (result.boxes <= 1.0)).all()


def test_corrupt_model_file(tmp_path):
    path = tmp_path / "broken.tflite"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(ModelLoadError, match="broken.tflite"):
        Detector(path)
    with pytest.raises(ModelLoadError, match="missing.tflite: model file not found"):
        Detector(tmp_path / "missing.tflite")


def test_model_without_metadata(tiny_models, tmp_path):
    data = tiny_models["float32"].read_bytes()
    assert data.count(b"edge_ssd_metadata") == 1
    path = tmp_path / "no_metadata.tflite"
    path.write_bytes(data.replace(b"edge_ssd_metadata", b"other_metadata___"))
    assert "edge_ssd_metadata" not in read_metadata_buffers(path)
    with pytest.raises(ModelLoadError, match=r"no_metadata.tflite: .*no 'edge_ssd_metadata' metadata") as info:
        Detector(path)
    assert "\n" not in str(info.value)


def test_metadata_that_does_not_match_the_outputs(tiny_models, tmp_path):
    from convert.metadata_writer import embed_metadata

    data = tiny_models["float32"].read_bytes()
    metadata = read_metadata(data)
    path = tmp_path / "wrong_labels.tflite"
    path.write_bytes(embed_metadata(data, metadata.replace(labels=(*LABELS, "extra"))))
    with pytest.raises(ModelLoadError, match=r"wrong_labels.tflite: output 'class_scores' has shape"):
        Detector(path)
    path = tmp_path / "wrong_index.tflite"
    path.write_bytes(embed_metadata(data, metadata.replace(outputs={"box_deltas": 0, "class_scores": 7})))
    with pytest.raises(ModelLoadError, match=r"'outputs.class_scores' = 7, but the model has 2 output tensors"):
        Detector(path)


def test_edge_runs_where_tensorflow_cannot_be_imported(tiny_models):
    script = textwrap.dedent(
        f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "keras", "train", "convert"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import numpy as np
        from edge import Detector
        det = Detector({str(tiny_models["int8"])!r}, score_threshold=0.0)
        result = det(np.zeros((50, 70, 3), np.uint8))
        assert len(result) > 0 and det.backend == "ai_edge_litert", det.backend
        assert not any(m.split(".")[0] in ("tensorflow", "keras") for m in sys.modules)
        print("ok", len(result))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok")


def test_pixel_boxes_needs_a_frame_size():
    detections = Detections(
        np.array([[0.1, 0.2, 0.5, 0.6]], np.float32), np.ones(1, np.float32), np.zeros(1, np.int32), LABELS
    )
    with pytest.raises(ValueError, match="no frame size"):
        detections.pixel_boxes()
    # another frame of the same view (e.g. main for detections made on lores)
    np.testing.assert_allclose(detections.pixel_boxes((100, 200)), [[40.0, 10.0, 120.0, 50.0]])
