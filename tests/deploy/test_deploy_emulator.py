"""End to end on a booted emulated Pi (qemu-system-aarch64, Debian's kernel, systemd as PID 1), per release.

The committed demo model is deployed as a user would (`make deploy`), then: a no-change redeploy, the systemd
service serving /stats through the forwarded port, kill -9 and a reboot survived with no one's help, pi-run
around the running service, pi-bench's mAP against the same model here, doctor, rollback picked up by the
service, a real V4L2 camera device (the kernel's vivid driver), an interrupted deploy, and the Pi CPU matrix. The tests share one VM and run in file order.
Emulated speed is not Pi speed: nothing here measures it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from deploy import pi

from .conftest import EmulatedPi

ROOT = Path(__file__).resolve().parents[2]
DRIVER = [sys.executable, str(ROOT / "deploy" / "pi.py")]
DEMO_MODEL = ROOT / "models" / "demo_int8.tflite"
DEPLOY_TIMEOUT_S = 40 * 60
BENCH_FRAMES = 40
# The service on the emulator: the synthetic camera at a rate the emulated CPU keeps up with, one interpreter
# thread, so the other tests get CPU time.
SERVICE_ARGS = "--fps 1 --threads 1"
SERVICE_START_S = 240
RESTART_WITHIN_S = 30
CPU_PART = {"cortex-a53": "0xd03", "cortex-a72": "0xd08", "cortex-a76": "0xd0b"}
"""MIDR part numbers: the guest's /proc/cpuinfo is ARM's, so it shows which core qemu emulates."""

pytestmark = pytest.mark.pi


def driver(*args: str, timeout: float = DEPLOY_TIMEOUT_S, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*DRIVER, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def deploy(emulated_pi: EmulatedPi, model: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return driver(
        "deploy", "--pi", emulated_pi.pi, "--model", str(model), "--source", "synthetic",
        f"--service-args={SERVICE_ARGS}", env=env,
    )  # fmt: skip


def model_file(path: Path) -> str:
    return f"/opt/edge/models/{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}.tflite"


def service_pid(emulated_pi: EmulatedPi) -> int:
    return int(emulated_pi.ssh("systemctl show --property MainPID --value edge.service").stdout.strip())


@pytest.fixture(scope="module")
def second_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real edge-SSD model, a different file from the demo model, for rollback."""
    path = tmp_path_factory.mktemp("models") / "tiny.tflite"
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("tiny_model.py")), str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return path


def test_deploy_of_the_demo_model_starts_the_service(emulated_pi: EmulatedPi) -> None:
    proc = deploy(emulated_pi, DEMO_MODEL)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert "emulated (qemu)" in proc.stdout
    assert "python3-picamera2 is not available" in proc.stdout
    assert emulated_pi.ssh("readlink /opt/edge/models/current.tflite").stdout.strip() == model_file(DEMO_MODEL)
    release = emulated_pi.ssh("readlink /opt/edge/current").stdout.strip()
    assert emulated_pi.ssh(f"cat {release}/.complete").stdout.strip() == Path(release).name
    assert "include-system-site-packages = true" in emulated_pi.ssh(f"cat {release}/venv/pyvenv.cfg").stdout
    assert emulated_pi.ssh("systemctl is-active edge.service").stdout.strip() == "active"
    assert emulated_pi.ssh("systemctl is-enabled edge.service").stdout.strip() == "enabled"
    stats = emulated_pi.wait_stats(SERVICE_START_S)
    assert stats["model"] == model_file(DEMO_MODEL)


