"""Sony IMX500 (Raspberry Pi AI Camera): the detector runs on the sensor, the Pi only reads its results.

``Imx500Source`` opens picamera2's IMX500 device helper with the network (``network.rpk``, made on the Pi by
``imx500-package`` from ``convert.imx500``'s ``packerOut.zip``) *before* the camera, as picamera2 requires, then
reads each frame's network outputs from its request metadata (``IMX500.get_outputs(metadata)``) and the sensor's
own inference time (``IMX500.get_kpi_info(metadata)``: DNN and DSP milliseconds). ``Imx500Detector`` turns
them into ``Detections`` for the usual pipeline, outputs, stats and report: no interpreter on the CPU.

The network's outputs follow ``network_intrinsics.json`` (written by ``convert.imx500``): ``boxes (K, 4)``
normalized ``ymin, xmin, ymax, xmax`` in the sensor's inference field of view, ``scores (K,)``, ``classes (K,)``
0-based label indices, ``count``. Boxes go to main-stream pixels through ``IMX500.convert_inference_coords``,
which knows the sensor crop (``ScalerCrop``), so they land on the image whatever its size.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.boxes import pixels_to_normalized
from edge.detector import Detections
from edge.sources import Frame, FrameSource, SourceError, SourceUnavailable, picamera2_array_to_rgb
from edge.sources.picamera2 import capture_one, open_camera, stop_and_close

log = logging.getLogger(__name__)

INTRINSICS_FILE = "network_intrinsics.json"
OUTPUTS = ("boxes", "scores", "classes", "count")


@dataclasses.dataclass(frozen=True)
class Imx500Network:
    """What the edge needs from ``network_intrinsics.json``: labels and the order of the network's outputs."""

    labels: tuple[str, ...]
    outputs: tuple[str, ...]
    input_size: tuple[int, int]
    """``(height, width)`` of the network input."""

    @classmethod
    def load(cls, path: str | Path) -> Imx500Network:
        """Read and check ``network_intrinsics.json``; ``SourceError`` names the file and field otherwise."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SourceError(
                f"{path}: not found; it is written next to packerOut.zip by `python -m convert RUN --target imx500`"
            ) from None
        except (OSError, ValueError) as exc:
            raise SourceError(f"{path}: not readable JSON ({exc})") from None
        labels = (data.get("classes") or {}).get("labels")
        edge = data.get("edge_ssd") or {}
        if data.get("task") != "object detection":
            raise SourceError(f"{path}: field 'task' is {data.get('task')!r}; expected 'object detection'")
        if not isinstance(labels, list) or not labels:
            raise SourceError(f"{path}: field 'classes.labels' must be a non-empty list of names")
        if sorted(edge.get("outputs") or []) != sorted(OUTPUTS):
            raise SourceError(f"{path}: field 'edge_ssd.outputs' is {edge.get('outputs')!r}; expected {list(OUTPUTS)}")
        size = edge.get("input_size")
        if not (isinstance(size, list) and len(size) == 2):
            raise SourceError(f"{path}: field 'edge_ssd.input_size' must be [height, width]")
        return cls(tuple(str(label) for label in labels), tuple(edge["outputs"]), (int(size[0]), int(size[1])))


@dataclasses.dataclass
class SensorResult:
    """One frame's detections as the sensor computed them, in main-stream pixels.

    ``boxes`` ``(K, 4)`` float32 ``xmin, ymin, xmax, ymax``, ``scores`` ``(K,)`` float32, ``class_ids`` ``(K,)``
    int32; ``stage_ms``: the sensor's own timings (``invoke`` = DNN, ``sensor_dsp``), empty when the frame came
    without a KPI. ``has_outputs`` is False for frames before the network runs (firmware still loading).
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    has_outputs: bool
    stage_ms: dict[str, float] = dataclasses.field(default_factory=dict)


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32)


