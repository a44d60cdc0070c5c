"""Outputs: OpenCV window, MJPEG HTTP stream, JSON lines, video file — one small base class, one class each.

Each output receives a ``FrameResult`` per processed frame. The annotated picture (boxes, labels, FPS) is
drawn at most once per frame (``FrameResult.annotated_bgr``) however many outputs use it.

One module per role: ``base`` (the ``Output`` interface, ``FrameResult``, ``OutputError``), ``drawing``,
``display``, ``mjpeg``, ``jsonl``, ``video``. Their public names are imported here, so callers use
``edge.outputs.<Name>``.
"""

from edge.outputs.base import FrameResult, Output, OutputError
from edge.outputs.display import DisplayOutput
from edge.outputs.drawing import _color as _color  # tests check the palette
from edge.outputs.drawing import draw_detections
from edge.outputs.jsonl import JsonlOutput
from edge.outputs.mjpeg import MjpegOutput
from edge.outputs.video import VideoFileOutput

__all__ = [
    "DisplayOutput",
    "FrameResult",
    "JsonlOutput",
    "MjpegOutput",
    "Output",
    "OutputError",
    "VideoFileOutput",
    "draw_detections",
]
