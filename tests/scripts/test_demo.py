"""scripts/demo.py: stages run for real on a tiny int8 model, skip when current, fail with a message naming the stage."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scripts import demo

ROOT = Path(__file__).resolve().parents[2]


REQUIRED = [
    "--num-images",
    "20",
    "--val-fraction",
    "0.15",
    "--seed",
    "0",
    "--alpha",
    "0.25",
    "--size",
    "96",
    "--epochs",
    "1",
]
REQUIRED += ["--augment", "light", "--max-train-minutes", "0.1"]


def _args(tmp_path: Path, *extra: str):
    argv = [
        *REQUIRED,
        "--data",
        str(tmp_path / "data"),
        "--run",
        str(tmp_path / "run"),
        "--out",
        str(tmp_path / "demo"),
    ]
    return demo.build_parser().parse_args([*argv, *extra])


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory) -> Path:
    """A tiny untrained int8 model (alpha 0.25, 96x96) from the real converter, calibrated on synthetic scenes."""
    from convert.converter import convert
    from edge.synthetic_scene import CLASS_NAMES
    from scripts import bench_sweep as sweep
    from train.config import ModelConfig
    from train.model import build_ssd

    config = ModelConfig(alpha=0.25, input_size=(96, 96), num_classes=len(CLASS_NAMES))
    path = tmp_path_factory.mktemp("model") / "model_int8.tflite"
    data = convert(build_ssd(config), config, list(CLASS_NAMES), "int8", sweep.synthetic_calibration((96, 96), 2))
    path.write_bytes(data)
    return path


def test_is_current_compares_modification_times(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_text("x")
    new.write_text("y")
    os.utime(old, (time.time() - 100, time.time() - 100))
    assert demo.is_current([new], [old])
    assert not demo.is_current([old], [new])
    assert not demo.is_current([new, tmp_path / "missing"], [old])
    assert demo.is_current([new], [tmp_path / "missing_input"])


def test_edge_and_frames_stages_write_reports_pngs_and_gif_then_skip(tmp_path, int8_model):
    args = _args(tmp_path, "--frames", "12", "--png-frames", "3", "--gif-frames", "8")
    runner = demo.Demo(args)
    runner.out.mkdir(parents=True)
    runner.model.write_bytes(int8_model.read_bytes())
    runner.run(["edge", "frames"])
    assert [r["skipped"] for r in runner.results] == [False, False]

    report = json.loads(runner.report.read_text())
    assert report["frames"] == 12 and report["average_fps"] > 0
    assert "accuracy" in report  # synthetic source: mAP vs its ground truth
    lines = runner.jsonl.read_text().splitlines()
    assert len(lines) == 12
    for index in range(3):
        with Image.open(args.out / f"frame_{index}.png") as png:
            assert png.size == (640, 480)
            assert np.asarray(png).std() > 1  # a real scene, not a blank frame
    with Image.open(runner.gif) as gif:
        assert gif.format == "GIF" and gif.n_frames == 8 and gif.size == (320, 240)

    summary = runner.summary()
    assert summary["edge"]["frames"] == 12

    again = demo.Demo(args)
    again.run(["edge", "frames"])
    assert [r["skipped"] for r in again.results] == [True, True]


def test_convert_stage_without_checkpoint_fails_naming_the_stage(tmp_path):
    runner = demo.Demo(_args(tmp_path))
    with pytest.raises(demo.StageError, match=r"stage 'convert' failed: .*python -m convert .* exited with status 2"):
        runner.run(["convert"])


def test_main_rejects_unknown_stage(tmp_path, capsys):
    argv = [*REQUIRED, "--data", str(tmp_path), "--run", str(tmp_path), "--stages", "data,bake"]
    with pytest.raises(SystemExit) as exit_info:
        demo.main(argv)
    assert exit_info.value.code == 2
    assert "bake" in capsys.readouterr().err


def test_main_reports_a_failed_stage_and_exits_1(tmp_path, capsys):
    argv = [*REQUIRED, "--data", str(tmp_path / "d"), "--run", str(tmp_path / "r"), "--out", str(tmp_path / "o")]
    assert demo.main([*argv, "--stages", "edge"]) == 1
    err = capsys.readouterr().err
    assert "demo: error: stage 'edge' failed" in err
    assert not (tmp_path / "o" / "summary.json").exists()


def _make_variables() -> set[str]:
    text = "\n".join(p.read_text() for p in [ROOT / "Makefile", *sorted((ROOT / "mk").glob("*.mk"))])
    return set(re.findall(r"^(?:export\s+)?([A-Z][A-Z0-9_]*)\s*[?:+]?=", text, re.MULTILINE))


def test_help_and_hints_name_make_variables_that_exist(tmp_path, monkeypatch):
    names = set()
    for action in demo.build_parser()._actions:
        names |= set(re.findall(r"\(([A-Z][A-Z0-9_]+)\)", action.help or ""))
    hints = []
    monkeypatch.setattr(demo, "run_command", lambda stage, command, hint="": hints.append(hint))
    runner = demo.Demo(_args(tmp_path))
    for stage in (runner.stage_train, runner.stage_convert):
        with pytest.raises(demo.StageError, match="missing after"):
            stage()
    for hint in hints:
        names |= set(re.findall(r"(?<![/\w])[A-Z][A-Z0-9_]{2,}\b", hint))  # not runs/NAME, a placeholder
    assert {"AUGMENT", "TRAIN_MINUTES", "EPOCHS", "ALPHA", "SIZE", "NUM_IMAGES", "MAX_MAP_DROP"} <= names
    assert names <= _make_variables(), names - _make_variables()


def test_train_stage_retrains_when_the_recorded_settings_differ(tmp_path, monkeypatch):
    commands = []

    def fake_train(stage, command, hint=""):
        """Does what `python -m train` does to the run directory: record the command, write the outputs."""
        commands.append(command)
        run = Path(command[command.index("--out") + 1])
        run.mkdir(parents=True, exist_ok=True)
        (run / "run.json").write_text(json.dumps({"command": " ".join(["python -m train", *command[3:]])}))
        for name in ("best.keras", "metrics.json"):
            (run / name).write_text("x")

    monkeypatch.setattr(demo, "run_command", fake_train)

    def train(*extra: str) -> bool:
        skipped, _ = demo.Demo(_args(tmp_path, *extra)).stage_train()
        return skipped

    assert not train() and "--restart" not in commands[-1]
    assert train()  # same settings: reused
    assert not train("--epochs", "2")
    assert commands[-1][commands[-1].index("--epochs") + 1] == "2" and "--restart" in commands[-1]
    assert train("--epochs", "2")  # the run recorded with --restart counts as these settings
    assert not train("--epochs", "2", "--augment", "none") and "--restart" in commands[-1]
    assert not train("--epochs", "2", "--augment", "none", "--train-args", "--lr 0.01") and "--restart" in commands[-1]
    assert not train("--epochs", "2", "--augment", "none", "--max-train-minutes", "0.2")
    assert len(commands) == 5
