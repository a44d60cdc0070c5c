"""The threaded loop with stand-in detectors: overlap, newest frame, finite sources, mAP wiring, stats, report."""

from __future__ import annotations

import io
import json
import re
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

from edge import sources, system
from edge.boxes import pixels_to_normalized
from edge.metrics import DetectionEvaluator
from edge.outputs import FrameResult, JsonlOutput, Output
from edge.pipeline import LatestSlot, Pipeline
from edge.stats import (
    STAGES,
    PipelineStats,
    RingBuffer,
    StatusPrinter,
    ThermalLog,
    write_report,
    write_timestamped_report,
)
from tests.edge import fake_picamera2
from tests.edge.dead_source import NeverOpens

LABELS = ["circle", "triangle", "square", "star"]


def _detections(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray) -> types.SimpleNamespace:
    return types.SimpleNamespace(boxes=boxes, scores=scores, class_ids=class_ids, labels=LABELS)


class TimedDetector:
    """Stand-in with the preprocess / invoke / postprocess split; records when each stage ran."""

    labels = LABELS

    def __init__(self, preprocess_s: float = 0.0, invoke_s: float = 0.0, postprocess_s: float = 0.0) -> None:
        self.delays = {"preprocess": preprocess_s, "invoke": invoke_s, "postprocess": postprocess_s}
        self.intervals: dict[str, list[tuple[float, float]]] = {name: [] for name in self.delays}
        self.lock = threading.Lock()

    def _stage(self, name: str) -> None:
        start = time.perf_counter()
        time.sleep(self.delays[name])
        with self.lock:
            self.intervals[name].append((start, time.perf_counter()))

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        self._stage("preprocess")
        return image[::2, ::2]

    def invoke(self, inputs: np.ndarray) -> float:
        self._stage("invoke")
        return float(inputs.mean())

    def postprocess(self, outputs: float, image_shape: tuple[int, ...]) -> types.SimpleNamespace:
        self._stage("postprocess")
        return _detections(np.array([[0, 0, 0.5, 0.5]], np.float32), np.array([0.8], np.float32), np.array([1]))


class OracleDetector:
    """Returns the synthetic camera's own ground truth (looked up by image identity)."""

    labels = LABELS

    def __init__(self) -> None:
        self.truth: dict[int, sources.GroundTruth] = {}

    def __call__(self, image: np.ndarray) -> types.SimpleNamespace:
        gt = self.truth[id(image)]
        return _detections(gt.boxes, np.ones(len(gt.boxes), np.float32), gt.class_ids)


class RecordingSynthetic(sources.SyntheticSource):
    def __init__(self, oracle: OracleDetector, **kwargs) -> None:
        super().__init__(**kwargs)
        self.oracle = oracle

    def _read(self):
        frame = super()._read()
        if frame is not None:
            self.oracle.truth[id(frame.image)] = frame.ground_truth
        return frame


