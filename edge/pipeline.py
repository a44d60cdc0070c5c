"""The threaded camera loop: capture + preprocess, interpreter, postprocess + outputs overlap in three threads.

```
capture thread   source.open(), source.read() -> detector.preprocess -> LatestSlot (newest frame wins, drops counted)
inference thread LatestSlot.take() -> detector.invoke -> bounded hand-off (2 results)
output thread    detector.postprocess -> boxes on the main frame (normalized) -> outputs -> stats (+ mAP on synthetic truth)
```

The interpreter never waits for capture or drawing while a newer frame is ready, and frames never queue
up: a live source overwrites the slot, so the loop always runs on the newest frame. Finite sources
(files, folders, the unpaced emulator) hand over every frame instead (``FrameSource.live`` is False).
"""

from __future__ import annotations

import collections
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edge.boxes import boxes_in_window_to_image, lores_window
from edge.image import set_opencv_threads
from edge.memory import keep_freed_frame_memory
from edge.outputs import FrameResult, Output
from edge.sources import Frame, FrameSource, SourceUnavailable
from edge.stats import PipelineStats, StatusPrinter

logger = logging.getLogger(__name__)

_END = object()
FINITE_SOURCE_READ_AHEAD = 4
"""Frames a finite source (file, folder) may have decoded and preprocessed ahead of the interpreter."""
SWITCH_INTERVAL_S = 0.0005
"""``sys.setswitchinterval`` while the loop runs (CPython's default is 5 ms). The interpreter, OpenCV and the
video decoder release the GIL; when one of them returns, its thread waits for the GIL until the thread
holding it blocks or is asked to switch. At the default, a thread returning from a 0.7 ms invoke could wait
milliseconds behind Python code in another stage (measured: ``scripts/bench_pipeline.py``)."""
OPENCV_THREADS = 1
"""OpenCV's worker pool while the loop runs (``edge.image.set_opencv_threads``): the stages are the parallelism."""


