"""``Picamera2Source``: the Raspberry Pi camera through picamera2, and its array formats (``picamera2_array_to_rgb``).

This module is ``edge.sources.picamera2``; ``from picamera2 import Picamera2`` below is an absolute import of
the real picamera2 package, which this module's name does not shadow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from edge.image import convert_to_rgb
from edge.sources.base import Frame, FrameSource, SourceError, SourceUnavailable

T = TypeVar("T")

PICAMERA2_CHANNEL_ORDER = {"RGB888": "BGR", "BGR888": "RGB", "XRGB8888": "BGR", "XBGR8888": "RGB"}
"""picamera2 (libcamera/DRM) format name -> the byte order of its pixels in memory (picamera2 manual, appendix A):
``RGB888`` is ``[B, G, R]``, ``BGR888`` ``[R, G, B]``, ``XRGB8888`` ``[B, G, R, 255]``, ``XBGR8888`` ``[R, G, B, 255]``."""
PICAMERA2_FORMATS = ("YUV420", *PICAMERA2_CHANNEL_ORDER)
CAMERA_SERVICE = "edge"
"""The systemd unit of the deployed camera loop (``deploy/``): the usual holder of a busy camera."""
_CAMERA_BUSY_MARKERS = (
    "failed to acquire camera",
    "in use by another process",
    "device or resource busy",
    "unexpected code: -16",
)


def picamera2_array_to_rgb(array: np.ndarray, fmt: str, size: tuple[int, int]) -> np.ndarray:
    """One picamera2 ``CompletedRequest.make_array(name)`` -> contiguous RGB uint8 ``(height, width, 3)``.

    ``fmt`` is the stream's format (``PICAMERA2_FORMATS``), ``size`` its configured ``(width, height)``.
    ``RGB888``/``BGR888`` arrays are ``(height, width, 3)``, ``XRGB8888``/``XBGR8888`` ``(height, width, 4)``, in
    the byte orders of ``PICAMERA2_CHANNEL_ORDER``. ``YUV420`` (I420: the only lores format before the Pi 5) is
    ``(height * 3 // 2, stride)``: picamera2 leaves the row padding in, and the U and V planes carry two
    half-width rows per array row, so the whole array is converted (``cv2.COLOR_YUV2RGB_I420``, BT.601) and the
    padding columns are cut from the result, never from the planes.
    """
    width, height = size
    array = np.asarray(array)
    if fmt in PICAMERA2_CHANNEL_ORDER:
        channels = 4 if fmt.startswith("X") else 3
        if array.shape != (height, width, channels):
            raise SourceError(
                f"picamera2 {fmt} stream: expected a {(height, width, channels)} array, got {array.shape}"
            )
        return convert_to_rgb(array, PICAMERA2_CHANNEL_ORDER[fmt])
    if fmt == "YUV420":
        if array.ndim != 2 or array.shape[0] != height * 3 // 2 or array.shape[1] < width or array.shape[1] % 2:
            raise SourceError(
                f"picamera2 YUV420 stream: expected a ({height * 3 // 2}, stride >= {width}) array, got {array.shape}"
            )
        import cv2

        rgb = cv2.cvtColor(np.ascontiguousarray(array, dtype=np.uint8), cv2.COLOR_YUV2RGB_I420)
        return np.ascontiguousarray(rgb[:, :width])
    raise SourceError(f"picamera2 stream format {fmt!r}: expected one of {', '.join(PICAMERA2_FORMATS)}")


def _camera_busy(error: BaseException) -> bool:
    """Whether a ``Picamera2()`` error (or its cause) says another process holds the camera.

    picamera2 raises ``RuntimeError("Camera __init__ sequence did not complete.")`` from ``RuntimeError("Failed
    to acquire camera: Device or resource busy")`` (older releases: "Failed to acquire camera", "camera.acquire()
    returned unexpected code: -16"); libcamera logs "Pipeline handler in use by another process".
    """
    seen: BaseException | None = error
    while seen is not None:
        if any(marker in str(seen).lower() for marker in _CAMERA_BUSY_MARKERS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def open_camera(picamera2_class: Any, camera_num: int, what: str) -> Any:
    """``picamera2_class(camera_num)`` with its failures named: a camera another process holds is a ``SourceError``
    naming the deployed service; a missing one is ``SourceUnavailable`` (retried). ``what``: e.g. "picamera2"."""
    try:
        return picamera2_class(camera_num)
    except (IndexError, RuntimeError, OSError) as exc:
        if _camera_busy(exc):
            raise SourceError(
                f"{what} camera {camera_num}: in use by another process, most likely the deployed "
                f"camera service {CAMERA_SERVICE}.service (stop it with: sudo systemctl stop {CAMERA_SERVICE})"
            ) from exc
        raise SourceUnavailable(f"{what} camera {camera_num}: not available ({exc})") from exc


def capture_one(camera: Any, timeout_s: float, where: str, take: Callable[[Any], T]) -> T:
    """One ``capture_request(wait=timeout_s)``: ``take(request)`` reads what it needs, then the request is released
    (also on error). A camera that delivers nothing for ``timeout_s`` or fails raises ``SourceUnavailable``."""
    try:
        request = camera.capture_request(wait=timeout_s)
        try:
            return take(request)
        finally:
            request.release()
    except TimeoutError as exc:  # concurrent.futures.TimeoutError is TimeoutError since Python 3.11
        raise SourceUnavailable(f"{where}: no frame within {timeout_s:g} s") from exc
    except Exception as exc:
        raise SourceUnavailable(f"{where}: capture failed ({exc})") from exc


def stop_and_close(camera: Any) -> None:
    """``camera.stop()`` then ``camera.close()``, closing even when stopping fails; ``None`` is a no-op."""
    if camera is not None:
        try:
            camera.stop()
        finally:
            camera.close()


class Picamera2Source(FrameSource):
    """The Raspberry Pi camera through picamera2.

    The ``main`` stream (``resolution`` ``(width, height)``, format ``"RGB888"``, stored **BGR** in memory) is the
    displayed frame. With ``lores`` ``(width, height)`` a second, smaller stream of the same frame feeds the
    detector (saves a resize); ``lores_format`` ``"YUV420"`` (the only lores format before the Pi 5) or, on a
    Pi 5, ``"RGB888"``, ``"BGR888"``, ``"XRGB8888"``, ``"XBGR8888"``. Each ``read()`` takes one
    ``capture_request()``, makes both arrays from it and releases it (also on error), so the boxes found on
    lores are drawn on the very frame they were found in and the camera never runs out of buffers.
    ``capture_request(wait=capture_timeout_s)`` (picamera2's own timeout): a camera that stops delivering (a
    loose ribbon cable, "Camera frontend has timed out!") raises ``SourceUnavailable`` after that many seconds
    instead of blocking the capture thread forever; ``ReconnectingSource`` then closes and reopens it.
    """

    def __init__(
        self,
        resolution: tuple[int, int] = (640, 480),
        fps: float | None = 30.0,
        lores: tuple[int, int] | None = None,
        lores_format: str = "YUV420",
        camera_num: int = 0,
        capture_timeout_s: float = 5.0,
    ) -> None:
        super().__init__(f"picamera2:{camera_num}")
        self.capture_timeout_s = capture_timeout_s
        self.resolution = resolution
        self.fps = fps
        self.lores = lores
        if lores_format not in PICAMERA2_FORMATS:
            raise SourceError(
                f"picamera2 lores_format: expected one of {', '.join(PICAMERA2_FORMATS)}, got {lores_format!r}"
            )
        self.lores_format = lores_format
        self.camera_num = camera_num
        self._camera: Any = None
        self._streams: dict[str, tuple[str, tuple[int, int]]] = {}

    def _open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise SourceError(
                "source 'picamera2': the picamera2 package is not installed (on Raspberry Pi OS: "
                "sudo apt install python3-picamera2, and create the venv with --system-site-packages)"
            ) from exc
        camera = open_camera(Picamera2, self.camera_num, "picamera2")
        try:
            kwargs: dict[str, Any] = {"main": {"size": tuple(self.resolution), "format": "RGB888"}}
            if self.lores is not None:
                kwargs["lores"] = {"size": tuple(self.lores), "format": self.lores_format}
            if self.fps:
                kwargs["controls"] = {"FrameRate": float(self.fps)}
            camera.configure(camera.create_preview_configuration(**kwargs))
            camera.start()
            # picamera2 may round sizes (to even numbers, or to the hardware's alignment): use what it configured
            self._streams = {
                name: (stream["format"], tuple(stream["size"]))
                for name in ("main", "lores")
                if (stream := camera.camera_config.get(name))
            }
        except Exception as exc:
            camera.close()
            raise SourceUnavailable(f"picamera2 camera {self.camera_num}: cannot start ({exc})") from exc
        self._camera = camera

    def _read(self) -> Frame:
        names = ("main", "lores") if self.lores is not None else ("main",)
        arrays = capture_one(
            self._camera,
            self.capture_timeout_s,
            f"picamera2 camera {self.camera_num}",
            lambda request: {name: request.make_array(name) for name in names},
        )
        timestamp = time.monotonic()
        images = {name: picamera2_array_to_rgb(arrays[name], *self._streams[name]) for name in names}
        return Frame(image=images["main"], timestamp=timestamp, index=0, inference_image=images.get("lores"))

    def _close(self) -> None:
        camera, self._camera = self._camera, None
        stop_and_close(camera)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "picamera2",
            "name": self.name,
            "resolution": list(self.resolution),
            "lores": self.lores,
            "lores_format": self.lores_format if self.lores is not None else None,
        }
