"""Frame sources: synthetic Pi-camera emulator, picamera2, OpenCV device / video file / stream URL, image folder.

Every source yields ``Frame`` objects whose ``image`` is RGB uint8 ``(H, W, 3)`` (BGR from OpenCV and
picamera2 is converted here, at the boundary). ``read()`` returns ``None`` when a finite stream ends and
raises ``SourceUnavailable`` when a live device disappears; ``ReconnectingSource`` turns the latter into
retries with exponential backoff. ``open_source`` is the one place where a source kind is chosen.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import EdgeError
from edge.image import convert_to_rgb

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mjpeg", ".mjpg", ".h264")
URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://")
SOURCE_KINDS = (
    "synthetic",
    "picamera2",
    "<device index 0, 1, ...>",
    "<video file>",
    "<rtsp/http URL>",
    "<image folder>",
)


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
    back to ``image`` with ``edge.boxes.lores_to_main_pixels``. ``sensor``: outputs a camera-side accelerator
    already computed for this frame (``edge.imx500.SensorResult``); the pipeline skips preprocessing for it.
    """

    image: np.ndarray
    timestamp: float
    index: int
    ground_truth: GroundTruth | None = None
    inference_image: np.ndarray | None = None
    sensor: Any = None


class FrameSource:
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

    def _open(self) -> None:
        raise NotImplementedError

    def _read(self) -> np.ndarray | Frame | None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


class OpenCVSource(FrameSource):
    """``cv2.VideoCapture`` on a device index, a video file or a stream URL (BGR converted to RGB).

    ``resolution`` ``(width, height)`` and ``fps`` are requested from devices only. With ``loop`` a file
    restarts from its first frame at its end.
    """

    def __init__(
        self,
        target: int | str,
        resolution: tuple[int, int] | None = None,
        fps: float | None = None,
        loop: bool = False,
    ) -> None:
        super().__init__(str(target))
        self.target = target
        self.is_device = isinstance(target, int)
        self.is_url = isinstance(target, str) and target.lower().startswith(URL_SCHEMES)
        self.live = self.is_device or self.is_url
        self.resolution = resolution
        self.fps = fps
        self.loop = loop
        self._capture: Any = None

    def _open(self) -> None:
        import cv2

        if not self.live and not Path(self.target).is_file():
            raise SourceError(f"video file {self.target!r}: not found")
        capture = cv2.VideoCapture(self.target)
        if not capture.isOpened():
            capture.release()
            what = "camera device" if self.is_device else "stream" if self.is_url else "video file"
            if self.live:
                raise SourceUnavailable(f"{what} {self.target!r}: cannot be opened")
            raise SourceError(f"{what} {self.target!r}: cannot be opened (unsupported codec or not a video)")
        if self.is_device and self.resolution is not None:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.resolution[0])
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.resolution[1])
        if self.is_device and self.fps:
            capture.set(cv2.CAP_PROP_FPS, self.fps)
        self._capture = capture

    def _read(self) -> np.ndarray | None:
        import cv2

        ok, image = self._capture.read()
        if not ok and self.loop and not self.live:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._capture.read()
        if not ok or image is None:
            if self.live:
                raise SourceUnavailable(f"{'camera device' if self.is_device else 'stream'} {self.target!r}: no frame")
            return None
        return convert_to_rgb(image, "BGR")

    def _close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def describe(self) -> dict[str, Any]:
        kind = "device" if self.is_device else "url" if self.is_url else "video"
        return {"kind": kind, "name": self.name, "loop": self.loop}