def _overlaps(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> int:
    return sum(1 for s0, e0 in a for s1, e1 in b if s0 < e1 and s1 < e0)


def test_latest_slot_keeps_newest_and_counts_drops() -> None:
    slot = LatestSlot()
    for k in range(5):
        slot.put(k)
    assert slot.take(timeout=0) == 4
    assert slot.dropped == 4
    assert slot.take(timeout=0.01) is None
    slot.close()
    assert slot.put(9) is False and slot.take() is None


def test_latest_slot_blocking_put_waits_for_consumer() -> None:
    slot = LatestSlot()
    slot.put(1, block=True)
    taken = []
    consumer = threading.Thread(target=lambda: (time.sleep(0.05), taken.append(slot.take())))
    consumer.start()
    slot.put(2, block=True)
    consumer.join()
    assert taken == [1] and slot.take() == 2 and slot.dropped == 0


def test_stages_overlap_the_interpreter() -> None:
    detector = TimedDetector(preprocess_s=0.01, invoke_s=0.01, postprocess_s=0.01)
    source = sources.SyntheticSource((64, 48), paced=False, num_frames=20)
    summary = Pipeline(source, detector).run()
    assert summary["frames"] == 20 and summary["dropped_frames"] == 0
    assert _overlaps(detector.intervals["preprocess"], detector.intervals["invoke"]) > 0
    assert _overlaps(detector.intervals["postprocess"], detector.intervals["invoke"]) > 0


class LatestIndexSource(sources.SyntheticSource):
    """Remembers the index of the newest frame it has handed out (``latest``)."""

    latest = -1

    def read(self) -> sources.Frame | None:
        frame = super().read()
        if frame is not None:
            self.latest = frame.index
        return frame


def test_live_source_always_runs_on_the_newest_frame() -> None:
    source = LatestIndexSource((64, 48), fps=200.0, paced=True)
    newest_when_invoke_ended: list[int] = []

    class Detector(TimedDetector):
        def invoke(self, inputs: np.ndarray) -> float:
            value = super().invoke(inputs)
            newest_when_invoke_ended.append(source.latest)
            return value

    results: list[FrameResult] = []
    pipeline = Pipeline(source, Detector(invoke_s=0.1), max_frames=8, on_result=results.append)
    summary = pipeline.run()
    indices = [r.index for r in results]
    assert len(results) == 8 and indices == sorted(indices)
    assert summary["dropped_frames"] > 0, "a slow interpreter on a fast camera must drop frames, not queue them"
    assert pipeline.finished_reason == "frame limit"
    # No queue: the frame after each invoke is the newest one captured while it ran, or the one before it when
    # the newest was still being preprocessed (a queue would fall further behind with every frame).
    for newest, following in zip(newest_when_invoke_ended, indices[1:], strict=False):
        assert following >= newest - 1, (newest_when_invoke_ended, indices)


def test_finite_source_processes_every_frame(tmp_path: Path) -> None:
    import cv2

    for k in range(7):
        cv2.imwrite(str(tmp_path / f"{k:02d}.png"), np.full((20 + k, 30, 3), k * 30, np.uint8))
    results: list[FrameResult] = []
    pipeline = Pipeline(sources.open_source(str(tmp_path)), TimedDetector(invoke_s=0.01), on_result=results.append)
    summary = pipeline.run()
    assert [r.index for r in results] == list(range(7))
    assert [r.image.shape[0] for r in results] == [20 + k for k in range(7)]
    assert summary["dropped_frames"] == 0
    assert pipeline.finished_reason == "source ended"


def test_synthetic_ground_truth_gives_perfect_map_for_an_oracle() -> None:
    oracle = OracleDetector()
    source = RecordingSynthetic(oracle, resolution=(96, 64), paced=False, num_frames=6)
    evaluator = DetectionEvaluator(num_classes=len(LABELS))
    pipeline = Pipeline(source, oracle, evaluator=evaluator)
    pipeline.run()
    report = pipeline.report()
    assert report["accuracy"]["num_images"] == 6
    assert report["accuracy"]["map50"] == pytest.approx(1.0)
    assert set(report["accuracy"]["per_class_ap50"]) == set(LABELS)


def test_lores_detections_are_scaled_to_the_main_frame() -> None:
    class Lores(sources.FrameSource):
        live = False

        def _open(self) -> None:
            self.left = 2

        def _read(self):
            if not self.left:
                return None
            self.left -= 1
            return sources.Frame(
                np.zeros((200, 400, 3), np.uint8), time.monotonic(), 0, inference_image=np.zeros((50, 100, 3), np.uint8)
            )

        def _close(self) -> None:
            pass

    results: list[FrameResult] = []
    Pipeline(Lores("lores"), TimedDetector(), on_result=results.append).run()
    assert len(results) == 2
    assert results[0].boxes.tolist() == [[0.0, 0.0, 0.5, 0.5]]  # same aspect ratio: normalized boxes unchanged
    assert results[0].pixel_boxes().tolist() == [[0.0, 0.0, 200.0, 100.0]]  # (50x25 on 100x50) x 4


def _marker_pixels(image: np.ndarray) -> list[float]:
    """Pixel ``xmin, ymin, xmax, ymax`` of the fake camera's white marker in an RGB image (green > 150)."""
    rows, cols = np.nonzero(image[:, :, 1] > 150)
    return [float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)]


class MarkerDetector:
    """Finds the fake camera's marker in whatever image the pipeline gives it (the lores image with --lores)."""

    labels = LABELS

    def __call__(self, image: np.ndarray) -> types.SimpleNamespace:
        boxes = pixels_to_normalized(np.array([_marker_pixels(image)], np.float32), *image.shape[:2])
        return _detections(boxes, np.ones(1, np.float32), np.array([0]))


