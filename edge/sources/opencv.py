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
    restarts from its first frame at its end.
    """

    def __init__(
        self,
        target: int | str,
        resolution: tuple[int, int] | None = None,
        fps: float | None = None,
        loop: bool = False,
    ) -> None:
        super().__init__(str(target))
        self.target = target
        self.is_device = isinstance(target, int)
        self.is_url = isinstance(target, str) and target.lower().startswith(URL_SCHEMES)
        self.live = self.is_device or self.is_url
        self.resolution = resolution
        self.fps = fps
        self.loop = loop
        self._capture: Any = None

    def _open(self) -> None:
        import cv2

        if not self.live and not Path(self.target).is_file():
            raise SourceError(f"video file {self.target!r}: not found")
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

        ok, image = self._capture.read()
        if not ok and self.loop and not self.live:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._capture.read()
        if not ok or image is None:
            if self.live:
                raise SourceUnavailable(f"{'camera device' if self.is_device else 'stream'} {self.target!r}: no frame")
            return None
        return convert_to_rgb(image, "BGR")

    def _close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def describe(self) -> dict[str, Any]:
        kind = "device" if self.is_device else "url" if self.is_url else "video"
        return {"kind": kind, "name": self.name, "loop": self.loop}
