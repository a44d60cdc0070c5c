"""Frame sources: synthetic Pi-camera emulator, picamera2, OpenCV device / video file / stream URL, image folder.

Every source yields ``Frame`` objects whose ``image`` is RGB uint8 ``(H, W, 3)`` (BGR from OpenCV and
picamera2 is converted here, at the boundary). ``read()`` returns ``None`` when a finite stream ends and
raises ``SourceUnavailable`` when a live device disappears; ``ReconnectingSource`` turns the latter into
retries with exponential backoff. ``open_source`` is the one place where a source kind is chosen.

One module per role: ``base`` (the ``FrameSource`` interface, ``Frame``, errors), ``opencv``, ``folder``,
``picamera2``, ``synthetic``, ``reconnecting``. Their public names are imported here, so callers use
``edge.sources.<Name>``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from edge.sources.base import Frame, FrameSource, GroundTruth, SourceError, SourceUnavailable
from edge.sources.folder import IMAGE_SUFFIXES, ImageFolderSource
from edge.sources.opencv import URL_SCHEMES, OpenCVSource
from edge.sources.picamera2 import (
    CAMERA_SERVICE,
    PICAMERA2_CHANNEL_ORDER,
    PICAMERA2_FORMATS,
    Picamera2Source,
    picamera2_array_to_rgb,
)
from edge.sources.reconnecting import ReconnectingSource
from edge.sources.synthetic import SyntheticSource

__all__ = [
    "CAMERA_SERVICE",
    "IMAGE_SUFFIXES",
    "PICAMERA2_CHANNEL_ORDER",
    "PICAMERA2_FORMATS",
    "SOURCE_KINDS",
    "URL_SCHEMES",
    "VIDEO_SUFFIXES",
    "Frame",
    "FrameSource",
    "GroundTruth",
    "ImageFolderSource",
    "OpenCVSource",
    "Picamera2Source",
    "ReconnectingSource",
    "SourceError",
    "SourceUnavailable",
    "SyntheticSource",
    "open_source",
    "parse_resolution",
    "picamera2_array_to_rgb",
]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mjpeg", ".mjpg", ".h264")
SOURCE_KINDS = (
    "synthetic",
    "picamera2",
    "<device index 0, 1, ...>",
    "<video file>",
    "<rtsp/http URL>",
    "<image folder>",
)


def parse_resolution(text: str) -> tuple[int, int]:
    """``"640x480"`` -> ``(640, 480)`` (width, height)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError as exc:
        raise ValueError(f"resolution: expected WIDTHxHEIGHT like 640x480, got {text!r}") from exc
    if width < 16 or height < 16:
        raise ValueError(f"resolution: width and height must be >= 16, got {text!r}")
    return width, height


def open_source(
    spec: str,
    resolution: tuple[int, int] = (640, 480),
    fps: float = 30.0,
    loop: bool = False,
    paced: bool = True,
    seed: int = 0,
    reconnect: bool = True,
    stop: threading.Event | None = None,
    **options: Any,
) -> FrameSource:
    """Build the source named by ``spec`` (the ``--source`` value) — the one place where a kind is chosen.

    ``synthetic`` | ``picamera2`` | a device index ``0``, ``1``… | an ``rtsp://``/``http://`` URL |
    a video file | a folder of images. Live sources are wrapped in ``ReconnectingSource`` when
    ``reconnect``. Anything else raises ``SourceError`` listing the valid kinds.
    """
    spec = str(spec).strip()
    source: FrameSource
    if spec == "synthetic":
        return SyntheticSource(resolution=resolution, fps=fps, paced=paced, seed=seed, **options)
    if spec == "picamera2":
        source = Picamera2Source(resolution=resolution, fps=fps, **options)
    elif spec.isdigit():
        source = OpenCVSource(int(spec), resolution=resolution, fps=fps)
    elif spec.lower().startswith(URL_SCHEMES):
        source = OpenCVSource(spec)
    elif Path(spec).is_dir():
        return ImageFolderSource(spec, loop=loop)
    elif Path(spec).is_file():
        return OpenCVSource(spec, loop=loop)
    else:
        raise SourceError(
            f"--source {spec!r}: not a known kind, device index, URL, file or folder; valid: " + ", ".join(SOURCE_KINDS)
        )
    if reconnect:
        return ReconnectingSource(source, stop=stop)
    return source
