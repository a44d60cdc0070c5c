"""Representative dataset for full-integer quantization: real training images, runtime preprocessing.

Images go through ``train.evaluate.load_image`` — read, bilinear resize to the model input size,
BGR -> RGB, uint8 — the same preprocessing the evaluation and the edge runtime apply, so the
calibrated activation ranges are the ones the model sees on the device.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from train.evaluate import load_image

log = logging.getLogger(__name__)

DEFAULT_CALIBRATION_IMAGES = 300


class CalibrationError(ValueError):
    """The calibration set is missing, empty or unreadable."""


def calibration_paths(
    data: str | Path, num_images: int = DEFAULT_CALIBRATION_IMAGES, split: str = "train"
) -> list[str]:
    """Up to ``num_images`` image paths of ``split`` of the dataset at ``data`` (evenly spread over the split).

    Raises ``CalibrationError`` when ``data`` is missing or the split has no images.
    """
    from train.datasets import load_dataset  # keeps `import convert.calibration` light

    if num_images < 1:
        raise CalibrationError(f"--calibration-images must be >= 1, got {num_images}")
    data = Path(data)
    if not data.exists():
        raise CalibrationError(
            f"calibration data {data} does not exist; expected a dataset folder (Pascal VOC or COCO, see --data) "
            "whose training images are used to calibrate int8"
        )
    try:
        dataset = load_dataset(data, split, skip_bad=True)
    except (FileNotFoundError, ValueError) as exc:
        raise CalibrationError(f"calibration data {data}: {exc}") from None
    paths = [record.image_path for record in dataset.records]
    if not paths:
        raise CalibrationError(
            f"calibration data {data}: split '{split}' has no images; int8 needs at least one training image"
        )
    if len(paths) > num_images:
        picks = np.linspace(0, len(paths) - 1, num_images).round().astype(int)
        paths = [paths[i] for i in picks]
    return [str(p) for p in paths]


class CalibrationImages:
    """Re-iterable uint8 RGB ``(H, W, 3)`` images at ``input_size`` ``(height, width)`` for ``convert(...)``.

    Unreadable files are skipped with a warning; a set where nothing can be read raises ``CalibrationError``.
    """

    def __init__(self, paths: Sequence[str | Path], input_size: tuple[int, int], progress: bool = True) -> None:
        if not paths:
            raise CalibrationError("calibration set is empty: expected at least one image path")
        self.paths = [str(p) for p in paths]
        self.input_size = tuple(input_size)
        self.progress = progress

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[np.ndarray]:
        read = 0
        for path in tqdm(self.paths, desc="calibrate", unit="img", disable=not self.progress, leave=False):
            image = load_image(path, self.input_size)
            if image is None:
                log.warning("calibration: cannot read image %s, skipped", path)
                continue
            read += 1
            yield image
        if read == 0:
            raise CalibrationError(
                f"calibration set: none of the {len(self.paths)} images could be read (first: {self.paths[0]})"
            )


def calibration_images(
    data: str | Path,
    input_size: tuple[int, int],
    num_images: int = DEFAULT_CALIBRATION_IMAGES,
    split: str = "train",
    progress: bool = True,
) -> CalibrationImages:
    """Calibration images from the ``split`` of the dataset at ``data``, ready for ``convert(calibration_images=...)``."""
    return CalibrationImages(calibration_paths(data, num_images, split), input_size, progress)
