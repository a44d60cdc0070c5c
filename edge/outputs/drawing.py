"""Drawing detections on a frame: boxes, ``label score`` tags and the FPS overlay (OpenCV, loaded on first use)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge.image import swap_red_blue


def _label(labels: Sequence[str], class_id: int) -> str:
    return labels[class_id] if 0 <= class_id < len(labels) else str(class_id)


def _color(class_id: int) -> tuple[int, int, int]:
    hue = (class_id * 47) % 180
    import cv2

    hsv = np.array([[[hue, 220, 255]]], dtype=np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def draw_detections(
    image: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    labels: Sequence[str],
    fps: float | None = None,
) -> np.ndarray:
    """Draw pixel ``xmin, ymin, xmax, ymax`` ``boxes`` with ``label score`` tags and an FPS overlay.

    ``image`` is RGB uint8 ``(H, W, 3)`` (not modified); returns a new BGR uint8 image (what OpenCV writers want).
    """
    import cv2

    canvas = swap_red_blue(image)
    height, width = canvas.shape[:2]
    thickness = max(1, round(min(height, width) / 320))
    scale = max(0.4, min(height, width) / 800)
    for box, score, class_id in zip(np.asarray(boxes), np.asarray(scores), np.asarray(class_ids), strict=True):
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        x0, x1 = np.clip([x0, x1], 0, width - 1)
        y0, y1 = np.clip([y0, y1], 0, height - 1)
        color = _color(int(class_id))
        cv2.rectangle(canvas, (int(x0), int(y0)), (int(x1), int(y1)), color, thickness)
        text = f"{_label(labels, int(class_id))} {float(score):.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = int(y0) - 2 if y0 - th - base - 2 >= 0 else int(y0) + th + base + 2
        cv2.rectangle(canvas, (int(x0), ty - th - base), (int(x0) + tw + 2, ty + 1), color, -1)
        cv2.putText(
            canvas, text, (int(x0) + 1, ty - base + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA
        )
    if fps is not None:
        text = f"{fps:.1f} FPS"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.rectangle(canvas, (0, 0), (tw + 8, th + base + 8), (0, 0, 0), -1)
        cv2.putText(canvas, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas
