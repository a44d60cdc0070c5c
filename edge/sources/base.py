"""The frame-source interface: ``FrameSource`` (abstract), the ``Frame`` it yields and the errors it raises."""

from __future__ import annotations

import abc
import dataclasses
import time
from typing import Any

import numpy as np

from edge.errors import EdgeError


class SourceError(EdgeError, RuntimeError):
    """A source cannot be opened or read for a reason retrying will not fix (bad path, unsupported kind)."""


class SourceUnavailable(EdgeError, RuntimeError):
    """A live source (camera, stream) is missing or went away; retrying may help."""


@dataclasses.dataclass(frozen=True)
class GroundTruth:
    """Per-frame truth from the synthetic camera: ``boxes`` ``(K, 4)`` float32 normalized ``ymin, xmin, ymax, xmax``,
    ``class_ids`` ``(K,)`` int 0-based, ``difficult`` ``(K,)`` bool or None (mostly hidden: ignored by mAP)."""

    boxes: np.ndarray
    class_ids: np.ndarray
    difficult: np.ndarray | None = None


@dataclasses.dataclass
class Frame:
    """One captured frame.

    ``image``: RGB uint8 ``(H, W, 3)``. ``timestamp``: ``time.monotonic()`` at capture. ``index``: 0-based
    capture counter of the source. ``ground_truth``: only from the synthetic source. ``inference_image``:
    an optional smaller RGB uint8 image of the same instant for the detector (picamera2's lores stream). Its
    field of view is the largest centred crop of ``image``'s with its own aspect ratio; detections on it map
    back to ``image`` with ``edge.boxes.lores_window``. ``sensor``: outputs a camera-side accelerator
    already computed for this frame (``edge.imx500.SensorResult``); the pipeline skips preprocessing for it.
    """

    image: np.ndarray
    timestamp: float
    index: int
    ground_truth: GroundTruth | None = None
    inference_image: np.ndarray | None = None
    sensor: Any = None


class FrameSource(abc.ABC):
    """Base class: ``open()``, ``read() -> Frame | None`` (None = stream ended), ``close()``; a context manager.

    Subclasses implement ``_open``, ``_read`` (returning an RGB uint8 image or None) and ``_close``.
    ``live`` sources (cameras, streams, the paced emulator) may have frames dropped by the pipeline;
    finite ones (files, folders) are consumed frame by frame.
    """

    live: bool = True
    last_error: str | None = None
    """Why the source last failed to open or read (set by ``ReconnectingSource`` while it retries)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._index = 0
        self._opened = False

    def open(self) -> FrameSource:
        if not self._opened:
            self._open()
            self._opened = True
        return self

    def read(self) -> Frame | None:
        if not self._opened:
            self.open()
        image = self._read()
        if image is None:
            return None
        frame = image if isinstance(image, Frame) else Frame(image=image, timestamp=time.monotonic(), index=0)
        frame.index = self._index
        self._index += 1
        return frame

    def close(self) -> None:
        if self._opened:
            self._opened = False
            self._close()

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for reports."""
        return {"kind": type(self).__name__, "name": self.name}

    def __enter__(self) -> FrameSource:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    @abc.abstractmethod
    def _open(self) -> None:
        """Acquire the device, file or stream; raise ``SourceError`` or ``SourceUnavailable``."""

    @abc.abstractmethod
    def _read(self) -> np.ndarray | Frame | None:
        """The next RGB uint8 ``(H, W, 3)`` image (or a whole ``Frame``), None at the end of a finite stream."""

    @abc.abstractmethod
    def _close(self) -> None:
        """Release what ``_open`` acquired."""
