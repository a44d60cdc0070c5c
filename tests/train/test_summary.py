"""Parameter / multiply-add counts against the MobileNet paper, and the summary CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from edge.anchors import boxes_per_location, feature_map_shapes
from train.config import ModelConfig
from train.summary import format_table, layer_macs, main, summarize

ROOT = Path(__file__).resolve().parents[2]

# MobileNet v1 paper (Howard et al. 2017), tables 6/7: totals include the 1000-way classifier,
# a 1x1 convolution / FC layer of (1024*alpha)*1000 mult-adds and (1024*alpha)*1000 + 1000 params.
PAPER = {
    (1.0, 224): {"macs": 569e6, "params": 4.2e6},
    (0.5, 160): {"macs": 76e6, "params": 1.32e6},
}


def _classifier(alpha: float) -> tuple[float, float]:
    features = int(1024 * alpha)
    return features * 1000, features * 1000 + 1000  # macs, params


@pytest.fixture(autouse=True)
def _fresh_session():
    keras.backend.clear_session(free_memory=False)


@pytest.mark.parametrize(("alpha", "size"), sorted(PAPER))
def test_backbone_counts_match_the_paper(alpha: float, size: int) -> None:
    summary = summarize(ModelConfig(alpha=alpha, input_size=size, num_classes=4))
    fc_macs, fc_params = _classifier(alpha)
    expected_macs = PAPER[(alpha, size)]["macs"] - fc_macs
    expected_params = PAPER[(alpha, size)]["params"] - fc_params
    assert summary["backbone_macs"] == pytest.approx(expected_macs, rel=0.015)
    assert summary["backbone_params"] == pytest.approx(expected_params, rel=0.015)
    assert summary["detector_macs"] > summary["backbone_macs"]
    assert summary["detector_params"] > summary["backbone_params"]
    assert summary["keras_params"] > summary["detector_params"]  # BatchNorm statistics on top


def test_detector_counts_are_consistent_with_the_anchor_layout() -> None:
    config = ModelConfig(alpha=0.25, input_size=(128, 192), num_classes=3)
    summary = summarize(config)
    shapes = feature_map_shapes(config.input_size)
    boxes = boxes_per_location(config.anchors)
    assert summary["num_anchors"] == config.num_anchors
    assert summary["input_size"] == [128, 192] and summary["alpha"] == 0.25
    assert [(fm["height"], fm["width"]) for fm in summary["feature_maps"]] == shapes
    assert [fm["boxes_per_location"] for fm in summary["feature_maps"]] == boxes
    assert sum(fm["anchors"] for fm in summary["feature_maps"]) == config.num_anchors
    # More classes only grow the class heads: the 1x1 class-head convs, A more filters per class.
    more = summarize(ModelConfig(alpha=0.25, input_size=(128, 192), num_classes=4))
    assert more["backbone_macs"] == summary["backbone_macs"]
    extra_macs = 0
    channels = [int(512 * 0.25), int(1024 * 0.25), 128, 64, 64, 32]  # stride 16/32 maps, then extras
    for (h, w), a, c in zip(shapes, boxes, channels, strict=True):
        extra_macs += c * a * h * w
    assert more["detector_macs"] - summary["detector_macs"] == extra_macs


def test_layer_macs_by_hand() -> None:
    inputs = keras.Input((8, 10, 4))
    standard = keras.layers.Conv2D(6, 3, strides=2, padding="same")
    depthwise = keras.layers.DepthwiseConv2D(3, padding="same")
    pointwise = keras.layers.Conv2D(5, 1)
    dense = keras.layers.Dense(7)
    x = standard(inputs)  # (4, 5, 6)
    x = depthwise(x)
    x = pointwise(x)
    dense(keras.layers.Flatten()(x))
    assert layer_macs(standard) == 3 * 3 * 4 * 6 * 4 * 5
    assert layer_macs(depthwise) == 3 * 3 * 6 * 4 * 5
    assert layer_macs(pointwise) == 6 * 5 * 4 * 5
    assert layer_macs(dense) == (4 * 5 * 5) * 7
    assert layer_macs(keras.layers.ReLU()) == 0


def test_cli_json_is_well_formed() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "train.summary", "--alpha", "0.25", "--size", "128x160", "--num-classes", "2", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    data = json.loads(result.stdout)
    for key in ("backbone_params", "backbone_macs", "detector_params", "detector_macs", "num_anchors"):
        assert isinstance(data[key], int) and data[key] > 0, key
    assert data["input_size"] == [128, 160]
    assert data["num_anchors"] == ModelConfig(alpha=0.25, input_size=(128, 160), num_classes=2).num_anchors
    assert {"height", "width", "boxes_per_location", "anchors"} <= set(data["feature_maps"][0])


def test_cli_table_and_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--alpha", "0.25", "--size", "96"]) == 0
    table = capsys.readouterr().out
    assert "backbone mult-adds" in table and "96x96" in table
    summary = summarize(ModelConfig(alpha=0.25, input_size=96))
    assert format_table(summary) == table.rstrip("\n")
    with pytest.raises(SystemExit):
        main(["--alpha", "0", "--size", "96"])
    assert "alpha" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--size", "big"])