@pytest.mark.parametrize(
    ("main", "lores", "lores_format"),
    [
        ((128, 96), (64, 48), "YUV420"),  # same aspect ratio: a plain scale
        ((128, 96), (100, 56), "YUV420"),  # wider lores: the ISP crops main's field of view top and bottom
        ((128, 72), (64, 64), "XRGB8888"),  # square lores on 16:9: cropped left and right (Pi 5 RGB lores)
        ((160, 120), (96, 54), "RGB888"),
    ],
)
def test_picamera2_lores_boxes_land_on_the_object_in_main(
    monkeypatch: pytest.MonkeyPatch, main: tuple[int, int], lores: tuple[int, int], lores_format: str
) -> None:
    fake_picamera2.reset()
    monkeypatch.setitem(sys.modules, "picamera2", fake_picamera2)
    source = sources.Picamera2Source(resolution=main, lores=lores, lores_format=lores_format)
    results: list[FrameResult] = []
    Pipeline(source, MarkerDetector(), on_result=results.append, max_frames=8).run()
    assert len(results) >= 6
    lores_pixel = max(main[0] / lores[0], main[1] / lores[1])
    for result in results:  # the marker moves every frame: boxes from another frame would be far off
        assert result.boxes.shape == (1, 4)
        np.testing.assert_allclose(result.pixel_boxes()[0], _marker_pixels(result.image), atol=1.5 * lores_pixel)


def test_image_folder_report_counts_its_images(tmp_path: Path) -> None:
    import cv2

    for k in range(3):
        cv2.imwrite(str(tmp_path / f"{k}.png"), np.full((24, 32, 3), 60 * k, np.uint8))
    pipeline = Pipeline(sources.ImageFolderSource(tmp_path), TimedDetector())
    pipeline.run()
    report = pipeline.report()
    assert report["frames"] == 3
    assert report["source"]["kind"] == "folder" and report["source"]["images"] == 3


@pytest.mark.parametrize(
    ("limits", "expected_s"), [({"duration_s": 0.5}, 0.5), ({"max_frames": 5, "first_frame_timeout_s": 0.5}, 0.5)]
)
def test_a_source_that_never_delivers_fails_at_the_deadline(limits: dict, expected_s: float) -> None:
    stop = threading.Event()
    source = sources.ReconnectingSource(NeverOpens("7"), initial_backoff_s=0.05, max_backoff_s=0.05, stop=stop)
    pipeline = Pipeline(source, TimedDetector(), stop_event=stop, **limits)
    start = time.monotonic()
    with pytest.raises(sources.SourceUnavailable) as caught:
        pipeline.run()
    assert expected_s <= time.monotonic() - start < expected_s + 5.0
    message = str(caught.value)
    assert message == "source '7': no frame within 0.5 s (camera device 7: cannot be opened)"
    assert pipeline.report()["frames"] == 0


def test_first_frame_timeout_does_not_end_a_run_that_has_frames() -> None:
    source = sources.SyntheticSource((32, 32), fps=50.0)
    pipeline = Pipeline(source, TimedDetector(), duration_s=0.6, first_frame_timeout_s=0.2)
    summary = pipeline.run()
    assert pipeline.finished_reason == "duration limit" and summary["frames"] > 5


def test_stats_report_and_jsonl_from_a_run(tmp_path: Path) -> None:
    stream = io.StringIO()
    stats = PipelineStats()
    jsonl = tmp_path / "frames.jsonl"
    pipeline = Pipeline(
        sources.SyntheticSource((64, 48), paced=False, num_frames=12),
        TimedDetector(invoke_s=0.002),
        [JsonlOutput(jsonl)],
        stats=stats,
        status=StatusPrinter(stats, stream=stream, interval_s=0.0),
        temperature=lambda: 51.0,
    )
    summary = pipeline.run()
    assert summary["frames"] == 12
    for stage in STAGES:
        assert summary["stages_ms"][stage]["p50"] is not None, stage
    assert summary["stages_ms"]["invoke"]["p50"] >= 2.0
    e2e = summary["end_to_end_ms"]
    assert e2e["p50"] <= e2e["p95"] <= e2e["p99"] <= e2e["max"]
    assert "\r" in stream.getvalue() and "fps" in stream.getvalue() and "51C" in stream.getvalue()
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(12))
    assert set(lines[0]["stage_ms"]) == {"wait", "preprocess", "invoke", "postprocess"}
    path = write_report(tmp_path / "report.json", pipeline.report({"model": {"path": "x"}}))
    report = json.loads(path.read_text())
    assert report["finished"] == "source ended" and report["frames"] == 12
    assert report["source"]["kind"] == "synthetic" and report["model"] == {"path": "x"}
    assert "emulated" in report["system"] and "cpu_temperature_c" in report["system"]


def test_duration_limit_and_stop() -> None:
    pipeline = Pipeline(sources.SyntheticSource((32, 32), fps=100.0), TimedDetector(), duration_s=0.3)
    summary = pipeline.run()
    assert pipeline.finished_reason == "duration limit"
    assert summary["frames"] > 0