def test_the_stream_needs_the_deployed_credentials(emulated_pi: EmulatedPi) -> None:
    """The service listens on the Pi's network: no frame or stats without the password made at deploy time."""
    assert emulated_pi.ssh("stat -c '%a %U' /opt/edge/mjpeg.credentials").stdout.split() == ["600", "pi"]
    for path in ("/", "/stats", "/frame.jpg"):
        status, body = emulated_pi.get(path, credentials=None)
        assert status == 401 and b"\xff\xd8" not in body and b"frames" not in body, (path, status)
    assert emulated_pi.get("/stats", credentials="edge:wrong")[0] == 401
    url = driver("url", "--pi", emulated_pi.pi, timeout=120)
    assert url.returncode == 0, url.stdout + url.stderr
    parsed = urllib.parse.urlsplit(url.stdout.strip())
    assert (parsed.hostname, parsed.port) == ("127.0.0.1", emulated_pi.mjpeg_port)
    user, password = urllib.parse.unquote(parsed.username or ""), urllib.parse.unquote(parsed.password or "")
    status, body = emulated_pi.get("/stats", credentials=f"{user}:{password}")
    assert status == 200 and json.loads(body)["frames"] > 0


def test_the_release_matches_the_os_python_and_uses_the_os_numpy(emulated_pi: EmulatedPi) -> None:
    """The row of PI_OS_RELEASES that test_requirements_pi.py resolves is what the booted OS really has."""
    expected = pi.PI_OS_RELEASES[emulated_pi.os]
    python = "/opt/edge/current/venv/bin/python"
    facts = json.loads(
        emulated_pi.ssh(
            f"{python} -c 'import json, platform, numpy, ai_edge_litert, cv2; print(json.dumps("
            '{"python": platform.python_version(), "numpy": numpy.__version__, "numpy_file": numpy.__file__, '
            '"cv2": cv2.__version__}))\''
        ).stdout
    )
    assert facts["python"].rsplit(".", 1)[0] == expected.python
    assert facts["numpy"] == expected.numpy
    assert facts["numpy_file"].startswith("/usr/lib/python3/dist-packages/numpy/")
    venv_packages = emulated_pi.ssh(f"ls /opt/edge/current/venv/lib/python{expected.python}/site-packages").stdout
    assert "numpy" not in venv_packages.split(), "pip installed a NumPy into the venv"
    assert emulated_pi.ssh("cat /etc/debian_version").stdout.startswith(expected.debian)


def test_second_deploy_changes_nothing(emulated_pi: EmulatedPi) -> None:
    pid = service_pid(emulated_pi)
    proc = deploy(emulated_pi, DEMO_MODEL)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "changed=0" in proc.stdout and "ok, no changes" in proc.stdout
    assert service_pid(emulated_pi) == pid, "a no-change deploy restarted the service"


def test_systemd_restarts_the_loop_after_kill_9(emulated_pi: EmulatedPi) -> None:
    """Timed on the guest's own monotonic clock (the kill, then systemd's start timestamp of the new process)."""
    pid = service_pid(emulated_pi)
    killed_at_s = float(emulated_pi.ssh(f"sudo kill -9 {pid} && cut -d' ' -f1 /proc/uptime").stdout)
    deadline = time.monotonic() + 5 * RESTART_WITHIN_S
    while time.monotonic() < deadline:
        new_pid = service_pid(emulated_pi)
        if new_pid not in (0, pid):
            break
        time.sleep(1)
    else:
        raise AssertionError(f"edge.service had no new process {5 * RESTART_WITHIN_S} s after kill -9")
    started_us = emulated_pi.ssh("systemctl show --property ExecMainStartTimestampMonotonic --value edge.service")
    restart_s = int(started_us.stdout) / 1e6 - killed_at_s
    print(f"restarted by systemd {restart_s:.1f} s after kill -9 (guest clock, emulated; RestartSec=5)")
    assert 0 < restart_s < RESTART_WITHIN_S
    assert emulated_pi.ssh("systemctl show --property NRestarts --value edge.service").stdout.strip() != "0"
    emulated_pi.wait_stats(SERVICE_START_S)


