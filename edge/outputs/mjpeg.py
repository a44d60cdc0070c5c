"""``MjpegOutput``: annotated frames as JPEGs to the MJPEG HTTP server (``edge.mjpeg.MjpegServer``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edge.auth import Credentials
from edge.outputs.base import FrameResult, Output, OutputError


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
