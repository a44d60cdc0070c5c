"""python -m convert for other tools: labels next to every model, the builtin file scored and gated, --target rpicam-apps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from convert.cli import main
from edge.labels import parse_labels
from edge.metadata import read_metadata
from edge.synthetic_scene import CLASS_NAMES
from tests.convert.conftest import build_tiny_detector
from train.config import ModelConfig


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from train.synthetic import generate_dataset

    return generate_dataset(
        tmp_path_factory.mktemp("data") / "synthetic", num_images=16, width=96, height=72, progress=False
    )


def _make_run(folder: Path, data: Path, input_size: tuple[int, int]) -> Path:
    config = ModelConfig(alpha=0.25, input_size=input_size, num_classes=len(CLASS_NAMES))
    folder.mkdir(parents=True, exist_ok=True)
    run_json = {"model": config.to_dict(), "labels": list(CLASS_NAMES), "data": str(data), "anchor_code_version": 1}
    (folder / "run.json").write_text(json.dumps(run_json))
    build_tiny_detector(config).save(folder / "best.keras")
    return folder


def _picamera2_read_label_file(path: Path) -> dict[int, str]:
    """picamera2 examples/tensorflow/real_time_with_labels.py ``ReadLabelFile``."""
    result = {}
    for line in path.read_text().splitlines():
        pair = line.strip().split(maxsplit=1)
        result[int(pair[0])] = pair[1].strip()
    return result


def _rpicam_read_labels(path: Path) -> list[str]:
    """rpicam-apps ``ObjectDetectTfStage::readLabelsFile``: the first line is discarded."""
    return path.read_text().splitlines()[1:]


def test_builtin_file_is_scored_gated_and_labelled(dataset, tmp_path, capsys):
    run = _make_run(tmp_path / "run", dataset, (64, 64))
    out = tmp_path / "m_builtin.tflite"
    common = [str(run), "--postprocess", "builtin", "--calibration-images", "4", "--eval-images", "4"]
    assert (
        main([*common, "--out", str(out), "--max-map-drop", "100", "--nms-iou", "0.6", "--max-detections", "25"]) == 0
    )
    report = json.loads((tmp_path / "m_builtin.accuracy.json").read_text())
    assert [row["variant"] for row in report["results"]] == ["keras", "int8-builtin"]
    assert report["results"][1]["size_bytes"] > 0 and report["builtin_postprocess"]["iou_threshold"] == 0.6
    assert report["builtin_postprocess"]["use_regular_nms"] and report["builtin_postprocess"]["max_detections"] == 25
    metadata = read_metadata(out)
    assert metadata.postprocess == "builtin" and "int8-builtin" in metadata.accuracy
    assert _picamera2_read_label_file(tmp_path / "m_builtin.labels.txt") == dict(enumerate(CLASS_NAMES))
    assert not (tmp_path / "m_builtin.object_detect_tf.json").exists()
    assert "int8-builtin mAP@0.5 drop vs float" in capsys.readouterr().out

    strict = tmp_path / "strict.tflite"
    assert main([*common, "--out", str(strict), "--max-map-drop", "-1", "--no-regular-nms"]) == 1
    assert "int8-builtin mAP@0.5" in capsys.readouterr().err
    assert not strict.exists() and not (tmp_path / "strict.labels.txt").exists()


def test_labels_next_to_a_numpy_model(dataset, tmp_path):
    run = _make_run(tmp_path / "run", dataset, (64, 64))
    out = tmp_path / "raw.tflite"
    assert main([str(run), "--quant", "float32", "--out", str(out), "--skip-accuracy"]) == 0
    assert parse_labels((tmp_path / "raw.labels.txt").read_text()) == list(CLASS_NAMES)


def test_flag_conflicts_exit_2(dataset, tmp_path, capsys):
    run = _make_run(tmp_path / "run", dataset, (64, 64))
    assert main([str(run), "--max-detections", "10", "--skip-accuracy"]) == 2
    assert "only with --postprocess builtin" in capsys.readouterr().err
    assert main([str(run), "--no-regular-nms", "--skip-accuracy"]) == 2
    assert "only with --postprocess builtin" in capsys.readouterr().err
    assert main([str(run), "--target", "rpicam-apps", "--quant", "float32"]) == 2
    assert "int8" in capsys.readouterr().err
    assert main([str(run), "--target", "rpicam-apps", "--max-detections", "20"]) == 2
    assert "exactly 10 detections" in capsys.readouterr().err


def test_rpicam_apps_preset(dataset, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    run = _make_run(tmp_path / "run", dataset, (300, 300))
    out = tmp_path / "rpi.tflite"
    args = [str(run), "--target", "rpicam-apps", "--out", str(out), "--calibration-images", "4"]
    assert main([*args, "--eval-images", "2", "--max-map-drop", "100"]) == 0
    interpreter = Interpreter(model_path=str(out))
    interpreter.allocate_tensors()
    (model_input,) = interpreter.get_input_details()
    assert model_input["dtype"] == np.uint8 and tuple(model_input["shape"]) == (1, 300, 300, 3)
    assert model_input["quantization"] == (1.0, 0)  # TfStage copies the lores RGB bytes in unchanged
    shapes = [tuple(d["shape"]) for d in interpreter.get_output_details()]
    assert shapes == [(1, 10, 4), (1, 10), (1, 10), (1,)]  # ObjectDetectTfStage checks output 0 is (1, 10, 4)
    stage = json.loads((tmp_path / "rpi.object_detect_tf.json").read_text())
    assert stage["object_detect_tf"]["model_file"] == str(out.resolve())
    labels_file = Path(stage["object_detect_tf"]["labels_file"])
    assert labels_file == (tmp_path / "rpi.rpicam-labels.txt").resolve()
    assert _rpicam_read_labels(labels_file) == list(CLASS_NAMES)
    assert labels_file.read_text().splitlines()[0] == "???"
    assert set(stage["object_detect_tf"]) >= {"confidence_threshold", "overlap_threshold", "number_of_threads"}
    assert "object_detect_draw_cv" in stage


def test_rpicam_apps_preset_rebuilds_a_detector_trained_at_another_size(dataset, tmp_path):
    import keras

    from train.model import build_ssd

    config = ModelConfig(alpha=0.25, input_size=(96, 96), num_classes=len(CLASS_NAMES))
    run = tmp_path / "run96"
    run.mkdir()
    run_json = {"model": config.to_dict(), "labels": list(CLASS_NAMES), "data": str(dataset), "anchor_code_version": 1}
    (run / "run.json").write_text(json.dumps(run_json))
    keras.utils.set_random_seed(0)
    build_ssd(config).save(run / "best.keras")
    out = tmp_path / "rpi96.tflite"
    args = [str(run), "--target", "rpicam-apps", "--out", str(out), "--calibration-images", "4", "--eval-images", "2"]
    assert main([*args, "--max-map-drop", "100"]) == 0
    report = json.loads((tmp_path / "rpi96.accuracy.json").read_text())
    # the gate's reference is the float model at its trained size; the rebuilt one is shown next to it
    assert [row["variant"] for row in report["results"]] == ["keras", "keras-300x300", "int8-builtin"]
    assert read_metadata(out).input_size == (300, 300)