def test_detector_errors_are_raised_from_run() -> None:
    class Broken:
        labels = LABELS

        def __call__(self, image: np.ndarray):
            raise RuntimeError("interpreter exploded")

    with pytest.raises(RuntimeError, match="interpreter exploded"):
        Pipeline(sources.SyntheticSource((32, 32), paced=False, num_frames=50), Broken()).run()


def test_ring_buffer_memory_is_bounded_and_percentiles_correct() -> None:
    buffer = RingBuffer(capacity=100)
    for value in range(1000):
        buffer.add(float(value))
    assert buffer.values().size == 100 and buffer.count == 1000
    summary = buffer.summary()
    assert summary["mean"] == pytest.approx(499.5)
    assert summary["p50"] == pytest.approx(949.5) and summary["max"] == 999.0
    assert RingBuffer().summary()["p95"] is None


def test_rolling_fps_forgets_frames_outside_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    stats = PipelineStats(fps_window_s=2.0)
    assert stats.fps() == 0.0
    for _ in range(50):  # 10 FPS for 5 s
        clock[0] += 0.1
        stats.record({"invoke": 1.0}, 5.0)
    assert stats.fps() == pytest.approx(10.0)
    assert len(stats._finish_times) <= 21  # only the window is kept: O(1) work per frame
    clock[0] += 1.55  # only the frames of the last 0.45 s of the window remain
    assert stats.fps() == pytest.approx(10.0)
    clock[0] += 1.0
    assert stats.fps() == 0.0 and stats.frames == 50


