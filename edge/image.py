"""The edge's image preprocessing, in one place: colour order, frame checks and resizing (NumPy in, NumPy out;
OpenCV when installed). Evaluation and int8 calibration read images through these too
(``train.evaluate.load_image``), so they see the pixels a camera frame gives the runtime; training's TensorFlow
pipeline uses the same bilinear, half-pixel-centre resize (``train.augment.resize_window``).

Images are uint8 ``(H, W, C)`` arrays. OpenCV's colour conversion is used when it can be imported: it
releases the GIL and is about 70x faster than NumPy's reversed-stride copy (0.024 vs 1.7 ms for a
640x480 frame, ``scripts/bench_pipeline.py``'s host), which was most of the capture thread's time.
"""

from __future__ import annotations

import numpy as np

try:
    import cv2
except ImportError:  # pragma: no cover - OpenCV is in the runtime requirements; NumPy stays the fallback
    cv2 = None


def set_opencv_threads(count: int | None) -> int | None:
    """Set OpenCV's worker pool to ``count`` threads (process-wide); returns the previous count to restore.
    None (or OpenCV not installed) changes nothing and returns None.

    The edge loop already runs capture, the interpreter and postprocessing in their own threads. OpenCV's pool
    would split each colour conversion or resize (tens of microseconds on a 640x480 frame) across the cores and
    then busy-wait for more work, taking CPU time from the interpreter's core (``scripts/bench_pipeline.py``).
    """
    if cv2 is None or count is None:
        return None
    previous = cv2.getNumThreads()
    cv2.setNumThreads(count)
    return previous


def swap_red_blue(image: np.ndarray) -> np.ndarray:
    """BGR -> RGB (or RGB -> BGR) of a uint8 ``(H, W, 3)`` image; returns a new contiguous array."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"swap_red_blue: expected an (H, W, 3) image, got shape {image.shape}")
    if cv2 is not None and image.dtype == np.uint8:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(image[:, :, ::-1])


def convert_to_rgb(image: np.ndarray, order: str = "BGR") -> np.ndarray:
    """Any 2-D gray, ``(H, W, 1)``, 3-channel (``order`` "BGR"/"RGB") or 4-channel (BGRA/RGBA) uint8 image
    -> contiguous RGB uint8 ``(H, W, 3)``. Lenient, for what devices and files deliver: non-uint8 input is clipped
    to [0, 255]."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"frame must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {image.shape}")
    if image.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(image, 3, axis=2))
    image = image[:, :, :3]
    if order == "BGR":
        return swap_red_blue(image)
    if order != "RGB":
        raise ValueError(f"channel order must be 'BGR' or 'RGB', got {order!r}")
    return np.ascontiguousarray(image)


def frame_as_rgb(frame: np.ndarray) -> np.ndarray:
    """A caller's RGB frame -> ``(H, W, 3)`` uint8 RGB (a view when possible); strict: refuses non-uint8.

    For frames handed to ``edge.Detector`` (already RGB): nothing is converted but gray and alpha.

    Accepts uint8 ``(H, W)`` / ``(H, W, 1)`` grayscale, ``(H, W, 3)`` RGB and ``(H, W, 4)`` RGBA
    (alpha dropped), contiguous or not. Raises ``ValueError`` naming what was expected otherwise.
    """
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f"frame: expected dtype uint8 (RGB pixels 0..255), got {frame.dtype}")
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.ndim != 3 or frame.shape[2] not in (1, 3, 4) or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"frame: expected shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {frame.shape}")
    if frame.shape[2] == 1:
        return np.repeat(frame, 3, axis=2)
    return frame[:, :, :3]


def resize_rgb(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a uint8 ``(H, W, 3)`` frame to ``(height, width, 3)`` uint8 (half-pixel centers)."""
    if frame.shape[:2] == (height, width):
        return np.ascontiguousarray(frame)
    if cv2 is not None:
        return cv2.resize(np.ascontiguousarray(frame), (width, height), interpolation=cv2.INTER_LINEAR)
    src_h, src_w = frame.shape[:2]
    y = np.clip((np.arange(height) + 0.5) * src_h / height - 0.5, 0, src_h - 1)
    x = np.clip((np.arange(width) + 0.5) * src_w / width - 0.5, 0, src_w - 1)
    y0, x0 = y.astype(np.int64), x.astype(np.int64)
    y1, x1 = np.minimum(y0 + 1, src_h - 1), np.minimum(x0 + 1, src_w - 1)
    wy, wx = (y - y0)[:, None, None], (x - x0)[None, :, None]
    f = frame.astype(np.float32)
    top = f[y0][:, x0] * (1 - wx) + f[y0][:, x1] * wx
    bottom = f[y1][:, x0] * (1 - wx) + f[y1][:, x1] * wx
    return np.clip(top * (1 - wy) + bottom * wy + 0.5, 0, 255).astype(np.uint8)