class ImageFolderSource(FrameSource):
    """Images of a folder in name order (suffixes ``IMAGE_SUFFIXES``); unreadable files are skipped with a warning."""

    live = False

    def __init__(self, folder: str | Path, loop: bool = False) -> None:
        super().__init__(str(folder))
        self.folder = Path(folder)
        self.loop = loop
        self._paths: list[Path] = []
        self._position = 0

    def _open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"image folder {str(self.folder)!r}: not a directory")
        self._paths = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._paths:
            raise SourceError(f"image folder {str(self.folder)!r}: no images ({', '.join(IMAGE_SUFFIXES)})")
        self._position = 0

    def _read(self) -> np.ndarray | None:
        import cv2

        skipped = 0
        while skipped <= len(self._paths):
            if self._position >= len(self._paths):
                if not self.loop:
                    return None
                self._position = 0
            path = self._paths[self._position]
            self._position += 1
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if image is not None:
                if image.dtype == np.uint16:
                    image = (image >> 8).astype(np.uint8)
                return convert_to_rgb(image, "BGR")
            logger.warning("image folder %s: cannot read %s, skipping", self.folder, path.name)
            skipped += 1
        raise SourceError(f"image folder {str(self.folder)!r}: none of the images can be read")

    def _close(self) -> None:
        """Nothing to release; the name list stays so that ``describe()`` after the run counts the images."""

    def describe(self) -> dict[str, Any]:
        return {"kind": "folder", "name": self.name, "images": len(self._paths), "loop": self.loop}


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
        try:
            camera = Picamera2(self.camera_num)
        except (IndexError, RuntimeError, OSError) as exc:
            if _camera_busy(exc):
                raise SourceError(
                    f"picamera2 camera {self.camera_num}: in use by another process, most likely the deployed "
                    f"camera service {CAMERA_SERVICE}.service (stop it with: sudo systemctl stop {CAMERA_SERVICE})"
                ) from exc
            raise SourceUnavailable(f"picamera2 camera {self.camera_num}: not available ({exc})") from exc
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
        try:
            request = self._camera.capture_request(wait=self.capture_timeout_s)
            try:
                arrays = {name: request.make_array(name) for name in names}
            finally:
                request.release()
        except TimeoutError as exc:  # concurrent.futures.TimeoutError is TimeoutError since Python 3.11
            raise SourceUnavailable(
                f"picamera2 camera {self.camera_num}: no frame within {self.capture_timeout_s:g} s"
            ) from exc
        except Exception as exc:
            raise SourceUnavailable(f"picamera2 camera {self.camera_num}: capture failed ({exc})") from exc
        timestamp = time.monotonic()
        images = {name: picamera2_array_to_rgb(arrays[name], *self._streams[name]) for name in names}
        return Frame(image=images["main"], timestamp=timestamp, index=0, inference_image=images.get("lores"))

    def _close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            try:
                camera.stop()
            finally:
                camera.close()

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "picamera2",
            "name": self.name,
            "resolution": list(self.resolution),
            "lores": self.lores,
            "lores_format": self.lores_format if self.lores is not None else None,
        }


class SyntheticSource(FrameSource):
    """Desktop emulator of a Pi camera: shapes of ``edge.shapes.CLASS_NAMES`` moving, scaling, rotating and
    occluding each other over a background that changes every ``scene_frames`` frames, with ground truth.

    ``resolution`` ``(width, height)``; ``paced`` frames arrive every ``1 / fps`` seconds like a real camera
    (a slow reader misses frames, it does not slow the clock); unpaced frames come as fast as they render
    (benchmarks). ``num_frames`` ends the stream (None = endless). Deterministic for a given ``seed``.
    ``prerender`` > 0 renders that many frames at ``open()`` and cycles through them, so a benchmark
    measures the pipeline rather than the scene renderer.
    """

    def __init__(
        self,
        resolution: tuple[int, int] = (640, 480),
        fps: float = 30.0,
        paced: bool = True,
        seed: int = 0,
        num_frames: int | None = None,
        scene_frames: int = 150,
        max_objects: int = 5,
        prerender: int = 0,
    ) -> None:
        super().__init__("synthetic")
        if fps <= 0:
            raise SourceError(f"synthetic source fps: expected > 0, got {fps}")
        self.width, self.height = resolution
        self.fps = fps
        self.paced = paced
        self.live = paced
        self.seed = seed
        self.num_frames = num_frames
        self.scene_frames = scene_frames
        self.max_objects = max_objects
        self._rng = np.random.default_rng(seed)
        self._produced = 0
        self._start = 0.0
        self._background: np.ndarray | None = None
        self._objects: list[Any] = []
        self._motion = np.zeros((0, 4), dtype=np.float64)
        self.prerender = prerender
        self._cache: list[tuple[np.ndarray, GroundTruth]] = []

    def _open(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._background = None
        self._produced = 0
        self._cache = []
        for _ in range(self.prerender):
            frame = self._render()
            self._cache.append((frame.image, frame.ground_truth))
        self._produced = 0
        self._start = time.monotonic()

    def _new_scene(self) -> None:
        from edge import shapes

        self._background = shapes.random_background(self._rng, self.height, self.width)
        self._objects = shapes.random_objects(
            self._rng,
            self.height,
            self.width,
            max_objects=self.max_objects,
            min_size_frac=0.15,
            max_size_frac=0.6,
            background=self._background,
            truncation_prob=0.1,
        )
        speed = 0.25 * min(self.width, self.height)  # pixels per second
        count = len(self._objects)
        self._motion = np.stack(
            [
                self._rng.uniform(-speed, speed, count),  # vx
                self._rng.uniform(-speed, speed, count),  # vy
                self._rng.uniform(-0.35, 0.35, count),  # relative size change per second
                self._rng.uniform(-60, 60, count),  # degrees per second
            ],
            axis=-1,
        )

    def _step(self, dt: float) -> None:
        short = min(self.width, self.height)
        moved = []
        for k, obj in enumerate(self._objects):
            vx, vy, growth, spin = self._motion[k]
            size = float(np.clip(obj.size * (1 + growth * dt), 0.1 * short, 0.7 * short))
            if size in (0.1 * short, 0.7 * short):
                self._motion[k, 2] = -growth
            cx, cy = obj.center_x + vx * dt, obj.center_y + vy * dt
            if not 0 <= cx <= self.width:
                self._motion[k, 0] = -vx
                cx = float(np.clip(cx, 0, self.width))
            if not 0 <= cy <= self.height:
                self._motion[k, 1] = -vy
                cy = float(np.clip(cy, 0, self.height))
            moved.append(dataclasses.replace(obj, center_x=cx, center_y=cy, size=size, angle=obj.angle + spin * dt))
        self._objects = moved

    def _read(self) -> Frame | None:
        if self.num_frames is not None and self._produced >= self.num_frames:
            return None
        if self.paced:
            deadline = self._start + self._produced / self.fps
            now = time.monotonic()
            if deadline > now:
                time.sleep(deadline - now)
            elif now - deadline > 1.0 / self.fps:
                self._produced = int((now - self._start) * self.fps)  # a real camera does not queue missed frames
        if self._cache:
            image, truth = self._cache[self._produced % len(self._cache)]
            self._produced += 1
            return Frame(image=image, timestamp=time.monotonic(), index=0, ground_truth=truth)
        return self._render()

    def _render(self) -> Frame:
        from edge import shapes

        if self._produced % self.scene_frames == 0 or self._background is None:
            self._new_scene()
        else:
            self._step(1.0 / self.fps)
        self._produced += 1
        scene = shapes.render_scene(self._background, self._objects)
        return Frame(
            image=scene.image,
            timestamp=time.monotonic(),
            index=0,
            ground_truth=GroundTruth(boxes=scene.boxes, class_ids=scene.class_ids, difficult=scene.difficult),
        )

    def _close(self) -> None:
        self._background = None
        self._cache = []

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "synthetic",
            "name": self.name,
            "resolution": [self.width, self.height],
            "fps": self.fps,
            "paced": self.paced,
            "seed": self.seed,
        }


