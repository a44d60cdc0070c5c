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


def test_emulation_from_the_device_tree_of_qemus_virt_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The booted emulated Pi has an ARM cpuinfo; its device tree says qemu ``virt``, a real Pi's does not."""
    monkeypatch.delenv("EDGE_EMULATED", raising=False)
    monkeypatch.setattr(system.platform, "machine", lambda: "aarch64")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nBogoMIPS : 125.00\nCPU implementer : 0x41\nCPU part : 0xd08\n")
    compatible = tmp_path / "compatible"
    dmi = tmp_path / "sys_vendor"
    compatible.write_bytes(b"linux,dummy-virt\0")
    assert system.is_emulated(cpuinfo, compatible, dmi)
    compatible.write_bytes(b"raspberrypi,4-model-b\0brcm,bcm2711\0")
    assert not system.is_emulated(cpuinfo, compatible, dmi)
    dmi.write_text("QEMU\n")
    assert system.is_emulated(cpuinfo, compatible, dmi)


def test_a_32_bit_python_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor.struct, "calcsize", lambda fmt: 4)
    check = doctor.check_python()
    assert check.status == "fail" and "32-bit (armhf)" in check.hint and "no LiteRT wheels" in check.hint


def test_an_os_module_built_against_another_numpy_names_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """simplejpeg / picamera2 from apt, imported with a pip NumPy of another ABI: the exact error and the fix."""
    (tmp_path / "simplejpeg.py").write_text(
        "raise ValueError('numpy.dtype size changed, may indicate binary incompatibility. "
        "Expected 96 from C header, got 88 from PyObject')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "simplejpeg", raising=False)
    check = doctor.check_simplejpeg()
    assert check.status == "fail" and "Expected 96 from C header" in check.detail
    if doctor.in_venv(Path(np.__file__).resolve().parent):
        assert f"{sys.prefix}/bin/pip uninstall -y numpy" in check.hint
    else:
        assert "apt" in check.hint


def test_an_absent_os_module_is_a_warning_with_the_apt_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "simplejpeg", None)
    check = doctor.check_simplejpeg()
    assert check.status == "warn"
    assert "python3-simplejpeg" in check.hint or "--system-site-packages" in check.hint


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
    assert {
        "numpy source",
        "picamera2",
        "simplejpeg",
        "camera",
        "cpu governor",
        "temperature",
        "throttling",
        "emulation",
    } <= set(names)
    assert all(c["hint"] for c in payload["checks"] if c["status"] in ("warn", "fail"))
    assert proc.returncode == (1 if any(c["status"] == "fail" for c in payload["checks"]) else 0)
