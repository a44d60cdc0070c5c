"""Typed, validated configuration shared by the training stage and the converter.

``ModelConfig`` names the two MobileNet multipliers: ``alpha`` (width multiplier) and
``input_size`` (resolution multiplier, ``(height, width)`` in pixels).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from edge.anchors import AnchorConfig, generate_anchors, normalize_input_size, num_anchors
from edge.boxes import VARIANCES

OPTIMIZERS = ("sgd", "adamw")
"""``TrainConfig.optimizer`` / ``--optimizer`` choices."""
STRATEGIES = ("default", "mirrored", "multiworker")
"""``TrainConfig.strategy`` / ``--strategy`` choices (``tf.distribute``)."""
AUGMENT_PRESETS = ("ssd", "light", "none")
"""``AugmentConfig.preset`` / ``--augment`` choices."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What defines a MobileNet-SSD detector: multipliers, classes and default-box geometry."""

    alpha: float = 0.5
    input_size: tuple[int, int] = (160, 160)
    num_classes: int = 4
    anchors: AnchorConfig = dataclasses.field(default_factory=AnchorConfig)
    variances: tuple[float, float, float, float] = VARIANCES

    def __post_init__(self) -> None:
        if not self.alpha > 0:
            raise ValueError(f"ModelConfig.alpha (width multiplier) must be > 0, got {self.alpha}")
        size = normalize_input_size(self.input_size)
        if min(size) < 32:
            raise ValueError(f"ModelConfig.input_size must be at least 32x32, got {size}")
        object.__setattr__(self, "input_size", size)
        if self.num_classes < 1:
            raise ValueError(f"ModelConfig.num_classes must be >= 1 (background excluded), got {self.num_classes}")
        if len(self.variances) != 4:
            raise ValueError(f"ModelConfig.variances must have 4 values, got {self.variances}")
        object.__setattr__(self, "variances", tuple(float(v) for v in self.variances))

    @property
    def num_anchors(self) -> int:
        return num_anchors(self.input_size, self.anchors)

    def generate_anchors(self):
        """``(num_anchors, 4)`` float32 ``cy, cx, h, w`` for this config."""
        return generate_anchors(self.input_size, self.anchors)

    def to_dict(self) -> dict:
        return {
            "alpha": self.alpha,
            "input_size": list(self.input_size),
            "num_classes": self.num_classes,
            "anchors": self.anchors.to_dict(),
            "variances": list(self.variances),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        required = ("alpha", "input_size", "num_classes")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"ModelConfig: missing fields {missing}")
        return cls(
            alpha=float(data["alpha"]),
            input_size=tuple(data["input_size"]),
            num_classes=int(data["num_classes"]),
            anchors=AnchorConfig.from_dict(data.get("anchors", {})),
            variances=tuple(data.get("variances", VARIANCES)),
        )


def parse_input_size(text: str | int | Sequence[int]) -> tuple[int, int]:
    """CLI helper: ``"160"`` or ``"160x192"`` (height x width) -> ``(h, w)``."""
    if isinstance(text, str):
        parts = text.lower().replace(",", "x").split("x")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"input size must look like 160 or 160x192, got {text!r}") from None
        return normalize_input_size(values[0] if len(values) == 1 else values)
    return normalize_input_size(text)
