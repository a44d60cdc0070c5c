"""A live frame source whose camera is missing: every open fails, as ``--source 7`` without a device 7."""

from __future__ import annotations

from edge import sources


class NeverOpens(sources.FrameSource):
    """Each ``open`` raises ``SourceUnavailable``; it never reads a frame."""

    def _open(self) -> None:
        raise sources.SourceUnavailable("camera device 7: cannot be opened")

    def _read(self):  # pragma: no cover - never opened
        return None

    def _close(self) -> None:
        pass
