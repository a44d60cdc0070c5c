"""python -m convert: run directory in, atomic .tflite + accuracy table out, clear errors, the accuracy gate."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from convert.accuracy import AccuracyGateError, VariantResult, check_gate, format_table
from convert.cli import main
from edge.atomic import atomic_write_bytes
from edge.metadata import read_metadata
from edge.synthetic_scene import CLASS_NAMES
from tests.convert.conftest import build_tiny_detector
from train.config import ModelConfig

CONFIG = ModelConfig(alpha=0.25, input_size=(64, 64), num_classes=len(CLASS_NAMES))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from train.synthetic import generate_dataset

    return generate_dataset(
        tmp_path_factory.mktemp("data") / "synthetic", num_images=24, width=96, height=72, progress=False
    )


def _make_run(folder: Path, data: Path, model=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    run_json = {"model": CONFIG.to_dict(), "labels": list(CLASS_NAMES), "data": str(data), "anchor_code_version": 1}
    (folder / "run.json").write_text(json.dumps(run_json))
    (model or build_tiny_detector(CONFIG)).save(folder / "best.keras")
    return folder


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, dataset) -> Path:
    return _make_run(tmp_path_factory.mktemp("runs") / "tiny", dataset)


def _convert_int8(run_dir: Path, out: Path, calibration_images: int, max_map_drop: float, *extra: str) -> int:
    args = ["--quant", "int8", "--out", str(out), "--calibration-images", str(calibration_images)]
    return main([str(run_dir), *args, "--max-map-drop", str(max_map_drop), *extra])


@pytest.fixture(scope="module")
def converted(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "tiny_int8.tflite"
    return _convert_int8(run_dir, out, 4, 100, "--compare", "float32,int8"), out


def test_converts_a_run_to_int8_with_accuracy_table(converted):
    rc, out = converted
    assert rc == 0
    metadata = read_metadata(out)
    assert metadata.quantization == "int8" and metadata.input_dtype == "uint8"
    assert metadata.labels == tuple(CLASS_NAMES)
    assert set(metadata.accuracy) >= {"float", "int8", "data", "split"}
    assert 0.0 <= metadata.accuracy["int8"]["map50"] <= 1.0
    report = json.loads(out.with_name("tiny_int8.accuracy.json").read_text())
    assert [row["variant"] for row in report["results"]] == ["keras", "float32", "int8"]
    assert all(row["num_images"] > 0 and row["latency_ms"] > 0 for row in report["results"])
    rows = {row["variant"]: row for row in report["results"]}
    assert 0 < len(out.read_bytes()) - rows["int8"]["size_bytes"] < 2048  # + the accuracy in the metadata
    markdown = out.with_name("tiny_int8.accuracy.md").read_text()
    assert "| variant | file size | vs float32 | mAP@0.5 | COCO mAP | latency/image |" in markdown
    assert "| int8 |" in markdown and "| float32 |" in markdown
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_gate_failure_exits_1_and_writes_no_model(run_dir, tmp_path, capsys):
    out = tmp_path / "strict.tflite"
    rc = _convert_int8(run_dir, out, 2, -1, "--eval-images", "3")
    assert rc == 1
    assert "accuracy gate failed" in capsys.readouterr().err
    assert not out.exists()
    assert (tmp_path / "strict.accuracy.json").exists()  # the table explains the failure
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _result(variant: str, map50: float) -> VariantResult:
    return VariantResult(variant, 1000, map50, map50 / 2, 1.0, 10)


def test_check_gate_thresholds():
    assert check_gate([_result("keras", 0.80), _result("int8", 0.795)], 1.0) == pytest.approx(0.5)
    with pytest.raises(AccuracyGateError, match=r"1.50 points below.*--max-map-drop 1"):
        check_gate([_result("keras", 0.80), _result("int8", 0.785)], 1.0)
    assert check_gate([_result("keras", 0.80), _result("float32", 0.10)], 1.0) is None  # no int8 row


def test_table_gives_each_file_size_against_float32():
    rows = [
        VariantResult("keras", 9000, 0.8, 0.4, 1.0, 10),
        VariantResult("float32", 4000, 0.8, 0.4, 1.0, 10),
        VariantResult("int8", 1068, 0.8, 0.4, 1.0, 10),
    ]
    lines = format_table(rows).splitlines()
    assert lines[2].split("|")[3].strip() == "2.250x"
    assert lines[4].split("|")[3].strip() == "0.267x"
    assert format_table(rows[2:]).splitlines()[2].split("|")[3].strip() == "-"  # no float32 row to compare with


def test_not_a_detector_checkpoint(tmp_path, dataset, capsys):
    import keras

    classifier = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.Flatten(), keras.layers.Dense(4)])
    run = _make_run(tmp_path / "classifier", dataset, classifier)
    assert main([str(run), "--quant", "float32", "--skip-accuracy", "--out", str(tmp_path / "m.tflite")]) == 2
    assert "expected a detector from this project" in capsys.readouterr().err
    assert not (tmp_path / "m.tflite").exists()


def test_checkpoint_that_is_not_a_keras_file(tmp_path, dataset, capsys):
    run = _make_run(tmp_path / "junk", dataset)
    (run / "best.keras").write_bytes(b"not a zip")
    assert main([str(run), "--quant", "float32", "--skip-accuracy"]) == 2
    assert "cannot be loaded as a Keras model" in capsys.readouterr().err
    assert main([str(tmp_path / "nowhere"), "--skip-accuracy"]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_missing_and_empty_calibration_set(run_dir, tmp_path, dataset, capsys):
    assert main([str(run_dir), "--quant", "int8", "--data", str(tmp_path / "missing"), "--skip-accuracy"]) == 2
    assert "does not exist; expected a dataset folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (empty / sub).mkdir(parents=True)
    (empty / "labels.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    (empty / "ImageSets/Main/train.txt").write_text("")
    out = tmp_path / "m.tflite"
    assert main([str(run_dir), "--quant", "int8", "--data", str(empty), "--skip-accuracy", "--out", str(out)]) == 2
    assert "split 'train' has no images" in capsys.readouterr().err
    assert not out.exists()


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "model.tflite"
    atomic_write_bytes(path, b"old")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, np.ones(1000, np.uint8).tobytes())
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite"]
