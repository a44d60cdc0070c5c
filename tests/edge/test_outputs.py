"""Outputs: drawing, JSON lines, video file, MJPEG publishing, and the no-GUI display error."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge import outputs
from edge.boxes import pixels_to_normalized

LABELS = ["circle", "triangle", "square", "star"]


def _result(index: int = 0, size: tuple[int, int] = (120, 160)) -> outputs.FrameResult:
    image = np.full((*size, 3), 90, np.uint8)
    return outputs.FrameResult(
        index=index,
        image=image,
        boxes=pixels_to_normalized(np.array([[20.0, 30.0, 80.0, 100.0], [5.0, 5.0, 40.0, 40.0]], np.float32), *size),
        scores=np.array([0.91, 0.55], np.float32),
        class_ids=np.array([2, 0]),
        labels=LABELS,
        capture_time=time.monotonic() - 0.01,
        wall_time=time.time(),
        stage_ms={"wait": 1.0, "preprocess": 2.0, "invoke": 3.0, "postprocess": 0.5},
        fps=29.97,
    )


def test_draw_detections_returns_bgr_copy_with_boxes_and_fps() -> None:
    result = _result()
    before = result.image.copy()
    drawn = result.annotated_bgr()
    assert np.array_equal(result.image, before), "input frame must not be modified"
    assert drawn.shape == result.image.shape and drawn.dtype == np.uint8
    assert drawn is result.annotated_bgr(), "annotation is drawn once and cached"
    color = outputs._color(2)
    assert tuple(int(v) for v in drawn[60, 20]) == color, "left edge of the square's box in its class colour"
    assert tuple(int(v) for v in drawn[110, 150]) == (90, 90, 90), "untouched background"
    assert drawn[2:10, 2:40].min() == 0 and drawn[2:10, 2:40].max() == 255, "FPS overlay in the top-left corner"


def test_draw_detections_clips_boxes_outside_the_frame() -> None:
    drawn = outputs.draw_detections(
        np.zeros((50, 60, 3), np.uint8),
        np.array([[-30.0, -10.0, 500.0, 400.0]]),
        np.array([0.7]),
        np.array([9]),
        LABELS,
    )
    assert drawn.shape == (50, 60, 3)
    assert drawn[:, 0].any() and drawn[:, -1].any()


def test_jsonl_file_has_one_record_per_frame(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out.jsonl"
    with outputs.JsonlOutput(path) as out:
        for k in range(3):
            out.write(_result(k))
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["frame"] for r in records] == [0, 1, 2]
    first = records[0]
    assert first["detections"][0] == {"label": "square", "class_id": 2, "score": 0.91, "box": [20.0, 30.0, 80.0, 100.0]}
    assert first["detections"][1]["label"] == "circle"
    assert first["stage_ms"] == {"wait": 1.0, "preprocess": 2.0, "invoke": 3.0, "postprocess": 0.5}
    assert first["latency_ms"] >= 10.0
    assert abs(first["time"] - time.time()) < 60


def test_jsonl_dash_writes_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    with outputs.JsonlOutput("-") as out:
        out.write(_result(7))
    assert json.loads(capsys.readouterr().out)["frame"] == 7


def test_jsonl_unwritable_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(outputs.OutputError, match="--jsonl"):
        outputs.JsonlOutput(blocker / "x.jsonl").open()


def test_video_file_output_writes_readable_video(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    with outputs.VideoFileOutput(path, fps=10) as out:
        for k in range(5):
            out.write(_result(k))
        out.write(_result(5, size=(60, 80)))  # an odd-sized frame is resized to the first frame's size
    capture = cv2.VideoCapture(str(path))
    frames = []
    while (item := capture.read())[0]:
        frames.append(item[1])
    capture.release()
    assert len(frames) == 6
    assert all(f.shape == (120, 160, 3) for f in frames)


def test_mjpeg_output_serves_the_annotated_frame() -> None:
    out = outputs.MjpegOutput("127.0.0.1", 0, stats_provider=lambda: {"ok": True})
    with out:
        result = _result()
        out.write(result)
        with urllib.request.urlopen(out.server.url + "frame.jpg", timeout=5) as response:
            jpeg = response.read()
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == result.image.shape
    assert np.abs(decoded.astype(int) - result.annotated_bgr().astype(int)).mean() < 8


def test_display_without_gui_is_a_clear_error() -> None:
    if "GUI:                           NONE" not in cv2.getBuildInformation():
        pytest.skip("this OpenCV build has GUI support; the no-GUI error path cannot be exercised")
    with pytest.raises(outputs.OutputError, match="--display: .*no GUI support"):
        outputs.DisplayOutput().open()
