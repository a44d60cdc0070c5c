"""IMX500 conversion: the NumPy/JSON contract in .venv, and (``-m imx500``) a tiny model through Sony's converter.

The end-to-end test runs with ``RUN_IMX500_TESTS=1`` (``make test-imx500``): it trains an alpha-0.25 @ 96 model
for one epoch on a small synthetic set, converts it with ``python -m convert RUN --target imx500`` (MCT PTQ +
``imxconv-tf`` in .venv-imx500) and times it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from convert import imx500
from edge.boxes import decode_boxes
from train.config import ModelConfig

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
REPORT = (DATA / "imx500_MemoryReport.json").read_text()


def test_memory_report_from_the_converter():
    report = imx500.parse_memory_report(REPORT)
    assert (report.used_bytes, report.available_bytes) == (656896, 8388480)
    assert report.fits and round(report.percent, 1) == 7.8
    assert report.to_dict() == {"used_bytes": 656896, "available_bytes": 8388480, "percent": 7.8, "fits": True}


def test_memory_report_units_and_overflow():
    data = json.loads(REPORT)
    data["Memory Report"]["Memory Usage"] = "9.5M"
    data["Memory Report"]["Total Memory Available On Chip"] = "8191.875K"
    report = imx500.parse_memory_report(json.dumps(data))
    assert report.used_bytes == int(9.5 * 1024**2) and report.available_bytes == 8388480
    assert not report.fits and report.percent > 100


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not a converter memory report"),
        ('{"Memory Report": {"Memory Usage": "1B"}}', "'Memory Report.Total Memory Available On Chip' is missing"),
        (
            '{"Memory Report": {"Memory Usage": "lots", "Total Memory Available On Chip": "8B"}}',
            "field 'Memory Usage' is 'lots'",
        ),
    ],
)
def test_memory_report_errors_name_the_field(text, message):
    with pytest.raises(imx500.Imx500Error, match=message):
        imx500.parse_memory_report(text, "x_MemoryReport.json")


def test_weights_round_trip_by_layer_name(tiny_model):
    arrays = imx500.export_weights(tiny_model)
    grouped = imx500.weights_by_layer(arrays)
    for layer in tiny_model.layers:
        if layer.weights:
            assert all(np.array_equal(a, b) for a, b in zip(grouped[layer.name], layer.get_weights(), strict=True))
    with pytest.raises(ValueError, match="weight indices"):
        imx500.weights_by_layer({"conv/1": np.zeros(1)})
    with pytest.raises(ValueError, match="is not '<layer name>/<index>'"):
        imx500.weights_by_layer({"conv": np.zeros(1)})


def test_model_input_is_the_rescaling_layer():
    pixels = np.array([[[[0, 127.5, 255]]]], dtype=np.float32)
    np.testing.assert_allclose(imx500.to_model_input(pixels), [[[[-1.0, 0.0, 1.0]]]])


def test_postprocess_geometry_decodes_like_the_edge():
    """SSDPostProcess's decoding (corner anchors, scale factors = 1/variances), written out, equals decode_boxes."""
    config = ModelConfig(alpha=0.25, input_size=(96, 96), num_classes=3)
    corners = imx500.anchors_as_corners(config)
    anchors = config.generate_anchors()
    deltas = np.random.default_rng(0).normal(0, 1, anchors.shape).astype(np.float32)
    ay, ax = (corners[:, 0] + corners[:, 2]) / 2, (corners[:, 1] + corners[:, 3]) / 2
    ah, aw = corners[:, 2] - corners[:, 0], corners[:, 3] - corners[:, 1]
    sy, sx, sh, sw = imx500.scale_factors(config)
    cy, cx = deltas[:, 0] / sy * ah + ay, deltas[:, 1] / sx * aw + ax
    h, w = np.exp(deltas[:, 2] / sh) * ah, np.exp(deltas[:, 3] / sw) * aw
    theirs = np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=1)
    np.testing.assert_allclose(theirs, decode_boxes(deltas, anchors, config.variances), atol=1e-5)
    assert imx500.scale_factors(config) == pytest.approx((10, 10, 5, 5))


def test_intrinsics_follow_picamera2():
    """Keys and types of picamera2's NetworkIntrinsics schema; boxes already normalized, in yx order."""
    config = ModelConfig(alpha=0.25, input_size=(96, 128), num_classes=2)
    intrinsics = imx500.network_intrinsics(["cat", "dog"], config)
    assert intrinsics["task"] == "object detection"
    assert set(intrinsics["cpu"]) <= {"bbox_normalization", "bbox_order", "softmax", "post_processing"}
    assert intrinsics["cpu"] == {"bbox_normalization": False, "bbox_order": "yx"}
    assert intrinsics["classes"] == {"labels": ["cat", "dog"]}
    assert "input_aspect_ratio" not in intrinsics  # picamera2 would crop the sensor; training saw the whole view
    assert intrinsics["edge_ssd"]["outputs"] == ["boxes", "scores", "classes", "count"]
    assert intrinsics["edge_ssd"]["input_size"] == [96, 128]
    json.dumps(intrinsics)