class LatestSlot:
    """A hand-off of up to ``capacity`` items. ``put(item)`` on a full slot replaces the oldest untaken item
    (counted in ``dropped``) unless ``block``, which waits for room. ``take`` returns the oldest item, or None
    once closed and empty / on timeout. Capacity 1 without ``block`` is "newest frame wins" (live sources);
    a few items with ``block`` let a finite source's capture run ahead over a slow frame without dropping any."""

    def __init__(self, capacity: int = 1) -> None:
        if capacity < 1:
            raise ValueError(f"LatestSlot capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._refill_at = capacity // 2
        """A producer blocked on a full slot is woken once the slot has drained to this many items, so it refills
        several in a row instead of being woken (a futex wake: tens of microseconds in a VM) after every take."""
        self._condition = threading.Condition()
        self._items: collections.deque[Any] = collections.deque()
        self._closed = False
        self.dropped = 0

    def put(self, item: Any, block: bool = False) -> bool:
        """Store ``item``; returns False when the slot was closed (item discarded)."""
        with self._condition:
            if block:
                self._condition.wait_for(lambda: len(self._items) < self.capacity or self._closed)
            if self._closed:
                return False
            if len(self._items) >= self.capacity:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._condition.notify_all()
            return True

    def take(self, timeout: float | None = None) -> Any:
        with self._condition:
            self._condition.wait_for(lambda: self._items or self._closed, timeout=timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            if len(self._items) <= self._refill_at:
                self._condition.notify_all()
            return item

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    @property
    def closed(self) -> bool:
        with self._condition:
            return self._closed


class _Stages:
    """Adapts a detector to preprocess / invoke / postprocess calls.

    Uses the detector's own split when it has one (``preprocess(image) -> inputs``, ``invoke(inputs) -> outputs``,
    ``postprocess(outputs, image_shape) -> detections``); otherwise runs the whole ``detector(image)`` as "invoke".
    A detector that also has ``invoke_raw`` and ``dequantize`` (``edge.Detector``) runs only the interpreter in
    the invoke stage; dequantizing moves to the postprocess stage, off the thread that feeds the interpreter.
    """

    def __init__(self, detector: Any) -> None:
        self.detector = detector
        self.split = all(callable(getattr(detector, name, None)) for name in ("preprocess", "invoke", "postprocess"))
        self.raw = self.split and all(callable(getattr(detector, name, None)) for name in ("invoke_raw", "dequantize"))

    def preprocess(self, image: np.ndarray) -> Any:
        return self.detector.preprocess(image) if self.split else image

    def invoke(self, inputs: Any) -> Any:
        if self.raw:
            return self.detector.invoke_raw(inputs)
        return self.detector.invoke(inputs) if self.split else self.detector(inputs)

    def postprocess(self, outputs: Any, image_shape: tuple[int, ...]) -> Any:
        if self.raw:
            outputs = self.detector.dequantize(outputs)
        return self.detector.postprocess(outputs, image_shape) if self.split else outputs


class _Job:
    __slots__ = ("frame", "inputs", "outputs", "stage_ms")

    def __init__(self, frame: Frame, inputs: Any, stage_ms: dict[str, float]) -> None:
        self.frame = frame
        self.inputs = inputs
        self.outputs: Any = None
        self.stage_ms = stage_ms


class Pipeline:
    """Run ``detector`` on ``source`` and feed ``outputs`` until the source ends, ``max_frames`` results,
    ``duration_s`` seconds or ``stop()``.

    ``detector`` follows ``edge.Detector``: ``labels`` and either the preprocess/invoke/postprocess split or
    ``detector(image RGB uint8) -> detections`` with ``boxes`` ``(K, 4)`` normalized ``ymin, xmin, ymax, xmax``
    of that image, ``scores``, ``class_ids`` (``edge.Detections``). ``evaluator`` (``edge.metrics.DetectionEvaluator``) is fed every frame that has
    ground truth. ``status`` prints the live line; ``on_result`` is called after outputs (tests, benchmarks).
    ``stop_event``: share it with a ``ReconnectingSource`` so stopping also ends its retries.
    ``temperature`` (degrees C or None) and ``throttling`` (``edge.system.throttling``) are sampled every
    ``host_sample_s`` seconds from the thread that runs ``run()``, into ``stats.thermal``.

    The source is opened in the capture thread, so the limits hold while a missing camera is retried: when
    ``duration_s`` or ``first_frame_timeout_s`` seconds pass without a single frame from the source, ``run()``
    raises ``SourceUnavailable`` ("no frame within ... s", with the source's last error).
    """

    def __init__(
        self,
        source: FrameSource,
        detector: Any,
        outputs: Sequence[Output] = (),
        stats: PipelineStats | None = None,
        max_frames: int | None = None,
        duration_s: float | None = None,
        evaluator: Any = None,
        status: StatusPrinter | None = None,
        temperature: Callable[[], float | None] | None = None,
        on_result: Callable[[FrameResult], None] | None = None,
        stop_event: threading.Event | None = None,
        first_frame_timeout_s: float | None = None,
        throttling: Callable[[], dict[str, Any] | None] | None = None,
        host_sample_s: float = 5.0,
    ) -> None:
        self.source = source
        self.detector = detector
        self.stages = _Stages(detector)
        self.labels = list(getattr(detector, "labels", []))
        self.outputs = list(outputs)
        self.stats = stats if stats is not None else PipelineStats()
        self.max_frames = max_frames
        self.duration_s = duration_s
        self.first_frame_timeout_s = first_frame_timeout_s
        self.evaluator = evaluator
        self.status = status
        self.temperature = temperature
        self.throttling = throttling
        self.host_sample_s = host_sample_s
        self.on_result = on_result
        self.stop_event = stop_event if stop_event is not None else threading.Event()
        self.finished_reason = ""
        self._slot = LatestSlot(capacity=1 if source.live else FINITE_SOURCE_READ_AHEAD)
        self._results: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._errors: list[BaseException] = []
        self._invoked = 0
        self._captured = 0

    def stop(self, reason: str = "stopped") -> None:
        """Ask all threads to finish (safe from signal handlers and other threads)."""
        if not self.stop_event.is_set():
            self.finished_reason = self.finished_reason or reason
            self.stop_event.set()
            self._slot.close()

    def _fail(self, error: BaseException) -> None:
        self._errors.append(error)
        self.stop("error")

    def _check_deadlines(self) -> None:
        """Stop at ``duration_s``; fail once ``duration_s`` or ``first_frame_timeout_s`` pass without a frame."""
        if self.stop_event.is_set():
            return
        elapsed = self.stats.elapsed_s()
        limits = [limit for limit in (self.duration_s, self.first_frame_timeout_s) if limit is not None]
        passed = [limit for limit in limits if elapsed >= limit]
        if self._captured == 0 and passed:
            cause = self.source.last_error
            self._fail(
                SourceUnavailable(
                    f"source {self.source.name!r}: no frame within {min(passed):g} s" + (f" ({cause})" if cause else "")
                )
            )
        elif self.duration_s is not None and elapsed >= self.duration_s:
            self.stop("duration limit")

    def _capture_loop(self) -> None:
        block = not self.source.live
        try:
            self.source.open()
            while not self.stop_event.is_set():
                frame = self.source.read()
                if frame is None:
                    self.finished_reason = self.finished_reason or "source ended"
                    break
                self._captured += 1
                start = time.perf_counter()
                image = frame.inference_image if frame.inference_image is not None else frame.image
                # An on-sensor network (IMX500) already ran: its outputs come with the frame.
                inputs = self.stages.preprocess(image) if frame.sensor is None else frame.sensor
                job = _Job(frame, inputs, {"preprocess": (time.perf_counter() - start) * 1000.0})
                if not self._slot.put(job, block=block):
                    break
                self.stats.set_dropped(self._slot.dropped)
        except BaseException as exc:  # noqa: BLE001 - re-raised by run()
            self._fail(exc)
        finally:
            self._slot.close()

    def _inference_loop(self) -> None:
        try:
            while True:
                if self.max_frames is not None and self._invoked >= self.max_frames:
                    self.stop("frame limit")
                    break
                start = time.perf_counter()
                job = self._slot.take(timeout=0.5)
                if job is None:
                    if self._slot.closed:
                        break
                    continue
                job.stage_ms["wait"] = (time.perf_counter() - start) * 1000.0
                start = time.perf_counter()
                job.outputs = self.stages.invoke(job.inputs)
                job.stage_ms["invoke"] = (time.perf_counter() - start) * 1000.0
                if job.frame.sensor is not None:  # the sensor's own timings (IMX500 KPI) replace the host's
                    job.stage_ms.update(job.frame.sensor.stage_ms)
                job.inputs = None
                self._invoked += 1
                self._results.put(job)
        except BaseException as exc:  # noqa: BLE001 - re-raised by run()
            self._fail(exc)
        finally:
            self._results.put(_END)

    def _output_loop(self) -> None:
        try:
            while True:
                job = self._results.get()
                if job is _END:
                    break
                self._finish(job)
        except BaseException as exc:  # noqa: BLE001 - re-raised by run()
            self._fail(exc)
            while self._results.get() is not _END:  # unblock the inference thread
                pass

    def _finish(self, job: _Job) -> None:
        frame = job.frame
        start = time.perf_counter()
        inference_image = frame.inference_image if frame.inference_image is not None else frame.image
        detections = self.stages.postprocess(job.outputs, inference_image.shape)
        boxes = np.asarray(detections.boxes, dtype=np.float32).reshape(-1, 4)
        if frame.inference_image is not None:  # found on lores: the part of main that lores shows
            boxes = boxes_in_window_to_image(boxes, lores_window(inference_image.shape[:2], frame.image.shape[:2]))
        scores = np.asarray(detections.scores, dtype=np.float32).reshape(-1)
        class_ids = np.asarray(detections.class_ids).reshape(-1)
        if not self.labels:
            self.labels = list(getattr(detections, "labels", []))
        job.stage_ms["postprocess"] = (time.perf_counter() - start) * 1000.0
        result = FrameResult(
            index=frame.index,
            image=frame.image,
            boxes=boxes,
            scores=scores,
            class_ids=class_ids,
            labels=self.labels,
            capture_time=frame.timestamp,
            wall_time=time.time(),
            stage_ms=job.stage_ms,
            fps=self.stats.fps(),
        )
        start = time.perf_counter()
        for output in self.outputs:
            output.write(result)
        job.stage_ms["output"] = (time.perf_counter() - start) * 1000.0
        if self.evaluator is not None and frame.ground_truth is not None:
            truth = frame.ground_truth
            self.evaluator.add(boxes, scores, class_ids, truth.boxes, truth.class_ids, truth.difficult)
        self.stats.record(job.stage_ms, (time.monotonic() - frame.timestamp) * 1000.0)
        if self.on_result is not None:
            self.on_result(result)

    def run(self) -> dict[str, Any]:
        """Run to completion in background threads, printing status from this one; returns ``stats.summary()``.

        Ctrl-C (KeyboardInterrupt) stops cleanly. Errors from the worker threads are re-raised here.
        """
        self.stats.started = time.monotonic()
        for output in self.outputs:
            output.open()
        threads = [
            threading.Thread(target=self._capture_loop, name="edge-capture", daemon=True),
            threading.Thread(target=self._inference_loop, name="edge-inference", daemon=True),
            threading.Thread(target=self._output_loop, name="edge-output", daemon=True),
        ]
        pumped = [output for output in self.outputs if output.pump_interval_s is not None]
        tick_s = min([0.1] + [output.pump_interval_s for output in pumped])
        keep_freed_frame_memory()  # frames freed by the output thread are reused by the next capture, not re-faulted
        previous_switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(previous_switch_interval, SWITCH_INTERVAL_S))
        previous_opencv_threads = set_opencv_threads(OPENCV_THREADS)
        try:
            self._sample_host()  # the first reading before any frame, so /stats never shows a run without one
            sampled_at = time.monotonic()
            for thread in threads:
                thread.start()
            while any(thread.is_alive() for thread in threads[1:]):
                threads[2].join(timeout=tick_s)
                for output in pumped:
                    output.pump()
                self._check_deadlines()
                if time.monotonic() - sampled_at >= self.host_sample_s:
                    sampled_at = time.monotonic()
                    self._sample_host()
                if self.status is not None:
                    self.status.maybe_print(self.stats.thermal.temperature_last)
        except KeyboardInterrupt:
            self.stop("interrupted")
            for thread in threads[1:]:
                thread.join(timeout=10.0)
        finally:
            self.stop(self.finished_reason or "finished")
            if threads[0].ident is not None:
                threads[0].join(timeout=5.0)
            self.source.close()
            for output in self.outputs:
                try:
                    output.close()
                except Exception:  # noqa: BLE001 - closing must not hide the run's result
                    logger.exception("closing output %s failed", output.name)
            if self.status is not None:
                self.status.finish()
            sys.setswitchinterval(previous_switch_interval)
            set_opencv_threads(previous_opencv_threads)
        if self._errors:
            raise self._errors[0]
        self.stats.set_dropped(self._slot.dropped)
        return self.stats.summary()

    def _sample_host(self) -> None:
        """One temperature / throttling reading into ``stats.thermal`` (from ``run``'s thread, not per frame)."""
        temperature = self.temperature() if self.temperature is not None else None
        throttled = self.throttling() if self.throttling is not None else None
        self.stats.thermal.add(self.stats.elapsed_s(), temperature, throttled)

    def report(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """JSON-ready run report: measurements, source, finish reason, host facts and mAP@0.5 when evaluated."""
        from edge import system

        report: dict[str, Any] = {
            "finished": self.finished_reason or "running",
            "source": self.source.describe(),
            **self.stats.summary(),
            "system": system.snapshot(),
        }
        if self.evaluator is not None:
            metrics = self.evaluator.result()
            value = metrics.get("map")
            report["accuracy"] = {
                "map50": None if value is None or value != value else round(float(value), 4),
                "per_class_ap50": dict(
                    zip(
                        self.labels or [str(i) for i in range(len(metrics["per_class_ap"]))],
                        metrics["per_class_ap"],
                        strict=False,
                    )
                ),
                "num_images": metrics.get("num_images"),
                "note": "vs the synthetic camera's ground truth",
            }
        if extra:
            report.update(extra)
        return report