def test_after_a_reboot_the_service_is_back_and_serving_frames(emulated_pi: EmulatedPi) -> None:
    boot_id = emulated_pi.ssh("cat /proc/sys/kernel/random/boot_id").stdout.strip()
    emulated_pi.ssh("sudo systemctl reboot", check=False, timeout=60)
    deadline = time.monotonic() + 15 * 60
    while time.monotonic() < deadline:
        time.sleep(5)
        proc = emulated_pi.ssh("cat /proc/sys/kernel/random/boot_id", check=False, timeout=60)
        if proc.returncode == 0 and proc.stdout.strip() not in ("", boot_id):
            break
    else:
        raise AssertionError("the emulated Pi did not come back from its reboot")
    emulated_pi.wait_stats(SERVICE_START_S)
    status, jpeg = emulated_pi.get("/frame.jpg", timeout=30)
    assert status == 200 and jpeg[:2] == b"\xff\xd8", (status, jpeg[:40])
    assert emulated_pi.ssh("systemctl is-active edge.service").stdout.strip() == "active"


def test_doctor_is_green_or_names_a_fix(emulated_pi: EmulatedPi) -> None:
    proc = driver("doctor", "--pi", emulated_pi.pi, "--", "--json", timeout=300)
    payload = json.loads(proc.stdout[proc.stdout.index("{") :])
    checks = {c["name"]: c for c in payload["checks"]}
    assert payload["emulated"] is True
    assert checks["emulation"]["detail"] == "emulated (qemu): speed is not Pi speed"
    for name in ("python", "tflite runtime", "numpy/runtime ABI", "opencv", "edge package", "numpy source"):
        assert checks[name]["status"] == "ok", checks[name]
    for check in payload["checks"]:
        assert check["status"] in ("ok", "skip") or check["hint"], check
    assert "/usr/lib/python3/dist-packages" in checks["numpy source"]["detail"]


def test_pi_run_stops_the_service_for_the_foreground_run_and_restarts_it(emulated_pi: EmulatedPi) -> None:
    run = driver("run", "--pi", emulated_pi.pi, "--", "--source", "synthetic", "--unpaced", "--frames", "2", "--quiet")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "edge.service had the camera: stopped for this run" in run.stderr
    assert "edge.service started again" in run.stderr
    assert "in use by another process" not in run.stderr
    assert emulated_pi.ssh("systemctl is-active edge.service").stdout.strip() == "active"


def test_the_runtime_reads_a_real_v4l2_camera_device(emulated_pi: EmulatedPi) -> None:
    """Debian's kernel ships ``vivid`` (a virtual V4L2 webcam): the deployed runtime reads /dev/video0 through
    OpenCV's V4L2 backend as the ``pi`` user (group ``video``), as it reads a USB webcam on a Pi."""
    emulated_pi.ssh("sudo modprobe vivid && sudo udevadm settle -t 60")
    assert emulated_pi.ssh("cat /sys/class/video4linux/video0/name").stdout.strip().startswith("vivid")
    run = emulated_pi.ssh(
        f"cd /tmp && {pi.REMOTE_ROOT}/current/venv/bin/python -m edge run --model {pi.REMOTE_ROOT}/models/current.tflite"
        " --source 0 --frames 5 --threads 1 --quiet --report /tmp/vivid.json && cat /tmp/vivid.json",
        timeout=900,
    )
    report = json.loads(run.stdout[run.stdout.index("{") :])
    assert report["source"]["kind"] == "device" and report["source"]["errors"] == 0
    assert report["frames"] == 5 and report["finished"] == "frame limit"


