"""A stand-in for the ``picamera2`` package (which only installs on a Raspberry Pi), as strict as the real API.

Inject with ``monkeypatch.setitem(sys.modules, "picamera2", fake_picamera2)``. Names, defaults and behaviour
follow raspberrypi/picamera2 (``picamera2/picamera2.py`` and ``picamera2/request.py`` at 3e6dff0) and the
Picamera2 manual's appendix A (pixel formats):

- ``Picamera2(camera_num)``: ``IndexError`` when there is no such camera (``global_camera_info()[camera_num]``).
  With ``BUSY`` set it raises what picamera2 raises when another process holds the camera: ``RuntimeError("Camera
  __init__ sequence did not complete.")`` from ``RuntimeError("Failed to acquire camera: Device or resource
  busy")`` (libcamera logs "Pipeline handler in use by another process" at the same time).
- ``create_preview_configuration`` / ``create_video_configuration(main=, lores=, controls=, buffer_count=)``:
  main defaults to ``XBGR8888`` 640x480 (preview, 4 buffers) or 1280x720 (video, 6 buffers); lores defaults to
  ``YUV420`` at main's size; sizes are rounded down to even numbers (``align_stream(optimal=False)``).
- ``configure(config)`` fills in each stream's ``stride`` (rows padded to 64 bytes, as the Pi's ISP does);
  ``camera_config`` is the configuration in force; ``start``, ``stop``, ``close``.
- ``capture_request()`` returns a ``CompletedRequest`` for the **next** camera frame: ``make_array(name)``,
  ``get_metadata()``, ``release()``. After ``release()`` the request's configuration is gone and ``make_array``
  raises ``RuntimeError("Stream 'main' is not defined")``, as in picamera2; releasing twice raises.
- ``capture_array(name)`` takes a request of its own, so two calls are two different frames (as on the Pi).
- ``capture_request(wait=seconds)``: with ``STALLED`` set (the camera runs but no frame arrives), picamera2's
  ``Job.get_result(timeout=wait)`` raises ``concurrent.futures.TimeoutError`` after ``wait`` seconds; without a
  numeric ``wait`` it would block forever, which the stand-in turns into an error.

Strictness, so misuse fails a test: every capture is a new frame (``frames`` counts them), and holding
``buffer_count`` unreleased requests makes ``capture_request`` raise — the real camera has no buffer left to
fill and picamera2 would wait forever.

Memory layouts (manual, appendix A): ``RGB888`` is ``[B, G, R]`` and ``BGR888`` is ``[R, G, B]`` ``(H, W, 3)``;
``XRGB8888`` is ``[B, G, R, 255]`` and ``XBGR8888`` is ``[R, G, B, 255]`` ``(H, W, 4)``; ``YUV420`` is I420
``(H * 3 // 2, stride)``: the Y plane, then the U and V planes with two half-width rows per array row, the
padding columns left in (picamera2's ``make_array`` does not remove them for YUV420).

The scene: solid ``SCENE_RGB`` with a white marker rectangle at ``marker_box(n)`` (it moves every frame, so a
main image and a lores image from different frames disagree) and frame number ``n % 256`` in main's pixel
``(0, 0)``, first channel. The lores image shows the largest centred crop of main's field of view with lores'
aspect ratio, scaled to lores' size. ``CAMERAS`` (attached cameras), ``UNPLUGGED`` (captures raise) and
``BUSY`` (another process holds the camera) and ``STALLED`` (no frame arrives) simulate hardware state. ``MODEL`` is
the sensor's name in ``global_camera_info``; ``SENSOR`` (set by ``tests/edge/fake_imx500.py``) is the network an
IMX500 runs on every frame: main's RGB -> entries of that frame's request metadata.
"""

from __future__ import annotations

import concurrent.futures
import copy
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

SCENE_RGB = (200, 40, 10)
MARKER_RGB = (255, 255, 255)
FORMATS = ("RGB888", "BGR888", "XBGR8888", "XRGB8888", "YUV420")
STRIDE_ALIGN = 64
CAMERAS = 1
UNPLUGGED = False
BUSY = False
STALLED = False
MODEL = "fake_imx708"
SENSOR: Callable[[np.ndarray], dict[str, Any]] | None = None
instances: list[Picamera2] = []


def reset() -> None:
    global CAMERAS, UNPLUGGED, BUSY, STALLED, MODEL, SENSOR
    CAMERAS, UNPLUGGED, BUSY, STALLED, MODEL, SENSOR = 1, False, False, False, "fake_imx708", None
    instances.clear()


