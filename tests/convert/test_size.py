"""The full-int8 file is at most 0.27x the float32 file (on a model whose weights dominate the file)."""

from __future__ import annotations

from convert.converter import convert
from tests.convert.conftest import LABELS, build_tiny_detector


def test_int8_is_at_most_027x_float32_size(tiny_config, calibration_set):
    model = build_tiny_detector(tiny_config, width=96)
    float_bytes = convert(model, tiny_config, LABELS, "float32")
    int8_bytes = convert(model, tiny_config, LABELS, "int8", calibration_set[:4])
    assert len(float_bytes) > 2_000_000
    assert len(int8_bytes) <= 0.27 * len(float_bytes)