class ReconnectingSource(FrameSource):
    """Wraps a live source: on ``SourceUnavailable`` it closes, logs a message naming the source, waits with
    exponential backoff (``initial_backoff_s`` doubling up to ``max_backoff_s``) and reopens until it works
    again or ``max_attempts`` (None = forever) or ``stop`` is set."""

    def __init__(
        self,
        source: FrameSource,
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        max_attempts: int | None = None,
        stop: threading.Event | None = None,
        sleep: Callable[[float], Any] | None = None,
    ) -> None:
        super().__init__(source.name)
        self.source = source
        self.live = source.live
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_attempts = max_attempts
        self.stop = stop if stop is not None else threading.Event()
        self._sleep = sleep if sleep is not None else self.stop.wait
        self.reconnects = 0
        self.errors = 0

    def _open(self) -> None:
        try:
            self.source.open()
        except SourceUnavailable as exc:
            self._recover(exc)

    def _read(self) -> Frame | None:
        while not self.stop.is_set():
            try:
                return self.source.read()
            except SourceUnavailable as exc:
                self._recover(exc)
        return None

    def _recover(self, error: Exception) -> None:
        self.errors += 1
        self.last_error = str(error)
        self.source.close()
        delay = self.initial_backoff_s
        attempt = 0
        while not self.stop.is_set():
            attempt += 1
            if self.max_attempts is not None and attempt > self.max_attempts:
                raise SourceUnavailable(f"source {self.name!r}: gave up after {self.max_attempts} attempts ({error})")
            logger.warning("source %r unavailable (%s); retry %d in %.1f s", self.name, error, attempt, delay)
            self._sleep(delay)
            if self.stop.is_set():
                return
            try:
                self.source.open()
            except SourceUnavailable as exc:
                error = exc
                self.last_error = str(exc)
                delay = min(delay * 2, self.max_backoff_s)
                continue
            self.reconnects += 1
            logger.warning("source %r is back after %d attempt(s)", self.name, attempt)
            return

    def _close(self) -> None:
        self.source.close()

    def describe(self) -> dict[str, Any]:
        return {**self.source.describe(), "reconnects": self.reconnects, "errors": self.errors}


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