def marker_box(frame: int) -> tuple[float, float, float, float]:
    """The marker of frame ``frame`` (1-based), normalized ``ymin, xmin, ymax, xmax`` in main's field of view."""
    xmin = 0.3 + 0.05 * (frame % 4)  # stays inside any centred crop down to 1:1 of a 16:9 main
    return 0.3, xmin, 0.6, xmin + 0.15


def render_main(frame: int, size: tuple[int, int]) -> np.ndarray:
    """Main's RGB uint8 ``(height, width, 3)`` of frame ``frame`` at ``size`` ``(width, height)``."""
    width, height = size
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    rgb[:] = SCENE_RGB
    ymin, xmin, ymax, xmax = marker_box(frame)
    rgb[round(ymin * height) : round(ymax * height), round(xmin * width) : round(xmax * width)] = MARKER_RGB
    rgb[0, 0, 0] = frame % 256
    return rgb


def render_lores(main_rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Lores RGB uint8 ``(height, width, 3)``: the largest centred crop of ``main_rgb`` with ``size``'s aspect ratio,
    resized to ``size`` ``(width, height)``."""
    width, height = size
    main_height, main_width = main_rgb.shape[:2]
    scale = min(main_width / width, main_height / height)
    x0, y0 = (main_width - width * scale) / 2, (main_height - height * scale) / 2
    crop = main_rgb[round(y0) : round(y0 + height * scale), round(x0) : round(x0 + width * scale)]
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)


def to_memory(rgb: np.ndarray, fmt: str, stride: int) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` -> the array picamera2's ``make_array`` returns for a stream of format ``fmt``."""
    height, width = rgb.shape[:2]
    if fmt == "RGB888":
        return np.ascontiguousarray(rgb[:, :, ::-1])
    if fmt == "BGR888":
        return rgb.copy()
    if fmt in ("XRGB8888", "XBGR8888"):
        pixels = rgb[:, :, ::-1] if fmt == "XRGB8888" else rgb
        return np.concatenate([pixels, np.full((height, width, 1), 255, np.uint8)], axis=2)
    if fmt == "YUV420":
        padded = np.zeros((height, stride, 3), np.uint8)  # padding bytes: whatever the ISP left there
        padded[:, :width] = rgb
        return cv2.cvtColor(padded, cv2.COLOR_RGB2YUV_I420)
    raise RuntimeError("Format " + fmt + " not supported")


def _stride(fmt: str, width: int) -> int:
    if fmt == "YUV420":
        return -(-width // STRIDE_ALIGN) * STRIDE_ALIGN
    row = width * (4 if fmt.startswith("X") else 3)
    return -(-row // STRIDE_ALIGN) * STRIDE_ALIGN


class CompletedRequest:
    """Mimics ``picamera2.request.CompletedRequest``: one camera frame of every configured stream."""

    def __init__(
        self,
        picam2: Picamera2,
        frame: int,
        images: dict[str, np.ndarray],
        timestamp_ns: int,
        sensor_metadata: dict[str, Any] | None = None,
    ) -> None:
        self.picam2 = picam2
        self.frame = frame
        self.ref_count = 1
        self.config = copy.deepcopy(picam2.camera_config)
        self._images = images
        self._metadata = {"SensorTimestamp": timestamp_ns, "FrameDuration": 33333, **(sensor_metadata or {})}

    def acquire(self) -> None:
        if self.ref_count == 0:
            raise RuntimeError("CompletedRequest: acquiring lock with ref_count 0")
        self.ref_count += 1

    def release(self) -> None:
        self.ref_count -= 1
        if self.ref_count < 0:
            raise RuntimeError("CompletedRequest: lock now has negative ref_count")
        if self.ref_count == 0:
            self.picam2.held -= 1
            self.config = {}
            self._images = {}

    def make_array(self, name: str) -> np.ndarray:
        if self.config.get(name) is None:
            raise RuntimeError(f"Stream {name!r} is not defined")
        return self._images[name].copy()

    def get_metadata(self) -> dict[str, Any]:
        if self.ref_count == 0:
            raise RuntimeError("request already released")
        return dict(self._metadata)


class Picamera2:
    """Mimics ``picamera2.Picamera2``."""

    def __init__(self, camera_num: int = 0) -> None:
        if camera_num >= CAMERAS:
            raise IndexError("list index out of range")  # global_camera_info()[camera_num] with no such camera
        if BUSY:
            try:
                raise RuntimeError("Failed to acquire camera: Device or resource busy")
            except RuntimeError as exc:
                raise RuntimeError("Camera __init__ sequence did not complete.") from exc
        self.camera_num = camera_num
        self.camera_config: dict[str, Any] | None = None
        self.started = False
        self.closed = False
        self.frames = 0
        self.held = 0
        self.max_held = 0
        instances.append(self)

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        return [{"Model": MODEL, "Num": n, "Id": f"/base/axi/i2c@{n}/{MODEL}@1a"} for n in range(CAMERAS)]

    def _configuration(
        self, kind: str, main: dict | None, lores: dict | None, controls: dict | None, buffer_count: int
    ) -> dict:
        main_stream: dict[str, Any] = {"format": "XBGR8888", "size": (640, 480) if kind == "preview" else (1280, 720)}
        main_stream.update(main or {})
        main_stream["size"] = _even(main_stream["size"])
        config: dict[str, Any] = {
            "use_case": kind,
            "buffer_count": buffer_count,
            "main": main_stream,
            "lores": None,
            "controls": dict(controls or {}),
        }
        if lores is not None:
            lores_stream: dict[str, Any] = {"format": "YUV420", "size": main_stream["size"]}
            lores_stream.update(lores)
            lores_stream["size"] = _even(lores_stream["size"])
            if lores_stream["size"][0] > main_stream["size"][0] or lores_stream["size"][1] > main_stream["size"][1]:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            config["lores"] = lores_stream
        return config

    def create_preview_configuration(
        self,
        main: dict | None = None,
        lores: dict | None = None,
        raw: dict | None = None,
        controls: dict | None = None,
        buffer_count: int = 4,
        **kwargs: Any,
    ) -> dict:
        return self._configuration("preview", main, lores, controls, buffer_count)

    def create_video_configuration(
        self,
        main: dict | None = None,
        lores: dict | None = None,
        raw: dict | None = None,
        controls: dict | None = None,
        buffer_count: int = 6,
        **kwargs: Any,
    ) -> dict:
        return self._configuration("video", main, lores, controls, buffer_count)

    def configure(self, camera_config: dict) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        config = copy.deepcopy(camera_config)
        for name in ("main", "lores"):
            stream = config.get(name)
            if not stream:
                continue
            if stream["format"] not in FORMATS:
                raise RuntimeError(f"Invalid format {stream['format']} for stream {name}")
            stream["stride"] = _stride(stream["format"], stream["size"][0])
        self.camera_config = config

    def start(self) -> None:
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def capture_request(self, wait: Any = None, signal_function: Any = None, flush: Any = None) -> CompletedRequest:
        if wait is False or signal_function is not None or flush is not None:
            raise NotImplementedError("the stand-in models blocking captures only (wait=None/True/seconds)")
        if STALLED:
            if wait is None or wait is True:
                raise RuntimeError("the camera delivers no frame: picamera2 would block here forever (no wait=)")
            time.sleep(float(wait))
            raise concurrent.futures.TimeoutError()  # Job.get_result(timeout=wait) -> Future.result(timeout)
        if UNPLUGGED:
            raise RuntimeError("Camera frontend has timed out!")
        if not self.started or self.camera_config is None:
            raise RuntimeError("Camera is not running")
        if self.held >= self.camera_config["buffer_count"]:
            raise RuntimeError(
                f"all {self.held} buffers are held by unreleased requests: picamera2 would wait forever here"
            )
        self.frames += 1
        main = self.camera_config["main"]
        main_rgb = render_main(self.frames, main["size"])
        images = {"main": to_memory(main_rgb, main["format"], main["stride"])}
        lores = self.camera_config.get("lores")
        if lores:
            images["lores"] = to_memory(render_lores(main_rgb, lores["size"]), lores["format"], lores["stride"])
        self.held += 1
        self.max_held = max(self.max_held, self.held)
        sensor = SENSOR(main_rgb) if SENSOR is not None else None
        return CompletedRequest(self, self.frames, images, self.frames * 33_333_000, sensor)

    def camera_configuration(self) -> dict | None:
        return self.camera_config

    def capture_array(self, name: str = "main") -> np.ndarray:
        request = self.capture_request()
        try:
            return request.make_array(name)
        finally:
            request.release()

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.started = False
        self.closed = True


def _even(size: tuple[int, int]) -> tuple[int, int]:
    width, height = size
    return (int(width) - int(width) % 2, int(height) - int(height) % 2)