def test_pi_bench_says_emulated_and_matches_the_map_measured_here(emulated_pi: EmulatedPi, tmp_path: Path) -> None:
    """Same model, same synthetic frames: the int8 kernels on the Pi's CPU give this machine's mAP (within 1)."""
    proc = driver("bench", "--pi", emulated_pi.pi, "--frames", str(BENCH_FRAMES), "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-4000:]
    (report_path,) = tmp_path.rglob("bench-*.json")
    report = json.loads(report_path.read_text())
    assert report["frames"] == BENCH_FRAMES
    assert report["system"]["machine"] == "aarch64"
    assert report["system"]["emulated"] is True
    local_report = tmp_path / "local.json"
    local = subprocess.run(
        [sys.executable, "-m", "edge", "run", "--model", str(DEMO_MODEL), "--source", "synthetic", "--unpaced"]
        + ["--frames", str(BENCH_FRAMES), "--quiet", "--report", str(local_report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert local.returncode == 0, local.stderr[-2000:]
    here = json.loads(local_report.read_text())["accuracy"]["map50"]
    there = report["accuracy"]["map50"]
    print(f"synthetic mAP@0.5 over {BENCH_FRAMES} frames: emulated Pi {there:.4f}, here {here:.4f}")
    assert here > 0.5
    assert abs(there - here) * 100 <= 1.0


def test_rollback_switches_the_model_and_the_service_picks_it_up(emulated_pi: EmulatedPi, second_model: Path) -> None:
    proc = deploy(emulated_pi, second_model)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert emulated_pi.wait_stats(SERVICE_START_S, lambda s: s.get("model") == model_file(second_model))
    proc = driver("rollback", "--pi", emulated_pi.pi, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert emulated_pi.ssh("readlink /opt/edge/models/current.tflite").stdout.strip() == model_file(DEMO_MODEL)
    assert emulated_pi.ssh("readlink /opt/edge/models/previous.tflite").stdout.strip() == model_file(second_model)
    stats = emulated_pi.wait_stats(
        SERVICE_START_S, lambda s: s.get("model") == model_file(DEMO_MODEL) and s.get("frames", 0) > 0
    )
    assert stats["model"] == model_file(DEMO_MODEL)


def test_interrupted_deploy_leaves_the_previous_install_working(emulated_pi: EmulatedPi, second_model: Path) -> None:
    before = emulated_pi.ssh("readlink /opt/edge/current").stdout.strip()
    env = {**os.environ, "EDGE_RELEASE_SALT": f"interrupted-{time.time()}"}
    cmd = [*DRIVER, "deploy", "--pi", emulated_pi.pi, "--model", str(second_model), "--source", "synthetic"]
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
    assert emulated_pi.ssh("readlink /opt/edge/current").stdout.strip() == before
    assert emulated_pi.ssh("readlink /opt/edge/models/current.tflite").stdout.strip() == model_file(DEMO_MODEL)
    assert emulated_pi.ssh("systemctl is-active edge.service").stdout.strip() == "active"
    emulated_pi.wait_stats(SERVICE_START_S, lambda s: s.get("model") == model_file(DEMO_MODEL))
    run = driver("run", "--pi", emulated_pi.pi, "--", "--source", "synthetic", "--unpaced", "--frames", "2", "--quiet")
    assert run.returncode == 0, run.stderr[-3000:]


def detections_on_a_fixed_frame(emulated_pi: EmulatedPi) -> list[dict]:
    """The demo model on synthetic frame 0 (seed 0), as JSON lines; exit status 0 (no SIGILL) is asserted."""
    run = driver(
        "run", "--pi", emulated_pi.pi, "--", "--source", "synthetic", "--unpaced", "--frames", "1", "--quiet",
        "--score-threshold", "0.3", "--jsonl", "-", timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, f"{emulated_pi.cpu}: exit {run.returncode}\n{run.stderr[-2000:]}"
    (line,) = [line for line in run.stdout.splitlines() if line.startswith("{")]
    return json.loads(line)["detections"]


def test_the_demo_model_gives_the_same_detections_on_every_pi_cpu(emulated_pi: EmulatedPi) -> None:
    """Cortex-A53 (Pi 3, Zero 2 W), A72 (Pi 4: no dot product, no LSE atomics), A76 (Pi 5): no illegal instruction."""
    results = {}
    for cpu in ("cortex-a72", "cortex-a53", "cortex-a76"):
        if cpu != emulated_pi.cpu:
            emulated_pi.boot(cpu)
        assert f"CPU part\t: {CPU_PART[cpu]}" in emulated_pi.ssh("cat /proc/cpuinfo").stdout, cpu
        results[cpu] = detections_on_a_fixed_frame(emulated_pi)
    reference = results["cortex-a72"]
    assert reference, "no detection on the fixed frame"
    print(f"fixed frame: {len(reference)} detections, identical on {', '.join(results)}")
    for cpu, detections in results.items():
        assert detections == reference, f"{cpu} differs from cortex-a72"
