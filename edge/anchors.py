"""SSD default boxes (anchors), pure NumPy — the one definition shared by training and the edge.

Follows the TF Object Detection API's ``ssd_mobilenet_v1`` conventions
(``multiple_grid_anchor_generator.create_ssd_anchors``):

* ``num_layers`` feature maps; layer ``k`` has scale
  ``s_k = min_scale + (max_scale - min_scale) * k / (num_layers - 1)``, and ``s_num_layers = 1.0``.
* every layer but the lowest gets one box per aspect ratio in ``aspect_ratios`` at scale
  ``s_k``, plus one box of ratio ``interpolated_scale_aspect_ratio`` at ``sqrt(s_k * s_k+1)``;
* with ``reduce_boxes_in_lowest_layer`` the lowest layer gets only
  ``(0.1, 1.0), (s_0, 2.0), (s_0, 0.5)``.

A box of scale ``s`` and ratio ``a`` has height ``s / sqrt(a)`` and width ``s * sqrt(a)``,
relative to the shorter image side, so ratio-1 boxes are square in pixels on non-square inputs.
Anchors are laid out feature map by feature map, then row (y), column (x), box — the order
in which the model's heads reshape ``(B, H, W, A*4)`` into ``(B, H*W*A, 4)``.

Anchor format: ``(N, 4)`` float32 ``cy, cx, h, w``, normalized to [0, 1] by image height/width.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

ANCHOR_CODE_VERSION = 1
"""Bumped whenever ``generate_anchors`` changes its output for the same config."""


@dataclasses.dataclass(frozen=True)
class AnchorConfig:
    """Parameters of the SSD default-box generator (TF OD API ``ssd_mobilenet_v1`` defaults)."""

    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = True
    num_layers: int = 6

    def __post_init__(self) -> None:
        if not 0.0 < self.min_scale < self.max_scale <= 1.0:
            raise ValueError(
                f"AnchorConfig: need 0 < min_scale < max_scale <= 1, got {self.min_scale}, {self.max_scale}"
            )
        if self.num_layers < 2:
            raise ValueError(f"AnchorConfig: num_layers must be >= 2, got {self.num_layers}")
        if not self.aspect_ratios or any(r <= 0 for r in self.aspect_ratios):
            raise ValueError(f"AnchorConfig: aspect_ratios must be positive, got {self.aspect_ratios}")
        object.__setattr__(self, "aspect_ratios", tuple(float(r) for r in self.aspect_ratios))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AnchorConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"AnchorConfig: unknown fields {sorted(unknown)}; expected some of {sorted(known)}")
        values = dict(data)
        if "aspect_ratios" in values:
            values["aspect_ratios"] = tuple(values["aspect_ratios"])
        return cls(**values)


def normalize_input_size(input_size: int | Sequence[int]) -> tuple[int, int]:
    """``160`` or ``(160, 160)`` or ``[h, w]`` -> ``(height, width)``; raises ``ValueError`` if not positive."""
    if isinstance(input_size, (int, np.integer)):
        size = (int(input_size), int(input_size))
    else:
        size = tuple(int(v) for v in input_size)
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"input_size must be a positive int or (height, width), got {input_size!r}")
    return size  # type: ignore[return-value]


def feature_map_shapes(input_size: int | Sequence[int], num_layers: int = 6) -> list[tuple[int, int]]:
    """Spatial ``(height, width)`` of each SSD feature map for an input of ``input_size``.

    The first two maps are the backbone's stride-16 and stride-32 outputs; each extra layer is a
    stride-2 convolution with 'same' padding. Every stride-2 step maps ``n`` to ``ceil(n / 2)``,
    so a 300x300 input gives 19, 10, 5, 3, 2, 1 exactly as in ``ssd_mobilenet_v1``.
    """
    height, width = normalize_input_size(input_size)
    shapes = []
    h, w = height, width
    for _ in range(4):  # stride 16
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    shapes.append((h, w))
    for _ in range(num_layers - 1):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        shapes.append((h, w))
    return shapes


def layer_box_specs(config: AnchorConfig) -> list[list[tuple[float, float]]]:
    """``(scale, aspect_ratio)`` pairs for each layer, in the order the boxes appear per cell."""
    n = config.num_layers
    scales = [config.min_scale + (config.max_scale - config.min_scale) * k / (n - 1) for k in range(n)] + [1.0]
    specs: list[list[tuple[float, float]]] = []
    for k in range(n):
        if k == 0 and config.reduce_boxes_in_lowest_layer:
            specs.append([(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)])
            continue
        layer = [(scales[k], ratio) for ratio in config.aspect_ratios]
        if config.interpolated_scale_aspect_ratio > 0:
            layer.append((math.sqrt(scales[k] * scales[k + 1]), config.interpolated_scale_aspect_ratio))
        specs.append(layer)
    return specs


def boxes_per_location(config: AnchorConfig) -> list[int]:
    """Number of default boxes per feature-map cell, per layer (e.g. ``[3, 6, 6, 6, 6, 6]``)."""
    return [len(layer) for layer in layer_box_specs(config)]


def num_anchors(input_size: int | Sequence[int], config: AnchorConfig | None = None) -> int:
    """Total anchors for ``input_size``; 1917 for 300x300 with the default config."""
    config = config or AnchorConfig()
    shapes = feature_map_shapes(input_size, config.num_layers)
    return sum(h * w * a for (h, w), a in zip(shapes, boxes_per_location(config), strict=True))


def generate_anchors(input_size: int | Sequence[int], config: AnchorConfig | None = None) -> np.ndarray:
    """All default boxes for ``input_size`` as ``(N, 4)`` float32 ``cy, cx, h, w`` (normalized)."""
    config = config or AnchorConfig()
    height, width = normalize_input_size(input_size)
    shortest = min(height, width)
    size_y, size_x = shortest / height, shortest / width
    per_layer = []
    for (fh, fw), specs in zip(
        feature_map_shapes((height, width), config.num_layers), layer_box_specs(config), strict=True
    ):
        scales = np.array([s for s, _ in specs], dtype=np.float64)
        ratios = np.sqrt(np.array([r for _, r in specs], dtype=np.float64))
        box_h = scales / ratios * size_y  # (A,)
        box_w = scales * ratios * size_x
        cy = (np.arange(fh, dtype=np.float64) + 0.5) / fh
        cx = (np.arange(fw, dtype=np.float64) + 0.5) / fw
        grid_y, grid_x, box_index = np.meshgrid(cy, cx, np.arange(len(specs)), indexing="ij")  # (fh, fw, A)
        layer = np.stack([grid_y, grid_x, box_h[box_index], box_w[box_index]], axis=-1)
        per_layer.append(layer.reshape(-1, 4))
    return np.concatenate(per_layer, axis=0).astype(np.float32)
