"""``SyntheticSource``: a paced desktop emulator of a Pi camera filming ``edge.synthetic_scene.MovingScene``s."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.sources.base import Frame, FrameSource, GroundTruth, SourceError

if TYPE_CHECKING:
    from edge.synthetic_scene import MovingScene


class SyntheticSource(FrameSource):
    """Desktop emulator of a Pi camera: shapes of ``edge.synthetic_scene.CLASS_NAMES`` moving, scaling, rotating and
    occluding each other over a background that changes every ``scene_frames`` frames, with ground truth.

    ``resolution`` ``(width, height)``; ``paced`` frames arrive every ``1 / fps`` seconds like a real camera
    (a slow reader misses frames, it does not slow the clock); unpaced frames come as fast as they render
    (benchmarks). ``num_frames`` ends the stream (None = endless). Deterministic for a given ``seed``.
    ``prerender`` > 0 renders that many frames at ``open()`` and cycles through them, so a benchmark
    measures the pipeline rather than the scene renderer. The motion itself is ``MovingScene``'s; this class
    only paces it and adapts it to ``FrameSource``.
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
        self._scene: MovingScene | None = None
        self.prerender = prerender
        self._cache: list[tuple[np.ndarray, GroundTruth]] = []

    def _open(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._scene = None
        self._produced = 0
        self._cache = []
        for _ in range(self.prerender):
            frame = self._render()
            self._cache.append((frame.image, frame.ground_truth))
        self._produced = 0
        self._start = time.monotonic()

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
        from edge.synthetic_scene import MovingScene  # OpenCV-backed: loaded when the first frame is drawn

        if self._produced % self.scene_frames == 0 or self._scene is None:
            self._scene = MovingScene.random(self._rng, self.height, self.width, max_objects=self.max_objects)
        else:
            self._scene.step(1.0 / self.fps)
        self._produced += 1
        scene = self._scene.render()
        return Frame(
            image=scene.image,
            timestamp=time.monotonic(),
            index=0,
            ground_truth=GroundTruth(boxes=scene.boxes, class_ids=scene.class_ids, difficult=scene.difficult),
        )

    def _close(self) -> None:
        self._scene = None
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
