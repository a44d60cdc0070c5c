"""Outputs: OpenCV window, MJPEG HTTP stream, JSON lines, video file — one small base class, one class each.

Each output receives a ``FrameResult`` per processed frame. The annotated picture (boxes, labels, FPS) is
drawn at most once per frame (``FrameResult.annotated_bgr``) however many outputs use it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edge.auth import Credentials
from edge.errors import EdgeError
from edge.image import swap_red_blue

logger = logging.getLogger(__name__)


class OutputError(EdgeError, RuntimeError):
    """An output cannot be opened (no GUI, unwritable file, port in use)."""


@dataclasses.dataclass
class FrameResult:
    """One processed frame.

    ``image``: RGB uint8 ``(H, W, 3)``. ``boxes``: ``(K, 4)`` float32 pixel ``xmin, ymin, xmax, ymax`` in
    ``image``; ``scores`` ``(K,)`` float32; ``class_ids`` ``(K,)`` int 0-based into ``labels``.
    ``capture_time``: ``time.monotonic()`` at capture; ``wall_time``: ``time.time()`` at result.
    ``stage_ms``: per-stage milliseconds (``edge.stats.STAGES``); ``fps``: rolling FPS when produced.
    """

    index: int
    image: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    labels: Sequence[str]
    capture_time: float
    wall_time: float
    stage_ms: dict[str, float]
    fps: float = 0.0
    _annotated: np.ndarray | None = dataclasses.field(default=None, repr=False)

    def annotated_bgr(self) -> np.ndarray:
        """The frame with boxes, labels and the FPS overlay, BGR uint8 ``(H, W, 3)`` (drawn once, cached)."""
        if self._annotated is None:
            self._annotated = draw_detections(
                self.image, self.boxes, self.scores, self.class_ids, self.labels, fps=self.fps
            )
        return self._annotated

    def detections_json(self) -> list[dict[str, Any]]:
        """``[{"label", "class_id", "score", "box": [xmin, ymin, xmax, ymax] pixels}, ...]``."""
        return [
            {
                "label": _label(self.labels, int(c)),
                "class_id": int(c),
                "score": round(float(s), 4),
                "box": [round(float(v), 1) for v in b],
            }
            for b, s, c in zip(self.boxes, self.scores, self.class_ids, strict=True)
        ]


def _label(labels: Sequence[str], class_id: int) -> str:
    return labels[class_id] if 0 <= class_id < len(labels) else str(class_id)


def _color(class_id: int) -> tuple[int, int, int]:
    hue = (class_id * 47) % 180
    import cv2

    hsv = np.array([[[hue, 220, 255]]], dtype=np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def draw_detections(
    image: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    labels: Sequence[str],
    fps: float | None = None,
) -> np.ndarray:
    """Draw pixel ``xmin, ymin, xmax, ymax`` ``boxes`` with ``label score`` tags and an FPS overlay.

    ``image`` is RGB uint8 ``(H, W, 3)`` (not modified); returns a new BGR uint8 image (what OpenCV writers want).
    """
    import cv2

    canvas = swap_red_blue(image)
    height, width = canvas.shape[:2]
    thickness = max(1, round(min(height, width) / 320))
    scale = max(0.4, min(height, width) / 800)
    for box, score, class_id in zip(np.asarray(boxes), np.asarray(scores), np.asarray(class_ids), strict=True):
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        x0, x1 = np.clip([x0, x1], 0, width - 1)
        y0, y1 = np.clip([y0, y1], 0, height - 1)
        color = _color(int(class_id))
        cv2.rectangle(canvas, (int(x0), int(y0)), (int(x1), int(y1)), color, thickness)
        text = f"{_label(labels, int(class_id))} {float(score):.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = int(y0) - 2 if y0 - th - base - 2 >= 0 else int(y0) + th + base + 2
        cv2.rectangle(canvas, (int(x0), ty - th - base), (int(x0) + tw + 2, ty + 1), color, -1)
        cv2.putText(
            canvas, text, (int(x0) + 1, ty - base + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA
        )
    if fps is not None:
        text = f"{fps:.1f} FPS"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.rectangle(canvas, (0, 0), (tw + 8, th + base + 8), (0, 0, 0), -1)
        cv2.putText(canvas, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


class Output:
    """Base class: ``open()``, ``write(result)``, ``close()``; a context manager. ``write`` must not block for long.

    ``write`` is called from the pipeline's output thread. An output whose toolkit must run on the main
    thread (a GUI window) sets ``pump_interval_s`` and does that work in ``pump()``, which ``Pipeline.run``
    calls from its own thread at least that often; ``open`` and ``close`` are called from that thread too.
    """

    name = "output"
    pump_interval_s: float | None = None

    def open(self) -> Output:
        return self

    def write(self, result: FrameResult) -> None:
        raise NotImplementedError

    def pump(self) -> None:
        """Main-thread work (only called when ``pump_interval_s`` is set)."""
        return None

    def close(self) -> None:
        return None

    def __enter__(self) -> Output:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


class DisplayOutput(Output):
    """An OpenCV window; closing it (or pressing q / Esc) calls ``on_quit``.

    Needs OpenCV's GUI build (``make display-venv``: requirements/display.txt). ``write`` (output thread)
    only keeps the newest result; ``pump`` (the thread that runs the pipeline, as Qt and GTK require) draws
    it with ``imshow`` and runs the window's event loop, so a slow window never holds up the pipeline.
    """

    name = "display"
    pump_interval_s = 1 / 60

    def __init__(self, title: str = "edge detector", on_quit: Callable[[], None] | None = None) -> None:
        self.title = title
        self.on_quit = on_quit
        self.shown = 0
        self._latest: FrameResult | None = None
        self._opened = False

    def open(self) -> DisplayOutput:
        import cv2

        try:
            cv2.namedWindow(self.title, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)  # the frame, no toolbar
        except cv2.error as exc:
            raise OutputError(
                "--display: this OpenCV has no GUI support (opencv-python-headless) or no display is available; "
                "run it from .venv-display (make display-venv) on a desktop, or use --mjpeg HOST:PORT to watch "
                "the stream in a browser instead"
            ) from exc
        self._opened = True
        return self

    def write(self, result: FrameResult) -> None:
        self._latest = result

    def pump(self) -> None:
        import cv2

        result, self._latest = self._latest, None
        if result is not None:
            cv2.imshow(self.title, result.annotated_bgr())
            self.shown += 1
        key = cv2.waitKey(1) & 0xFF
        closed = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        if (key in (ord("q"), 27) or closed) and self.on_quit is not None:
            self.on_quit()

    def close(self) -> None:
        import cv2

        if self._opened:
            self._opened = False
            with contextlib.suppress(cv2.error):
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)


class MjpegOutput(Output):
    """Publishes each annotated frame, JPEG-encoded once, to an ``edge.mjpeg.MjpegServer``.

    ``credentials`` (``edge.auth.Credentials``), ``max_clients`` and ``max_clients_per_address`` are passed to
    the server (see ``MjpegServer``).
    """

    name = "mjpeg"

    def __init__(
        self,
        host: str,
        port: int,
        stats_provider: Callable[[], dict[str, Any]] | None = None,
        quality: int = 80,
        credentials: Credentials | None = None,
        max_clients: int = 16,
        max_clients_per_address: int = 4,
    ) -> None:
        from edge.mjpeg import MjpegServer

        self.server = MjpegServer(
            host,
            port,
            stats_provider=stats_provider,
            credentials=credentials,
            max_clients=max_clients,
            max_clients_per_address=max_clients_per_address,
        )
        self.quality = quality

    def open(self) -> MjpegOutput:
        try:
            self.server.start()
        except OSError as exc:
            raise OutputError(str(exc)) from exc
        return self

    def write(self, result: FrameResult) -> None:
        import cv2

        ok, jpeg = cv2.imencode(".jpg", result.annotated_bgr(), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            self.server.publish(jpeg.tobytes())

    def close(self) -> None:
        self.server.stop()


class JsonlOutput(Output):
    """One JSON object per frame to a file or ``-`` (stdout):
    ``{"time": unix s, "frame": index, "detections": [...], "stage_ms": {...}, "latency_ms": capture->result}``."""

    name = "jsonl"

    def __init__(self, target: str | Path) -> None:
        self.target = str(target)
        self._stream: TextIO | None = None
        self._owns = False

    def open(self) -> JsonlOutput:
        if self.target == "-":
            self._stream = sys.stdout
        else:
            path = Path(self.target)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._stream = path.open("w", buffering=1)
            except OSError as exc:
                raise OutputError(f"--jsonl {self.target!r}: cannot open for writing ({exc.strerror})") from exc
            self._owns = True
        return self

    def write(self, result: FrameResult) -> None:
        assert self._stream is not None, "JsonlOutput.write before open()"
        record = {
            "time": round(result.wall_time, 6),
            "frame": result.index,
            "detections": result.detections_json(),
            "stage_ms": {k: round(v, 3) for k, v in result.stage_ms.items()},
            "latency_ms": round((time.monotonic() - result.capture_time) * 1000.0, 3),
        }
        self._stream.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self._stream is not None:
            self._stream.flush()
            if self._owns:
                self._stream.close()
            self._stream = None


class VideoFileOutput(Output):
    """Writes annotated frames to a video file (``mp4v`` for .mp4/.mov, ``MJPG`` for .avi) at ``fps``."""

    name = "video"

    def __init__(self, path: str | Path, fps: float = 30.0) -> None:
        self.path = Path(path)
        self.fps = fps
        self._writer: Any = None
        self._size = (0, 0)
        self.frames = 0

    def write(self, result: FrameResult) -> None:
        import cv2

        frame = result.annotated_bgr()
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"))
            height, width = frame.shape[:2]
            self._size = (width, height)
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, self._size)
            if not self._writer.isOpened():
                self._writer = None
                raise OutputError(f"--save-video {str(self.path)!r}: OpenCV cannot write this file/codec")
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size)  # odd-sized frames (image folders) fit the first frame's size
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
