"""IMX500 mode of the edge runtime against the picamera2 + IMX500 stand-ins (tests/edge/fake_imx500.py).

The stand-in sensor runs the same detector (raw-output ``.tflite`` + the edge's decoder/NMS) on each frame and
hands the results over in request metadata, as the AI Camera does; the CPU path runs that ``.tflite`` here, so
both must find the same boxes.
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from convert.imx500 import network_intrinsics
from edge import cli
from edge.detector import Detector
from edge.imx500 import Imx500Detector, Imx500Network, Imx500Source
from edge.sources import SourceError
from tests.edge import fake_imx500, fake_picamera2
from tests.edge.conftest import INPUT_SIZE, LABELS
from train.config import ModelConfig


@pytest.fixture
def sensor(monkeypatch: pytest.MonkeyPatch, tiny_models, tmp_path):
    """An attached AI Camera whose network file holds the tiny float32 detector; returns the .rpk path."""
    fake_picamera2.reset()
    fake_picamera2.MODEL = "imx500"
    fake_imx500.instances.clear()
    monkeypatch.setitem(sys.modules, "picamera2", fake_picamera2)
    monkeypatch.setitem(sys.modules, "picamera2.devices", fake_imx500)
    network = tmp_path / "network.rpk"
    shutil.copy(tiny_models["float32"], network)
    config = ModelConfig(alpha=0.25, input_size=INPUT_SIZE, num_classes=len(LABELS))
    (tmp_path / "network_intrinsics.json").write_text(json.dumps(network_intrinsics(LABELS, config)))
    yield network
    fake_picamera2.reset()


def test_sensor_detections_match_the_cpu_path(sensor, tiny_models):
    threshold = fake_imx500.SENSOR_SCORE_THRESHOLD
    cpu = Detector(tiny_models["float32"], score_threshold=threshold)
    source = Imx500Source(sensor, resolution=(640, 480), score_threshold=threshold)
    detector = Imx500Detector(source.network, threshold)
    with source:
        frames = [source.read() for _ in range(fake_imx500.FIRMWARE_FRAMES + 2)]
    camera = fake_picamera2.instances[-1]
    assert camera.closed and camera.held == 0 and fake_imx500.instances[0].progress_bars == 1
    for frame in frames[: fake_imx500.FIRMWARE_FRAMES]:  # firmware still loading: no outputs yet
        assert not frame.sensor.has_outputs and len(detector.postprocess(frame.sensor, frame.image.shape)) == 0
    for frame in frames[fake_imx500.FIRMWARE_FRAMES :]:
        on_sensor = detector.postprocess(detector.invoke(frame.sensor), frame.image.shape)
        on_cpu = cpu(frame.image)
        assert len(on_sensor) == len(on_cpu) > 0
        np.testing.assert_array_equal(on_sensor.class_ids, on_cpu.class_ids)
        np.testing.assert_allclose(on_sensor.scores, on_cpu.scores, atol=1e-6)
        # picamera2 maps (x, y, w, h) through integer full-sensor then stream pixels: x + w is off by up to 2 px
        np.testing.assert_allclose(on_sensor.pixel_boxes(), on_cpu.pixel_boxes(), atol=2.5)
        assert on_sensor.invoke_ms == fake_imx500.DNN_US / 1000


def test_cli_run_reports_the_sensor_kpi(sensor, tmp_path):
    report_path, jsonl = tmp_path / "report.json", tmp_path / "frames.jsonl"
    argv = ["run", "--imx500", str(sensor), "--frames", "6", "--quiet", "--score-threshold", "0.001"]
    assert cli.main([*argv, "--report", str(report_path), "--jsonl", str(jsonl)]) == 0
    report = json.loads(report_path.read_text())
    assert report["frames"] == 6 and report["source"]["kind"] == "imx500"
    assert report["model"] == {"path": str(sensor), "labels": LABELS}
    assert report["stages_ms"]["preprocess"]["max"] < 1.0  # nothing to prepare on the Pi
    assert report["stages_ms"]["invoke"]["p50"] == fake_imx500.DNN_US / 1000
    assert report["stages_ms"]["sensor_dsp"]["p50"] == fake_imx500.DSP_US / 1000
    assert "accuracy" not in report
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(lines) == 6 and sum(1 for line in lines if line["detections"]) >= 6 - fake_imx500.FIRMWARE_FRAMES


def test_network_must_load_before_the_camera(sensor):
    camera = fake_picamera2.Picamera2(0)
    camera.configure(camera.create_preview_configuration())
    camera.start()
    with pytest.raises(RuntimeError, match="before Picamera2 is configured"):
        fake_imx500.IMX500(str(sensor))


def test_detector_refuses_frames_without_sensor_outputs(sensor):
    detector = Imx500Detector(Imx500Network.load(sensor.with_name("network_intrinsics.json")))
    with pytest.raises(ValueError, match="must come from Imx500Source"):
        detector.preprocess(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(TypeError, match="expected a SensorResult"):
        detector.invoke({"boxes": []})


def test_stand_in_get_outputs_needs_the_metadata_dict(sensor):
    imx500 = fake_imx500.IMX500(str(sensor))
    with pytest.raises(TypeError, match="metadata dict"):
        imx500.get_outputs(object())


def test_intrinsics_of_another_network_are_refused(sensor, tmp_path):
    config = ModelConfig(alpha=0.25, input_size=(64, 64), num_classes=len(LABELS))
    other = tmp_path / "other.json"
    other.write_text(json.dumps(network_intrinsics(LABELS, config)))
    source = Imx500Source(sensor, intrinsics=other)
    with pytest.raises(SourceError, match="come from different conversions"):
        source.open()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found; it is written next to packerOut.zip"),
        ("{", "not readable JSON"),
        ('{"task": "classification"}', "field 'task' is 'classification'"),
        ('{"task": "object detection", "classes": {"labels": []}}', "field 'classes.labels'"),
    ],
)
def test_intrinsics_errors_name_file_and_field(tmp_path, content, message):
    path = tmp_path / "network_intrinsics.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SourceError, match=message):
        Imx500Network.load(path)


def test_no_imx500_attached(sensor):
    fake_picamera2.MODEL = "imx708"
    assert cli.main(["run", "--imx500", str(sensor), "--frames", "1", "--quiet"]) == 2


def test_stalled_ai_camera_times_out_instead_of_blocking(sensor):
    """The AI Camera opens and loads its network, then no frame arrives: ``read`` raises within the timeout
    (picamera2's ``capture_request(wait=)``), naming the camera, and nothing stays held."""
    import time

    from edge.sources import SourceUnavailable

    source = Imx500Source(sensor, resolution=(64, 48), score_threshold=0.5, capture_timeout_s=0.2)
    with source:
        assert source.read() is not None
        fake_picamera2.STALLED = True
        start = time.monotonic()
        with pytest.raises(SourceUnavailable, match=r"no frame within 0.2 s"):
            source.read()
        assert time.monotonic() - start < 2.0
    assert fake_picamera2.instances[-1].held == 0 and fake_picamera2.instances[-1].closed


def test_cli_run_with_a_stalled_ai_camera_ends_at_its_deadline(sensor):
    """The whole CLI in IMX500 mode: a camera that never delivers ends with an error exit, not a hang."""
    import time

    fake_picamera2.STALLED = True
    start = time.monotonic()
    code = cli.main(["run", "--imx500", str(sensor), "--frames", "5", "--quiet", "--source-timeout", "3"])
    assert code != 0 and time.monotonic() - start < 30
