"""A stand-in for the ``picamera2`` package (which only installs on a Raspberry Pi), following its real API.

Inject with ``monkeypatch.setitem(sys.modules, "picamera2", fake_picamera2)``. It mimics what matters to
``edge.sources.Picamera2Source``: ``Picamera2(camera_num)``, ``global_camera_info()``,
``create_preview_configuration`` / ``create_video_configuration(main=, lores=, controls=)``, ``configure``,
``start``, ``capture_array(name)``, ``stop``, ``close`` — including the memory layout: ``"RGB888"`` arrays
are **BGR** ``(H, W, 3)``, ``"YUV420"`` arrays are I420 ``(H * 3 // 2, W)``.

The scene is a solid ``SCENE_RGB`` colour with a frame counter in pixel ``(0, 0)``'s first channel.
``CAMERAS`` (number of attached cameras) and ``UNPLUGGED`` (captures raise) simulate hardware state.
"""

from __future__ import annotations

import copy
from typing import Any

import cv2
import numpy as np

SCENE_RGB = (200, 40, 10)
CAMERAS = 1
UNPLUGGED = False
instances: list[Picamera2] = []


def reset() -> None:
    global CAMERAS, UNPLUGGED
    CAMERAS, UNPLUGGED = 1, False
    instances.clear()


class Picamera2:
    """Mimics ``picamera2.Picamera2``."""

    def __init__(self, camera_num: int = 0) -> None:
        if camera_num >= CAMERAS:
            raise IndexError("list index out of range")  # what picamera2 raises with no camera attached
        self.camera_num = camera_num
        self.camera_config: dict[str, Any] | None = None
        self.started = False
        self.closed = False
        self.frames = 0
        instances.append(self)

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        return [{"Model": "fake_imx708", "Num": n} for n in range(CAMERAS)]

    def _configuration(self, kind: str, main: dict | None, lores: dict | None, controls: dict | None) -> dict:
        main_stream = {"format": "XBGR8888", "size": (640, 480) if kind == "preview" else (1280, 720)}
        main_stream.update(main or {})
        config: dict[str, Any] = {
            "use_case": kind,
            "main": main_stream,
            "lores": None,
            "controls": dict(controls or {}),
        }
        if lores is not None:
            lores_stream = {"format": "YUV420", "size": (320, 240)}
            lores_stream.update(lores)
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
        **kwargs: Any,
    ) -> dict:
        return self._configuration("preview", main, lores, controls)

    def create_video_configuration(
        self,
        main: dict | None = None,
        lores: dict | None = None,
        raw: dict | None = None,
        controls: dict | None = None,
        **kwargs: Any,
    ) -> dict:
        return self._configuration("video", main, lores, controls)

    def configure(self, camera_config: dict) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        for name in ("main", "lores"):
            stream = camera_config.get(name)
            if stream and stream["format"] not in ("RGB888", "BGR888", "XBGR8888", "XRGB8888", "YUV420"):
                raise RuntimeError(f"Invalid format {stream['format']} for stream {name}")
        self.camera_config = copy.deepcopy(camera_config)

    def start(self) -> None:
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def capture_array(self, name: str = "main") -> np.ndarray:
        if UNPLUGGED:
            raise RuntimeError("Camera frontend has timed out!")
        if not self.started or self.camera_config is None:
            raise RuntimeError("Camera is not running")
        stream = self.camera_config.get(name)
        if stream is None:
            raise RuntimeError(f"Stream {name!r} is not configured")
        width, height = stream["size"]
        rgb = np.empty((height, width, 3), dtype=np.uint8)
        rgb[:] = SCENE_RGB
        if name == "main":
            self.frames += 1
            rgb[0, 0, 0] = self.frames % 256
        fmt = stream["format"]
        if fmt == "RGB888":  # libcamera naming: stored B, G, R
            return np.ascontiguousarray(rgb[:, :, ::-1])
        if fmt == "BGR888":
            return rgb
        if fmt in ("XBGR8888", "XRGB8888"):
            pixels = rgb[:, :, ::-1] if fmt == "XRGB8888" else rgb
            return np.concatenate([pixels, np.full((height, width, 1), 255, np.uint8)], axis=2)
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.started = False
        self.closed = True