def test_write_report_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_report(tmp_path / "sub" / "report.json", {"frames": np.int64(3), "fps": np.float32(2.5)})
    assert json.loads(path.read_text()) == {"frames": 3, "fps": 2.5}

    def interrupted(*_args: object) -> None:
        raise KeyboardInterrupt  # e.g. Ctrl-C between writing the temporary file and renaming it

    monkeypatch.setattr("os.replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_report(path, {"frames": 4})
    assert json.loads(path.read_text()) == {"frames": 3, "fps": 2.5}  # the old report, whole
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # no temporary file left
    with pytest.raises(TypeError):
        write_report(path, {"frames": object()})
    assert json.loads(path.read_text())["frames"] == 3


def test_write_timestamped_report(tmp_path: Path) -> None:
    path = write_timestamped_report(tmp_path / "results", "pipeline", {"ratio": 0.95})
    assert path.parent == tmp_path / "results"
    assert re.fullmatch(r"pipeline_\d{8}T\d{6}Z\.json", path.name)
    assert json.loads(path.read_text()) == {"ratio": 0.95}


def _throttled(*flags: str) -> dict:
    bits = {name: bit for bit, name in system.THROTTLE_BITS.items()}
    return system.parse_throttled(f"throttled={sum(1 << bits[name] for name in flags):#x}")


def test_thermal_log_keeps_min_max_and_the_first_throttle_event() -> None:
    log = ThermalLog()
    log.add(0.0, 50.0, _throttled("throttling_occurred"))  # happened before the run: not this run's event
    log.add(5.0, 48.5, _throttled("throttling_occurred"))
    log.add(10.0, None, None)
    log.add(15.0, 61.2, _throttled("throttling_occurred", "currently_throttled", "arm_frequency_capped"))
    log.add(20.0, 55.0, _throttled("under_voltage"))
    summary = log.summary()
    assert summary["samples"] == 5 and summary["temperature_samples"] == 4 and summary["throttle_samples"] == 4
    assert summary["cpu_temperature_c"] == {"min": 48.5, "max": 61.2, "last": 55.0}
    first = summary["first_throttle"]
    assert first["after_s"] == 15.0 and first["flags"] == ["arm_frequency_capped", "currently_throttled"]
    assert first["time"].endswith("+00:00")


def test_thermal_log_without_sensors_is_null() -> None:
    log = ThermalLog()
    log.add(0.0, None, None)
    assert log.summary() == {
        "samples": 1,
        "temperature_samples": 0,
        "throttle_samples": 0,
        "cpu_temperature_c": {"min": None, "max": None, "last": None},
        "first_throttle": None,
    }


def test_throttle_event_rule() -> None:
    assert system.throttle_event(_throttled(), None) == []
    assert system.throttle_event(_throttled("soft_temperature_limit"), None) == ["soft_temperature_limit"]
    before = _throttled("under_voltage_occurred")
    assert system.throttle_event(_throttled("under_voltage_occurred"), before) == []
    assert system.throttle_event(_throttled("under_voltage_occurred", "throttling_occurred"), before) == [
        "throttling_occurred"
    ]


def test_temperature_and_throttling_are_sampled_during_the_run_off_the_frame_threads() -> None:
    temperatures = iter([47.0, 52.5, 44.0] + [50.0] * 100)
    readings = iter([_throttled()] * 2 + [_throttled("currently_throttled")] * 100)
    threads: set[str] = set()

    def temperature() -> float:
        threads.add(threading.current_thread().name)
        return next(temperatures)

    pipeline = Pipeline(
        sources.SyntheticSource((32, 32), fps=50.0),
        TimedDetector(),
        duration_s=1.0,
        temperature=temperature,
        throttling=lambda: next(readings),
        host_sample_s=0.2,
    )
    summary = pipeline.run()
    thermal = summary["thermal"]
    assert thermal["samples"] >= 3, "sampled through the run, not once"
    assert thermal["cpu_temperature_c"]["min"] == 44.0 and thermal["cpu_temperature_c"]["max"] == 52.5
    assert 0.2 <= thermal["first_throttle"]["after_s"] < 1.0
    assert thermal["first_throttle"]["flags"] == ["currently_throttled"]
    assert threads == {threading.current_thread().name}, "sampled by run()'s thread, not a frame thread"
    assert pipeline.report()["thermal"] == thermal


def test_a_run_without_sensors_reports_null_temperatures() -> None:
    pipeline = Pipeline(sources.SyntheticSource((32, 32), paced=False, num_frames=5), TimedDetector())
    thermal = pipeline.run()["thermal"]
    assert thermal["samples"] >= 1
    assert thermal["cpu_temperature_c"] == {"min": None, "max": None, "last": None}
    assert thermal["first_throttle"] is None


class MainThreadOutput(Output):
    """A GUI-like output: records which thread ran ``write`` and ``pump`` (a window must be pumped by run()'s)."""

    pump_interval_s = 0.01

    def __init__(self) -> None:
        self.write_threads: set[int] = set()
        self.pump_threads: set[int] = set()
        self.pumps = 0

    def write(self, result: FrameResult) -> None:
        self.write_threads.add(threading.get_ident())

    def pump(self) -> None:
        self.pump_threads.add(threading.get_ident())
        self.pumps += 1


def test_outputs_that_need_the_main_thread_are_pumped_from_the_thread_that_runs_the_pipeline() -> None:
    output = MainThreadOutput()
    source = sources.SyntheticSource((64, 48), fps=50, paced=True, seed=0)
    Pipeline(source, TimedDetector(), outputs=[output], duration_s=0.5).run()
    assert output.pump_threads == {threading.get_ident()}
    assert output.write_threads and threading.get_ident() not in output.write_threads
    assert output.pumps >= 20  # every 10 ms, not only at the 100 ms status tick


def test_the_inference_thread_only_runs_the_interpreter_and_dequantizing_happens_after() -> None:
    """With ``invoke_raw``/``dequantize`` (``edge.Detector``), the interpreter's thread does nothing else."""
    threads: dict[str, set[str]] = {"invoke_raw": set(), "dequantize": set(), "invoke": set()}

    class RawDetector(TimedDetector):
        def invoke(self, inputs: np.ndarray) -> float:
            threads["invoke"].add(threading.current_thread().name)
            return super().invoke(inputs)

        def invoke_raw(self, inputs: np.ndarray) -> np.ndarray:
            threads["invoke_raw"].add(threading.current_thread().name)
            return inputs.astype(np.int8)

        def dequantize(self, raw: np.ndarray) -> float:
            threads["dequantize"].add(threading.current_thread().name)
            return float(raw.mean())

    source = sources.SyntheticSource((64, 48), paced=False, num_frames=5)
    assert Pipeline(source, RawDetector()).run()["frames"] == 5
    assert threads == {"invoke_raw": {"edge-inference"}, "dequantize": {"edge-output"}, "invoke": set()}


def test_opencv_runs_single_threaded_during_the_loop_and_is_restored_after() -> None:
    """The loop's stages are its parallelism: OpenCV's own pool is set to one thread while it runs."""
    import cv2

    seen: list[int] = []

    class CountingDetector(TimedDetector):
        def preprocess(self, image: np.ndarray) -> np.ndarray:
            seen.append(cv2.getNumThreads())
            return super().preprocess(image)

    previous = cv2.getNumThreads()
    cv2.setNumThreads(3)
    try:
        source = sources.SyntheticSource((64, 48), paced=False, num_frames=4)
        assert Pipeline(source, CountingDetector()).run()["frames"] == 4
        assert seen == [1, 1, 1, 1]
        assert cv2.getNumThreads() == 3
    finally:
        cv2.setNumThreads(previous)
