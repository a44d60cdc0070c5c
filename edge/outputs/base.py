"""The output interface: ``Output`` (abstract), the ``FrameResult`` it receives and ``OutputError``."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge.boxes import normalized_to_pixels
from edge.errors import EdgeError
from edge.outputs.drawing import _label, draw_detections


class OutputError(EdgeError, RuntimeError):
    """An output cannot be opened (no GUI, unwritable file, port in use)."""


@dataclasses.dataclass
class FrameResult:
    """One processed frame.

    ``image``: RGB uint8 ``(H, W, 3)``. ``boxes``: ``(K, 4)`` float32 normalized ``ymin, xmin, ymax, xmax`` of
    ``image`` (the canonical format; ``pixel_boxes()`` gives pixels); ``scores`` ``(K,)`` float32;
    ``class_ids`` ``(K,)`` int 0-based into ``labels``.
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

    def pixel_boxes(self) -> np.ndarray:
        """``(K, 4)`` float32 pixel ``xmin, ymin, xmax, ymax`` in ``image``."""
        height, width = self.image.shape[:2]
        return normalized_to_pixels(self.boxes, height, width)

    def annotated_bgr(self) -> np.ndarray:
        """The frame with boxes, labels and the FPS overlay, BGR uint8 ``(H, W, 3)`` (drawn once, cached)."""
        if self._annotated is None:
            self._annotated = draw_detections(
                self.image, self.pixel_boxes(), self.scores, self.class_ids, self.labels, fps=self.fps
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
            for b, s, c in zip(self.pixel_boxes(), self.scores, self.class_ids, strict=True)
        ]


class Output(abc.ABC):
    """Base class: ``open()``, ``write(result)``, ``close()``; a context manager. ``write`` must not block for long.

    ``write`` is called from the pipeline's output thread. An output whose toolkit must run on the main
    thread (a GUI window) sets ``pump_interval_s`` and does that work in ``pump()``, which ``Pipeline.run``
    calls from its own thread at least that often; ``open`` and ``close`` are called from that thread too.
    """

    name = "output"
    pump_interval_s: float | None = None

    def open(self) -> Output:
        return self

    @abc.abstractmethod
    def write(self, result: FrameResult) -> None:
        """Take one processed frame (called from the pipeline's output thread)."""

    def pump(self) -> None:
        """Main-thread work (only called when ``pump_interval_s`` is set)."""
        return None

    def close(self) -> None:
        return None

    def __enter__(self) -> Output:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