class Imx500Source(FrameSource):
    """The AI Camera through picamera2: main stream RGB frames, each with the sensor's detections (``Frame.sensor``).

    ``network``: the ``.rpk`` network file; ``intrinsics``: ``network_intrinsics.json`` (default: next to it).
    Only detections with a score of at least ``score_threshold`` are mapped to pixels (at most ``max_detections``).
    """

    def __init__(
        self,
        network: str | Path,
        resolution: tuple[int, int] = (640, 480),
        fps: float | None = 30.0,
        intrinsics: str | Path | None = None,
        score_threshold: float = 0.5,
        max_detections: int = 100,
        capture_timeout_s: float = 5.0,
    ) -> None:
        super().__init__(f"imx500:{network}")
        self.capture_timeout_s = capture_timeout_s  # as Picamera2Source: a stalled camera raises, it never blocks
        self.network_file = Path(network)
        self.network = Imx500Network.load(intrinsics or self.network_file.with_name(INTRINSICS_FILE))
        self.resolution = resolution
        self.fps = fps
        self.score_threshold = float(score_threshold)
        self.max_detections = int(max_detections)
        self._imx500: Any = None
        self._camera: Any = None
        self._stream: tuple[str, tuple[int, int]] = ("RGB888", tuple(resolution))

    def _open(self) -> None:
        if not self.network_file.is_file():
            raise SourceError(f"--imx500 {self.network_file}: no such network file (make it with imx500-package)")
        try:
            from picamera2 import Picamera2
            from picamera2.devices import IMX500
        except ImportError as exc:
            raise SourceError(
                "source 'imx500': picamera2 with IMX500 support is not installed (on Raspberry Pi OS: "
                "sudo apt install python3-picamera2 imx500-all, and create the venv with --system-site-packages)"
            ) from exc
        try:
            imx500 = IMX500(str(self.network_file))  # uploads the network: before the camera is opened
        except RuntimeError as exc:
            raise SourceUnavailable(f"imx500: {exc}") from exc
        width, height = imx500.get_input_size()
        if (height, width) != self.network.input_size:
            raise SourceError(
                f"{self.network_file}: network input is {width}x{height} but its intrinsics say "
                f"{self.network.input_size[1]}x{self.network.input_size[0]}: the .rpk and network_intrinsics.json "
                "come from different conversions"
            )
        imx500.show_network_fw_progress_bar()
        camera = open_camera(Picamera2, imx500.camera_num, "imx500")
        try:
            controls = {"FrameRate": float(self.fps)} if self.fps else {}
            config = camera.create_preview_configuration(
                main={"size": tuple(self.resolution), "format": "RGB888"}, controls=controls, buffer_count=12
            )
            camera.configure(config)
            camera.start()
            main = camera.camera_config["main"]
            self._stream = (main["format"], tuple(main["size"]))
        except Exception as exc:
            camera.close()
            raise SourceUnavailable(f"imx500 camera {imx500.camera_num}: cannot start ({exc})") from exc
        self._imx500, self._camera = imx500, camera

    def _read(self) -> Frame:
        array, metadata = capture_one(
            self._camera,
            self.capture_timeout_s,
            "imx500 camera",
            lambda request: (request.make_array("main"), request.get_metadata()),
        )
        timestamp = time.monotonic()
        image = picamera2_array_to_rgb(array, *self._stream)
        return Frame(image=image, timestamp=timestamp, index=0, sensor=self._sensor_result(metadata))

    def _sensor_result(self, metadata: dict) -> SensorResult:
        outputs = self._imx500.get_outputs(metadata, add_batch=True)
        kpi = self._imx500.get_kpi_info(metadata)
        stage_ms = {"invoke": float(kpi[0]), "sensor_dsp": float(kpi[1])} if kpi else {}
        if outputs is None:
            return SensorResult(*_empty(), has_outputs=False, stage_ms=stage_ms)
        named = dict(zip(self.network.outputs, outputs, strict=True))
        boxes = np.asarray(named["boxes"], np.float32).reshape(-1, 4)
        scores = np.asarray(named["scores"], np.float32).reshape(-1)
        classes = np.rint(np.asarray(named["classes"], np.float32).reshape(-1)).astype(np.int32)
        count = min(int(np.asarray(named["count"]).reshape(-1)[0]), scores.shape[0])
        keep = np.flatnonzero(
            (scores[:count] >= self.score_threshold)
            & (classes[:count] >= 0)
            & (classes[:count] < len(self.network.labels))
        )[: self.max_detections]
        pixels = np.zeros((keep.size, 4), np.float32)
        for row, index in enumerate(keep):
            x, y, w, h = self._imx500.convert_inference_coords(tuple(boxes[index]), metadata, self._camera)
            pixels[row] = (x, y, x + w, y + h)
        return SensorResult(pixels, scores[keep], classes[keep], has_outputs=True, stage_ms=stage_ms)

    def _close(self) -> None:
        camera, self._camera, self._imx500 = self._camera, None, None
        stop_and_close(camera)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "imx500",
            "name": self.name,
            "network": str(self.network_file),
            "resolution": list(self.resolution),
            "labels": list(self.network.labels),
        }


class Imx500Detector:
    """The pipeline's detector for ``Imx500Source`` frames: the work is done on the sensor.

    ``invoke`` passes the frame's ``SensorResult`` through and ``postprocess`` makes ``Detections`` of it;
    ``preprocess`` refuses frames from other sources (they carry no sensor outputs).
    """

    backend = "imx500"

    def __init__(self, network: Imx500Network, score_threshold: float = 0.5) -> None:
        self.labels = list(network.labels)
        self.input_size = network.input_size
        self.score_threshold = float(score_threshold)

    def preprocess(self, image: np.ndarray) -> Any:
        raise ValueError("Imx500Detector: frames must come from Imx500Source (the network runs on the sensor)")

    def invoke(self, sensor: SensorResult) -> SensorResult:
        if not isinstance(sensor, SensorResult):
            raise TypeError(f"Imx500Detector.invoke: expected a SensorResult, got {type(sensor).__name__}")
        return sensor

    def postprocess(self, sensor: SensorResult, frame_size: tuple[int, ...]) -> Detections:
        """``SensorResult`` (in frame pixels) -> ``Detections`` above ``score_threshold`` (normalized boxes)."""
        keep = sensor.scores >= self.score_threshold
        height, width = int(frame_size[0]), int(frame_size[1])
        boxes = np.clip(pixels_to_normalized(sensor.boxes[keep], height, width), 0.0, 1.0)
        return Detections(
            boxes,
            sensor.scores[keep],
            sensor.class_ids[keep],
            self.labels,
            (height, width),
            invoke_ms=sensor.stage_ms.get("invoke", 0.0),
        )

    def __repr__(self) -> str:
        return f"Imx500Detector(input={self.input_size}, labels={len(self.labels)})"


def open_imx500(
    network: str | Path,
    resolution: tuple[int, int],
    fps: float | None,
    score_threshold: float,
    intrinsics: str | Path | None = None,
) -> tuple[Imx500Source, Imx500Detector]:
    """The source and detector of ``edge run --imx500 NETWORK.rpk``."""
    source = Imx500Source(network, resolution, fps, intrinsics, score_threshold=score_threshold)
    return source, Imx500Detector(source.network, score_threshold)
