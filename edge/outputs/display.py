"""``DisplayOutput``: an OpenCV window on the desktop."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from edge.outputs.base import FrameResult, Output, OutputError


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
