"""``OpenCVSource``: a camera device index, a video file or a stream URL through ``cv2.VideoCapture``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge.image import convert_to_rgb
from edge.sources.base import FrameSource, SourceError, SourceUnavailable

URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://")


class OpenCVSource(FrameSource):
    """``cv2.VideoCapture`` on a device index, a video file or a stream URL (BGR converted to RGB).

    ``resolution`` ``(width, height)`` and ``fps`` are requested from devices only. With ``loop`` a file
    restarts from its first frame at its end. ``decode_threads`` is the decoder's thread count for files (None:
    OpenCV's default, one per core; devices and streams keep OpenCV's). The default 1 decodes in the capture thread: the loop already
    runs capture, the interpreter and postprocessing side by side, and extra decoder threads only compete with
    them for the cores (a 640x480 mp4 on 2 cores: 0.54 ms of CPU per frame with 2 decoder threads, 0.34 ms with
    one, and the interpreter no longer preempted by them; ``scripts/bench_pipeline.py``).

    OpenCV decodes every frame into one BGR buffer that this source reuses; each frame it returns is a new RGB
    array. A new buffer per frame and the RGB copy would be two 1 MB allocations per 640x480 frame, and glibc
    hands blocks that large back to the kernel when freed: each new one then page-faults in afresh (measured:
    read + RGB copy 1.47 ms per frame with a new buffer, 0.55 ms with the reused one, ``scripts/bench_pipeline.py``).
    """

    def __init__(
        self,
        target: int | str,
        resolution: tuple[int, int] | None = None,
        fps: float | None = None,
        loop: bool = False,
        decode_threads: int | None = 1,
    ) -> None:
        super().__init__(str(target))
        self.target = target
        self.is_device = isinstance(target, int)
        self.is_url = isinstance(target, str) and target.lower().startswith(URL_SCHEMES)
        self.live = self.is_device or self.is_url
        self.resolution = resolution
        self.fps = fps
        self.loop = loop
        if decode_threads is not None and decode_threads < 1:
            raise ValueError(f"decode_threads must be >= 1 or None, got {decode_threads}")
        self.decode_threads = decode_threads
        self._capture: Any = None
        self._bgr: np.ndarray | None = None

    def _open(self) -> None:
        import cv2

        if not self.live and not Path(self.target).is_file():
            raise SourceError(f"video file {self.target!r}: not found")
        capture = None
        if not self.live and self.decode_threads is not None:
            capture = cv2.VideoCapture(self.target, cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, self.decode_threads])
            if not capture.isOpened():  # a backend without the thread-count parameter refuses it
                capture.release()
                capture = None
        if capture is None:
            capture = cv2.VideoCapture(self.target)
        if not capture.isOpened():
            capture.release()
            what = "camera device" if self.is_device else "stream" if self.is_url else "video file"
            if self.live:
                raise SourceUnavailable(f"{what} {self.target!r}: cannot be opened")
            raise SourceError(f"{what} {self.target!r}: cannot be opened (unsupported codec or not a video)")
        if self.is_device and self.resolution is not None:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.resolution[0])
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.resolution[1])
        if self.is_device and self.fps:
            capture.set(cv2.CAP_PROP_FPS, self.fps)
        self._capture = capture

    def _read(self) -> np.ndarray | None:
        import cv2

        ok, image = self._capture.read(self._bgr)
        if not ok and self.loop and not self.live:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._capture.read(self._bgr)
        if not ok or image is None:
            if self.live:
                raise SourceUnavailable(f"{'camera device' if self.is_device else 'stream'} {self.target!r}: no frame")
            return None
        self._bgr = image  # OpenCV decodes the next frame into it (a new one when the size changes)
        return convert_to_rgb(image, "BGR")

    def _close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
        self._bgr = None

    def describe(self) -> dict[str, Any]:
        kind = "device" if self.is_device else "url" if self.is_url else "video"
        description = {"kind": kind, "name": self.name, "loop": self.loop}
        if not self.live:
            description["decode_threads"] = self.decode_threads
        return description
