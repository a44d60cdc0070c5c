"""Pipeline measurement: per-stage latency, rolling FPS, end-to-end percentiles, live status line, JSON report.

All times are milliseconds. Latency history lives in fixed-size ring buffers allocated up front, so a
long run (a 10,000-frame soak) does not grow memory.
"""

from __future__ import annotations

import collections
import json
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edge.atomic import atomic_write_bytes
from edge.system import throttle_event

STAGES: tuple[str, ...] = ("wait", "preprocess", "invoke", "postprocess", "output")
"""Per-frame stages, in pipeline order: waiting for a frame, preprocessing, interpreter, decode+NMS, draw/output."""
SENSOR_STAGES: tuple[str, ...] = ("sensor_dsp",)
"""Stages only an on-sensor network reports (IMX500 KPI: DSP time; its DNN time is ``invoke``), summarized once seen."""


class RingBuffer:
    """The last ``capacity`` float64 values, plus running count/sum over everything ever added."""

    def __init__(self, capacity: int = 8192) -> None:
        self._values = np.zeros(capacity, dtype=np.float64)
        self._next = 0
        self.count = 0
        self.total = 0.0

    def add(self, value: float) -> None:
        self._values[self._next] = value
        self._next = (self._next + 1) % len(self._values)
        self.count += 1
        self.total += value

    def values(self) -> np.ndarray:
        """The retained values ``(min(count, capacity),)`` float64 (order not meaningful)."""
        return self._values[: min(self.count, len(self._values))].copy()

    def summary(self) -> dict[str, float | None]:
        """``{"mean", "p50", "p95", "p99", "max"}`` in the buffer's unit; ``None`` values when empty."""
        values = self.values()
        if values.size == 0:
            return {"mean": None, "p50": None, "p95": None, "p99": None, "max": None}
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        return {
            "mean": round(self.total / self.count, 3),
            "p50": round(float(p50), 3),
            "p95": round(float(p95), 3),
            "p99": round(float(p99), 3),
            "max": round(float(values.max()), 3),
        }


