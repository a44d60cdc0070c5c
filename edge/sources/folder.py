"""``ImageFolderSource``: the images of a folder, in name order."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge.image import convert_to_rgb
from edge.sources.base import FrameSource, SourceError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


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
