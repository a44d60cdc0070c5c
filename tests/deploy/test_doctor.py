"""edge.doctor on this machine: the tiny in-memory model, each probe's verdicts and hints, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge import doctor, system

ROOT = Path(__file__).resolve().parents[2]


def test_tiny_add_model_runs_in_the_runtime() -> None:
    interpreter_cls, _ = doctor.load_interpreter_class()
    interpreter = interpreter_cls(model_content=doctor.tiny_add_model())
    interpreter.allocate_tensors()
    a = np.array([[1.0, -2.0, 3.5, 0.0]], np.float32)
    b = np.array([[0.5, 0.5, -1.0, 7.0]], np.float32)
    first, second = interpreter.get_input_details()
    interpreter.set_tensor(first["index"], a)
    interpreter.set_tensor(second["index"], b)
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(out, a + b)


def test_smoke_checks_pass_on_the_dev_venv() -> None:
    results = doctor.run_checks(doctor.SMOKE)
    assert [r.name for r in results] == ["python", "tflite runtime", "numpy/runtime ABI", "opencv", "edge package"]
    assert all(r.status == "ok" for r in results), results


def test_governor_verdicts(tmp_path: Path) -> None:
    path = tmp_path / "scaling_governor"
    assert doctor.check_governor(path).status == "skip"
    path.write_text("ondemand\n")
    check = doctor.check_governor(path)
    assert check.status == "warn" and "performance" in check.hint
    path.write_text("performance\n")
    assert doctor.check_governor(path).status == "ok"


def test_emulation_from_cpuinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_EMULATED", raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nvendor_id : GenuineIntel\n")
    monkeypatch.setattr(system.platform, "machine", lambda: "aarch64")
    assert system.is_emulated(cpuinfo)
    cpuinfo.write_text("processor : 0\nBogoMIPS : 108.00\nCPU implementer : 0x41\n")
    assert not system.is_emulated(cpuinfo)
    monkeypatch.setattr(system.platform, "machine", lambda: "x86_64")
    cpuinfo.write_text("processor : 0\nvendor_id : GenuineIntel\n")
    assert not system.is_emulated(cpuinfo)


def test_a_crashing_check_is_reported_not_raised() -> None:
    def check_boom() -> doctor.Check:
        raise RuntimeError("sensor gone")

    (result,) = doctor.run_checks([check_boom])
    assert result.name == "boom" and result.status == "fail" and "sensor gone" in result.detail


def test_cli_json_and_exit_status() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edge.doctor", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    payload = json.loads(proc.stdout)
    names = {c["name"]: c for c in payload["checks"]}
    assert {"picamera2", "camera", "cpu governor", "temperature", "throttling", "emulation"} <= set(names)
    assert all(c["hint"] for c in payload["checks"] if c["status"] in ("warn", "fail"))
    assert proc.returncode == (1 if any(c["status"] == "fail" for c in payload["checks"]) else 0)
