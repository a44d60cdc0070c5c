"""End to end on the emulated arm64 Pi: deploy, idempotence, the camera loop and its report, rollback,
an interrupted deploy. The tests share one emulator and run in file order (each builds on the last)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DRIVER = [sys.executable, str(ROOT / "deploy" / "pi.py")]
DEPLOY_TIMEOUT_S = 40 * 60
FRAMES = 6

pytestmark = pytest.mark.pi


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two tiny real edge-SSD models (same network, different files)."""
    out = tmp_path_factory.mktemp("models")
    paths = [out / "a.tflite", out / "b.tflite"]
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("tiny_model.py")), *map(str, paths)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return paths


def driver(*args: str, timeout: float = DEPLOY_TIMEOUT_S, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*DRIVER, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def remote(pi_host: str, command: str) -> str:
    proc = driver("ssh", "--pi", pi_host, "--", "sh", "-c", command, timeout=120)
    assert proc.returncode == 0, f"{command}: {proc.stderr}"
    return proc.stdout.strip()


def model_file(path: Path) -> str:
    return f"/opt/edge/models/{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}.tflite"


def test_deploy_installs_release_model_and_skips_systemd(pi_host: str, models: list[Path]) -> None:
    proc = driver("deploy", "--pi", pi_host, "--model", str(models[0]))
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "systemd is not running" in proc.stdout
    assert "python3-picamera2 is not available" in proc.stdout
    assert "is emulated (qemu)" in proc.stdout
    assert remote(pi_host, "readlink /opt/edge/models/current.tflite") == model_file(models[0])
    release = remote(pi_host, "readlink /opt/edge/current")
    assert remote(pi_host, f"cat {release}/.complete") == Path(release).name
    cfg = remote(pi_host, "cat /opt/edge/current/venv/pyvenv.cfg")
    assert "include-system-site-packages = true" in cfg


def test_second_deploy_changes_nothing(pi_host: str, models: list[Path]) -> None:
    proc = driver("deploy", "--pi", pi_host, "--model", str(models[0]))
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "changed=0" in proc.stdout
    assert "ok, no changes" in proc.stdout


def test_doctor_on_the_emulated_pi(pi_host: str) -> None:
    proc = driver("doctor", "--pi", pi_host, "--", "--json", timeout=300)
    payload = json.loads(proc.stdout[proc.stdout.index("{") :])
    checks = {c["name"]: c for c in payload["checks"]}
    assert payload["emulated"] is True
    assert checks["emulation"]["detail"] == "emulated (qemu): speed is not Pi speed"
    assert checks["numpy/runtime ABI"]["status"] == "ok", checks["numpy/runtime ABI"]
    assert checks["picamera2"]["status"] == "warn" and checks["picamera2"]["hint"]


def test_camera_loop_runs_and_its_report_comes_back(pi_host: str, tmp_path: Path) -> None:
    run = driver("run", "--pi", pi_host, "--", "--source", "synthetic", "--unpaced", "--frames", "2", "--quiet")
    assert run.returncode == 0, run.stderr[-3000:]
    proc = driver("bench", "--pi", pi_host, "--frames", str(FRAMES), "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-4000:]
    (report_path,) = (tmp_path / pi_host.split("@")[1].replace(":", "_")).glob("bench-*.json")
    report = json.loads(report_path.read_text())
    assert report["frames"] == FRAMES
    assert report["average_fps"] > 0
    assert report["stages_ms"]["invoke"]["p50"] > 0
    assert report["system"]["machine"] == "aarch64"
    assert report["system"]["emulated"] is True
    assert "map50" in report["accuracy"]


def test_rollback_swaps_current_and_previous(pi_host: str, models: list[Path]) -> None:
    proc = driver("deploy", "--pi", pi_host, "--model", str(models[1]))
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert remote(pi_host, "readlink /opt/edge/models/current.tflite") == model_file(models[1])
    assert remote(pi_host, "readlink /opt/edge/models/previous.tflite") == model_file(models[0])
    proc = driver("rollback", "--pi", pi_host, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert remote(pi_host, "readlink /opt/edge/models/current.tflite") == model_file(models[0])
    assert remote(pi_host, "readlink /opt/edge/models/previous.tflite") == model_file(models[1])
    assert remote(pi_host, "ls /opt/edge/models | sort") == "\n".join(
        sorted(
            ["current.tflite", "previous.tflite", Path(model_file(models[0])).name, Path(model_file(models[1])).name]
        )
    )


def test_interrupted_deploy_leaves_the_previous_install(pi_host: str, models: list[Path]) -> None:
    before = remote(pi_host, "readlink /opt/edge/current")
    env = {**os.environ, "EDGE_RELEASE_SALT": f"interrupted-{time.time()}"}
    cmd = [*DRIVER, "deploy", "--pi", pi_host, "--model", str(models[1])]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    for line in proc.stdout:
        if "Install the edge package" in line or time.monotonic() > deadline:
            break
    time.sleep(5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert remote(pi_host, "readlink /opt/edge/current") == before
    assert remote(pi_host, "readlink /opt/edge/models/current.tflite") == model_file(models[0])
    run = driver("run", "--pi", pi_host, "--", "--source", "synthetic", "--unpaced", "--frames", "2", "--quiet")
    assert run.returncode == 0, run.stderr[-3000:]
