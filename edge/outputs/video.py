"""``VideoFileOutput``: annotated frames to a video file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.outputs.base import FrameResult, Output, OutputError


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