class ThermalLog:
    """CPU temperature and throttling sampled during a run (every few seconds, off the per-frame path).

    ``add(elapsed_s, temperature_c, throttled)`` takes one reading: degrees Celsius or None without a sensor,
    ``edge.system.parse_throttled`` flags or None without ``vcgencmd``. ``summary()`` keeps the minimum and
    maximum temperature and the first throttle event (``edge.system.throttle_event``), all None when absent.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.samples = 0
        self.temperature_samples = 0
        self.throttle_samples = 0
        self.temperature_min: float | None = None
        self.temperature_max: float | None = None
        self.temperature_last: float | None = None
        self._baseline: dict[str, Any] | None = None
        self._first_throttle: dict[str, Any] | None = None

    def add(self, elapsed_s: float, temperature_c: float | None, throttled: dict[str, Any] | None) -> None:
        with self._lock:
            self.samples += 1
            if temperature_c is not None:
                self.temperature_samples += 1
                self.temperature_last = temperature_c
                low, high = self.temperature_min, self.temperature_max
                self.temperature_min = temperature_c if low is None else min(low, temperature_c)
                self.temperature_max = temperature_c if high is None else max(high, temperature_c)
            if throttled is None:
                return
            self.throttle_samples += 1
            if self._baseline is None:
                self._baseline = dict(throttled)
            flags = throttle_event(throttled, self._baseline)
            if flags and self._first_throttle is None:
                self._first_throttle = {
                    "after_s": round(elapsed_s, 3),
                    "time": datetime.now(UTC).isoformat(timespec="seconds"),
                    "flags": flags,
                }

    def summary(self) -> dict[str, Any]:
        """``{"samples", "temperature_samples", "throttle_samples", "cpu_temperature_c": {"min", "max", "last"},
        "first_throttle": {"after_s" (since the run started), "time" (UTC ISO 8601), "flags": [...]} | None}``."""
        with self._lock:
            return {
                "samples": self.samples,
                "temperature_samples": self.temperature_samples,
                "throttle_samples": self.throttle_samples,
                "cpu_temperature_c": {
                    "min": self.temperature_min,
                    "max": self.temperature_max,
                    "last": self.temperature_last,
                },
                "first_throttle": dict(self._first_throttle) if self._first_throttle else None,
            }


class PipelineStats:
    """Thread-safe collector fed by the pipeline once per finished frame.

    ``record(stage_ms, e2e_ms)`` takes the per-stage milliseconds (keys from ``STAGES``) and the end-to-end
    latency from frame capture to result. ``fps()`` is a rolling rate over the last ``fps_window_s`` seconds.
    """

    def __init__(self, fps_window_s: float = 2.0, capacity: int = 8192) -> None:
        self._lock = threading.Lock()
        self._stages = {name: RingBuffer(capacity) for name in STAGES}
        self._capacity = capacity
        self._e2e = RingBuffer(capacity)
        self._finish_times: collections.deque[float] = collections.deque(maxlen=4096)
        self._fps_window_s = fps_window_s
        self.started = time.monotonic()
        self.frames = 0
        self.dropped = 0
        self.thermal = ThermalLog()

    def record(self, stage_ms: dict[str, float], e2e_ms: float) -> None:
        now = time.monotonic()
        with self._lock:
            for name, value in stage_ms.items():
                if name in self._stages:
                    self._stages[name].add(value)
                elif name in SENSOR_STAGES:
                    self._stages[name] = RingBuffer(self._capacity)
                    self._stages[name].add(value)
            self._e2e.add(e2e_ms)
            self._finish_times.append(now)
            self._forget_before(now - self._fps_window_s)
            self.frames += 1

    def set_dropped(self, dropped: int) -> None:
        with self._lock:
            self.dropped = dropped

    def _forget_before(self, cutoff: float) -> None:
        """Drop finish times older than ``cutoff`` (oldest first, so amortized O(1) per frame); lock held."""
        times = self._finish_times
        while times and times[0] < cutoff:
            times.popleft()

    def fps(self) -> float:
        """Frames finished per second over the last ``fps_window_s`` seconds (0.0 before two frames)."""
        now = time.monotonic()
        with self._lock:
            self._forget_before(now - self._fps_window_s)
            if len(self._finish_times) < 2:
                return 0.0
            count, span = len(self._finish_times), self._finish_times[-1] - self._finish_times[0]
        return (count - 1) / span if span > 0 else 0.0

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def summary(self) -> dict[str, Any]:
        """JSON-ready measurement summary (ms for latencies)."""
        elapsed = self.elapsed_s()
        with self._lock:
            stages = {name: buf.summary() for name, buf in self._stages.items()}
            e2e = self._e2e.summary()
            frames, dropped = self.frames, self.dropped
        return {
            "frames": frames,
            "dropped_frames": dropped,
            "duration_s": round(elapsed, 3),
            "average_fps": round(frames / elapsed, 3) if elapsed > 0 else 0.0,
            "rolling_fps": round(self.fps(), 3),
            "stages_ms": stages,
            "end_to_end_ms": e2e,
            "thermal": self.thermal.summary(),
        }

    def status_line(self, temperature_c: float | None = None) -> str:
        """Compact one-line live status, e.g. ``fps 29.8 | e2e p50 33.1 p95 40.2 ms | invoke 20.1 ms | ...``."""
        with self._lock:
            e2e = self._e2e.values()
            invoke = self._stages["invoke"]
            invoke_mean = invoke.total / invoke.count if invoke.count else 0.0
            frames, dropped = self.frames, self.dropped
        p50, p95 = np.percentile(e2e[-512:], [50, 95]) if e2e.size else (0.0, 0.0)
        line = (
            f"fps {self.fps():5.1f} | e2e p50 {p50:6.1f} p95 {p95:6.1f} ms | invoke {invoke_mean:6.1f} ms"
            f" | frames {frames} dropped {dropped}"
        )
        if temperature_c is not None:
            line += f" | {temperature_c:.0f}C"
        return line


class StatusPrinter:
    """Rewrites one status line on ``stream`` (stderr by default) with ``\\r`` at most every ``interval_s``."""

    def __init__(self, stats: PipelineStats, stream: TextIO | None = None, interval_s: float = 0.5) -> None:
        self._stats = stats
        self._stream = stream if stream is not None else sys.stderr
        self._interval_s = interval_s
        self._last = 0.0
        self._width = 0

    def maybe_print(self, temperature_c: float | None = None) -> None:
        now = time.monotonic()
        if now - self._last < self._interval_s:
            return
        self._last = now
        line = self._stats.status_line(temperature_c)
        self._width = max(self._width, len(line))
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()

    def finish(self) -> None:
        if self._width:
            self._stream.write("\n")
            self._stream.flush()


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    """Write ``report`` as indented JSON through ``edge.atomic``: a signal mid-write leaves the old file or none."""
    data = (json.dumps(report, indent=2, default=_json_default) + "\n").encode()
    return atomic_write_bytes(path, data)


def write_timestamped_report(folder: str | Path, name: str, report: dict[str, Any]) -> Path:
    """Write ``report`` (see ``write_report``) to ``folder/<name>_<UTC time>.json``, e.g. ``pipeline_20260101T120000Z``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return write_report(Path(folder) / f"{name}_{stamp}.json", report)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
