"""A stand-in for ``picamera2.devices`` (``IMX500``, ``NetworkIntrinsics``), as strict as the real API.

Inject with ``monkeypatch.setitem(sys.modules, "picamera2.devices", fake_imx500)`` next to ``fake_picamera2``.
Names and behaviour follow raspberrypi/picamera2 ``picamera2/devices/imx500/imx500.py`` (ee44f64):

- ``IMX500(network_file, camera_id='')`` finds the sensor (``RuntimeError('IMX500: Requested camera dev-node not
  found')`` unless ``fake_picamera2.MODEL == "imx500"``), uploads the network (``RuntimeError('Firmware file ...
  does not exist.')``) and must come **before** the camera is configured: the stand-in refuses a started camera.
  ``camera_num``, ``network_intrinsics`` (None: the network file carries none), ``get_input_size() -> (w, h)``,
  ``show_network_fw_progress_bar()``, ``get_kpi_info(metadata) -> (dnn_ms, dsp_ms)``.
- ``get_outputs(metadata, add_batch=False)``: None when the frame has no ``CnnOutputTensor`` (the first
  ``FIRMWARE_FRAMES`` frames, while the firmware loads); else the flat float32 tensor cut by the shapes in
  ``CnnOutputTensorInfo`` (the same ctypes struct libcamera exports) and reshaped in Fortran order.
- ``convert_inference_coords(coords, metadata, picam2, stream='main')``: normalized ``y0, x0, y1, x1`` in the
  inference field of view -> ``(x, y, w, h)`` int pixels of ``stream``; needs the frame's ``ScalerCrop``.

The network: the stand-in's "network file" is a raw-output edge ``.tflite`` of the same detector (what
``convert.converter`` writes); on every frame it runs on main's RGB (the sensor sees the whole field of view)
and its outputs are decoded and NMS'ed by ``edge.postprocess.decode_and_nms`` with ``SENSOR_SCORE_THRESHOLD``
and ``MAX_DETECTIONS`` -- what edge-mdt-cl's ``SSDPostProcess`` does on the sensor (``tests/convert/
test_imx500.py`` ties its decoding to ``decode_boxes``). Outputs come in the IMX500 order ``boxes (K, 4)``,
``scores (K,)``, ``classes (K,)``, ``count (1,)``, padded to ``MAX_DETECTIONS``. KPI: ``DNN_US``/``DSP_US``.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

import numpy as np

from tests.edge import fake_picamera2

FIRMWARE_FRAMES = 2
SENSOR_SCORE_THRESHOLD = 0.001
MAX_DETECTIONS = 100
IOU_THRESHOLD = 0.5
DNN_US, DSP_US = 7300, 1200
FULL_SENSOR = (4056, 3040)
MAX_NUM_TENSORS = 16
MAX_NUM_DIMENSIONS = 16
NETWORK_NAME_LEN = 64
instances: list[IMX500] = []


class OutputTensorInfo(ctypes.LittleEndianStructure):
    _fields_ = [
        ("tensor_data_num", ctypes.c_uint32),
        ("num_dimensions", ctypes.c_uint32),
        ("size", ctypes.c_uint16 * MAX_NUM_DIMENSIONS),
    ]


class CnnOutputTensorInfoExported(ctypes.LittleEndianStructure):
    _fields_ = [
        ("network_name", ctypes.c_char * NETWORK_NAME_LEN),
        ("num_tensors", ctypes.c_uint32),
        ("info", OutputTensorInfo * MAX_NUM_TENSORS),
    ]


def tensor_info(shapes: list[tuple[int, ...]]) -> bytes:
    info = CnnOutputTensorInfoExported(network_name=b"fake_ssd", num_tensors=len(shapes))
    for slot, shape in zip(info.info, shapes, strict=False):
        slot.tensor_data_num = int(np.prod(shape))
        slot.num_dimensions = len(shape)
        for i, size in enumerate(shape):
            slot.size[i] = size
    return bytes(info)


class NetworkIntrinsics:
    """Only what a network file without intrinsics gives: ``IMX500.network_intrinsics`` is None then."""


class IMX500:
    def __init__(self, network_file: str, camera_id: str = "") -> None:
        if fake_picamera2.MODEL != "imx500":
            raise RuntimeError("IMX500: Requested camera dev-node not found")
        if any(camera.started for camera in fake_picamera2.instances):
            raise RuntimeError("IMX500 stand-in: the network must be uploaded before Picamera2 is configured")
        if not os.path.isfile(os.path.abspath(network_file)):
            raise RuntimeError(f"Firmware file {os.path.abspath(network_file)} does not exist.")
        from edge.detector import Detector

        self._detector = Detector(network_file, score_threshold=SENSOR_SCORE_THRESHOLD)
        self.progress_bars = 0
        self.frames = 0
        self.camera_num = 0
        self.network_intrinsics = None
        self.config = {"network_file": network_file}
        fake_picamera2.SENSOR = self._run
        instances.append(self)

    def get_input_size(self) -> tuple[int, int]:
        height, width = self._detector.input_size
        return width, height

    def show_network_fw_progress_bar(self) -> None:
        self.progress_bars += 1

    def _run(self, main_rgb: np.ndarray) -> dict[str, Any]:
        """The sensor's work on one frame -> its metadata entries (none while the firmware loads)."""
        from edge.postprocess import decode_and_nms

        self.frames += 1
        metadata: dict[str, Any] = {"ScalerCrop": (0, 0, *FULL_SENSOR)}
        if self.frames <= FIRMWARE_FRAMES:
            return metadata
        outputs = self._detector.invoke(self._detector.preprocess(main_rgb))
        boxes, scores, classes = decode_and_nms(
            outputs["box_deltas"][0],
            outputs["class_scores"][0],
            self._detector.anchors,
            SENSOR_SCORE_THRESHOLD,
            IOU_THRESHOLD,
            MAX_DETECTIONS,
            self._detector.metadata.variances,
        )
        count = len(scores)
        padded = [np.zeros((MAX_DETECTIONS, 4), np.float32), np.zeros(MAX_DETECTIONS, np.float32)]
        padded[0][:count], padded[1][:count] = boxes, scores
        labels = np.zeros(MAX_DETECTIONS, np.float32)
        labels[:count] = classes
        tensors = [padded[0], padded[1], labels, np.array([count], np.float32)]
        metadata["CnnOutputTensor"] = np.concatenate([t.flatten(order="F") for t in tensors]).tolist()
        metadata["CnnOutputTensorInfo"] = tensor_info([t.shape for t in tensors])
        metadata["CnnKpiInfo"] = [DNN_US, DSP_US]
        return metadata

    def get_outputs(self, metadata: dict, add_batch: bool = False) -> list[np.ndarray] | None:
        if not isinstance(metadata, dict):
            raise TypeError(f"get_outputs takes the request's metadata dict, got {type(metadata).__name__}")
        output_tensor = metadata.get("CnnOutputTensor")
        if not output_tensor:
            return None
        flat = np.fromiter(output_tensor, dtype=np.float32)
        info = CnnOutputTensorInfoExported()
        ctypes.memmove(ctypes.addressof(info), bytes(metadata["CnnOutputTensorInfo"]), ctypes.sizeof(info))
        outputs, offset = [], 0
        for slot in info.info[: info.num_tensors]:
            shape = list(slot.size)[: slot.num_dimensions]
            size = int(np.prod(shape))
            tensor = flat[offset : offset + size].reshape(shape, order="F")
            outputs.append(np.expand_dims(tensor, 0) if add_batch else tensor)
            offset += size
        return outputs

    @staticmethod
    def get_kpi_info(metadata: dict) -> tuple[float, float] | None:
        kpi = metadata.get("CnnKpiInfo")
        if kpi is None:
            return None
        return kpi[0] / 1000, kpi[1] / 1000

    def convert_inference_coords(self, coords: tuple, metadata: dict, picam2: Any, stream: str = "main") -> tuple:
        width, height = picam2.camera_configuration()[stream]["size"]
        crop = metadata["ScalerCrop"]
        if tuple(crop) != (0, 0, *FULL_SENSOR):
            raise NotImplementedError("the stand-in maps boxes for the full-sensor crop only")
        y0, x0, y1, x1 = (float(c) for c in coords)
        full_w, full_h = FULL_SENSOR
        # as picamera2: to full-sensor int pixels, then scaled to the stream
        sx, sy, sw, sh = (
            int(v) for v in np.maximum([x0 * full_w, y0 * full_h, (x1 - x0) * full_w, (y1 - y0) * full_h], 0)
        )
        return (sx * width // full_w, sy * height // full_h, sw * width // full_w, sh * height // full_h)