def test_toolchain_check_is_one_line_in_the_wrong_venv():
    import tensorflow as tf

    if tf.__version__.startswith(imx500.TOOLCHAIN_TF + "."):
        pytest.skip("running inside .venv-imx500")
    with pytest.raises(imx500.Imx500Error, match=r"runs from \.venv-imx500") as error:
        imx500.check_toolchain()
    assert "\n" not in str(error.value)


def test_cli_without_the_toolchain_venv(tmp_path, tiny_config, tiny_model):
    """``python -m convert RUN --target imx500`` without .venv-imx500: one line, exit 2."""
    run = tmp_path / "run"
    run.mkdir()
    tiny_model.save(run / "best.keras")
    labels = ["circle", "square", "triangle"]
    (run / "run.json").write_text(json.dumps({"model": tiny_config.to_dict(), "labels": labels, "data": "x"}))
    env = {**os.environ, "IMX500_PYTHON": str(tmp_path / "missing" / "python"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "convert", str(run), "--target", "imx500", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'missing' / 'python'} not found: build Sony's toolchain with make setup-imx500 "
        "(or set IMX500_PYTHON)"
    )


@pytest.mark.imx500
@pytest.mark.skipif(os.environ.get("RUN_IMX500_TESTS") != "1", reason="runs with RUN_IMX500_TESTS=1 (make test-imx500)")
def test_tiny_model_to_packer_out(tmp_path):
    if not imx500.toolchain_python().exists():
        pytest.skip(f"{imx500.toolchain_python()} missing: make setup-imx500")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    data, run, out = tmp_path / "data", tmp_path / "run", tmp_path / "imx500"

    def python(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=1800)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc

    python("-m", "train.synthetic", "--out", str(data), "--num-images", "120", "--val-fraction", "0.25")
    python("-m", "train", "--data", str(data), "--alpha", "0.25", "--size", "96", "--epochs", "1", "--out", str(run))
    # SSDPostProcess (edge-mdt-cl, in .venv-imx500) decodes and suppresses exactly as the edge's NumPy code
    import keras

    weights = tmp_path / "weights.npz"
    np.savez(weights, **imx500.export_weights(keras.models.load_model(run / "best.keras", compile=False)))
    parity = subprocess.run(
        [str(imx500.toolchain_python()), str(Path(__file__).with_name("imx500_parity.py")), str(run), str(weights), str(data)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert parity.returncode == 0, parity.stdout[-2000:] + parity.stderr[-2000:]
    result = json.loads(parity.stdout.strip().splitlines()[-1])
    print(f"\nSSDPostProcess vs decode_and_nms: {result}")
    assert result["detections"] > 0 and result["max_box_diff"] < 1e-5

    start = time.perf_counter()
    proc = python(
        "-m", "convert", str(run), "--target", "imx500", "--out", str(out),
        "--calibration-images", "20", "--max-map-drop", "100",
    )  # fmt: skip
    seconds = time.perf_counter() - start
    report = json.loads((out / "imx500_report.json").read_text())
    print(f"\nIMX500 alpha 0.25 @ 96: {seconds:.1f} s end to end; {report['timings_s']}; memory {report['memory']}")
    print("\n".join(line for line in proc.stdout.splitlines() if line.startswith("|")))
    assert (out / "packerOut.zip").stat().st_size > 10_000
    assert report["memory"]["fits"] and 0 < report["memory"]["percent"] < 100
    assert [row["variant"] for row in report["accuracy"]] == ["keras", "imx500"]
    assert (out / "labels.txt").read_text().split() == report["labels"]
    intrinsics = json.loads((out / "network_intrinsics.json").read_text())
    assert intrinsics["classes"]["labels"] == report["labels"]


def test_does_not_fit_is_one_line_with_the_figures():
    error = imx500.ModelDoesNotFit(imx500.MemoryReport(used_bytes=9_500_000, available_bytes=8_388_480))
    assert str(error) == (
        "the network needs 9.50 MB but the IMX500 has 8.39 MB (113 %): use a smaller --alpha or input size"
    )
    assert isinstance(error, imx500.Imx500Error) and error.memory.fits is False
