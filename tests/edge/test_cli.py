"""``python -m edge`` in subprocesses: errors, a real run with JSONL + report (mAP), SIGTERM, no TensorFlow."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
for _name in ("EDGE_MJPEG_PASSWORD", "EDGE_MJPEG_USER"):
    ENV.pop(_name, None)

# Runs a command with TensorFlow and Keras made unimportable (as on a Pi).
NO_TF = (
    "import sys, runpy\n"
    "for name in ('tensorflow', 'keras', 'tf_keras'):\n"
    "    sys.modules[name] = None\n"
    "sys.argv = ['edge'] + sys.argv[1:]\n"
    "runpy.run_module('edge', run_name='__main__', alter_sys=True)\n"
)


def _edge(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", NO_TF, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env or ENV
    )


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "expected an error message on stderr"
    return lines[-1]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A float32 .tflite of an untrained alpha=0.25, 96x96 SSD with edge metadata (built with TF, ~15 s)."""
    pytest.importorskip("edge.detector", reason="edge.detector (engineer E) not available yet")
    pytest.importorskip("tensorflow", reason="building the test model needs TensorFlow")
    path = tmp_path_factory.mktemp("model") / "tiny.tflite"
    script = (
        "from train.config import ModelConfig\n"
        "from train.model import build_ssd\n"
        "from convert.converter import convert\n"
        "config = ModelConfig(alpha=0.25, input_size=(96, 96), num_classes=4)\n"
        "data = convert(build_ssd(config), config, ['circle', 'triangle', 'square', 'star'], quant='float32')\n"
        f"open({str(path)!r}, 'wb').write(data)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT, env=ENV
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return path


def test_edge_package_imports_without_tensorflow() -> None:
    modules = [
        "edge.sources",
        "edge.outputs",
        "edge.mjpeg",
        "edge.pipeline",
        "edge.stats",
        "edge.system",
        "edge.cli",
        "edge.metrics",
        "edge.synthetic_scene",
        "edge.metadata",
        "edge.postprocess",
    ]
    if (ROOT / "edge" / "detector.py").exists():
        modules.append("edge.detector")
    script = (
        "import sys\n"
        "for name in ('tensorflow', 'keras'):\n"
        "    sys.modules[name] = None\n"
        f"import importlib\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
        "assert not any(k.split('.')[0] in ('tensorflow', 'keras', 'train', 'convert') "
        "for k, v in sys.modules.items() if v is not None), 'edge imported TF/keras/train/convert'\n"
        "from edge.sources import SyntheticSource\n"
        "with SyntheticSource((64, 48), paced=False, num_frames=2) as s:\n"
        "    assert s.read().ground_truth is not None\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT, env=ENV
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"


def test_missing_default_model_is_one_clear_line(tmp_path: Path) -> None:
    result = _edge("run", "--model", str(tmp_path / "nope.tflite"), "--frames", "1")
    assert result.returncode == 2
    line = _error_line(result)
    assert line.startswith("edge: error: --model") and "nope.tflite: file not found" in line


def test_unknown_source_lists_valid_kinds() -> None:
    result = _edge("run", "--source", "webcam-please", "--frames", "1")
    assert result.returncode == 2
    assert "valid: synthetic, picamera2" in _error_line(result)


def test_bad_resolution_and_frames() -> None:
    assert "WIDTHxHEIGHT" in _error_line(_edge("run", "--resolution", "big", "--frames", "1"))
    assert "--frames: expected >= 1" in _error_line(_edge("run", "--frames", "0"))


def test_info_on_corrupt_model(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    result = _edge("info", "--model", str(bad))
    assert result.returncode == 2
    assert _error_line(result).startswith(f"edge: error: --model {bad}")


def test_info_prints_metadata(tiny_model: Path) -> None:
    result = _edge("info", "--model", str(tiny_model))
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["metadata"]["labels"] == ["circle", "triangle", "square", "star"]


def test_run_corrupt_model_is_one_clear_line(tmp_path: Path) -> None:
    pytest.importorskip("edge.detector", reason="edge.detector (engineer E) not available yet")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"TFL3" * 16)
    result = _edge("run", "--model", str(bad), "--frames", "1")
    assert result.returncode != 0
    assert _error_line(result).startswith("edge: error:")


def test_run_synthetic_writes_jsonl_and_report(tiny_model: Path, tmp_path: Path) -> None:
    jsonl, report_path = tmp_path / "frames.jsonl", tmp_path / "report.json"
    result = _edge(
        "run",
        "--model",
        str(tiny_model),
        "--frames",
        "6",
        "--unpaced",
        "--resolution",
        "160x120",
        "--score-threshold",
        "0.01",
        "--jsonl",
        str(jsonl),
        "--report",
        str(report_path),
        "--quiet",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(6))
    for line in lines:
        for det in line["detections"]:
            assert det["label"] in ("circle", "triangle", "square", "star")
            assert 0.01 <= det["score"] <= 1.0 and len(det["box"]) == 4
        assert line["stage_ms"]["invoke"] > 0
    report = json.loads(report_path.read_text())
    assert report["frames"] == 6 and report["finished"] == "frame limit"
    assert report["source"]["kind"] == "synthetic"
    assert report["accuracy"]["num_images"] == 6
    assert report["accuracy"]["map50"] is None or 0.0 <= report["accuracy"]["map50"] <= 1.0
    assert report["stages_ms"]["invoke"]["p50"] > 0 and report["end_to_end_ms"]["p99"] > 0
    assert isinstance(report["system"]["emulated"], bool)


def start_process(argv: list[str]) -> subprocess.Popen:
    """``argv`` in the background from the repository root, stderr captured as text (for the signal tests)."""
    return subprocess.Popen(argv, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_frames(process: subprocess.Popen, jsonl: Path, count: int, timeout_s: float = 60) -> None:
    """Wait until the running ``process`` has written ``count`` JSON lines to ``jsonl`` (it must stay alive)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (not jsonl.exists() or len(jsonl.read_text().splitlines()) < count):
        assert process.poll() is None, process.stderr.read() if process.stderr else process.returncode
        time.sleep(0.05)


def test_sigterm_writes_the_report(tiny_model: Path, tmp_path: Path) -> None:
    jsonl, report_path = tmp_path / "frames.jsonl", tmp_path / "report.json"
    process = start_process(
        [
            sys.executable,
            "-c",
            NO_TF,
            "run",
            "--model",
            str(tiny_model),
            "--resolution",
            "160x120",
            "--fps",
            "20",
            "--jsonl",
            str(jsonl),
            "--report",
            str(report_path),
        ]
    )
    try:
        wait_for_frames(process, jsonl, 3)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, stderr[-3000:]  # 128 + SIGTERM, as a shell reports a process it ended
    report = json.loads(report_path.read_text())
    assert report["finished"] == "signal SIGTERM"
    assert report["frames"] >= 3


DEMO_MODEL = ROOT / "models" / "demo_int8.tflite"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("gap_ms", [0, 10, 25, 50])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_during_shutdown_still_writes_the_report(
    tmp_path: Path, signum: signal.Signals, gap_ms: int
) -> None:
    if not DEMO_MODEL.is_file():
        pytest.skip(f"{DEMO_MODEL} (the committed demo model) is missing")
    jsonl, report_path = tmp_path / "frames.jsonl", tmp_path / "r.json"
    process = start_process(
        [sys.executable, "-m", "edge", "run", "--model", str(DEMO_MODEL), "--resolution", "160x120"]
        + ["--jsonl", str(jsonl), "--report", str(report_path), "--quiet"]
    )
    try:
        wait_for_frames(process, jsonl, 2)
        process.send_signal(signum)
        time.sleep(gap_ms / 1000)
        if process.poll() is None:
            process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signum, stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["finished"] == f"signal {signum.name}"
    assert report["frames"] >= 2 and report["source"]["kind"] == "synthetic"
    assert report["stages_ms"]["invoke"]["p50"] > 0 and "system" in report and "model" in report
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary report left


@pytest.mark.parametrize(
    ("source", "limit", "message"),
    [
        ("7", ["--frames", "5", "--source-timeout", "1"], "source '7': no frame within 1 s (camera device 7: "),
        ("rtsp://127.0.0.1:{port}/cam", ["--duration", "1.5"], "no frame within 1.5 s (stream 'rtsp://127.0.0.1:"),
    ],
)
def test_a_source_that_never_comes_ends_a_bounded_run(
    tmp_path: Path, source: str, limit: list[str], message: str
) -> None:
    if not DEMO_MODEL.is_file():
        pytest.skip(f"{DEMO_MODEL} (the committed demo model) is missing")
    if source == "7" and Path("/dev/video7").exists():
        pytest.skip("this machine has a /dev/video7")
    report_path = tmp_path / "r.json"
    start = time.monotonic()
    result = _edge(
        "run",
        "--model",
        str(DEMO_MODEL),
        "--source",
        source.format(port=_closed_port()),
        *limit,
        "--report",
        str(report_path),
        "--quiet",
        timeout=60,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert time.monotonic() - start < 30
    line = _error_line(result)
    assert line.startswith("edge: error: ") and message in line
    report = json.loads(report_path.read_text())
    assert report["frames"] == 0 and report["finished"] == "error" and "no frame within" in report["error"]


def _auth_file(tmp_path: Path, mode: int = 0o600, text: str = "viewer:t0ken:x\n") -> Path:
    path = tmp_path / "mjpeg.auth"
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20"])
def test_mjpeg_on_a_network_address_without_credentials_is_refused(host: str, tmp_path: Path) -> None:
    result = _edge("run", "--mjpeg", f"{host}:0", "--frames", "1", "--model", str(tmp_path / "m.tflite"))
    assert result.returncode == 2
    line = _error_line(result)
    assert line.startswith(f"edge: error: --mjpeg {host}: a non-loopback address needs credentials: pass --mjpeg-auth")
    assert len([x for x in result.stderr.splitlines() if x.strip()]) == 1


def test_mjpeg_credentials_file_open_to_others_is_refused(tmp_path: Path) -> None:
    auth = _auth_file(tmp_path, mode=0o644)
    result = _edge("run", "--mjpeg", "0.0.0.0:0", "--mjpeg-auth", str(auth), "--frames", "1")
    assert result.returncode == 2
    assert _error_line(result) == (
        f"edge: error: --mjpeg-auth {auth}: mode 0644 gives group/others access; expected 0600 (chmod 600 {auth})"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mjpeg-auth", "x"], "--mjpeg-auth: only with --mjpeg HOST:PORT"),
        (["--insecure-no-auth"], "--insecure-no-auth: only with --mjpeg HOST:PORT"),
        (["--mjpeg", "8080", "--mjpeg-max-clients", "0"], "--mjpeg-max-clients: expected >= 1, got 0"),
        (["--mjpeg", "8080", "--mjpeg-max-per-address", "0"], "--mjpeg-max-per-address: expected >= 1, got 0"),
    ],
)
def test_mjpeg_flag_errors(args: list[str], message: str) -> None:
    result = _edge("run", *args, "--frames", "1")
    assert result.returncode == 2
    assert _error_line(result) == f"edge: error: {message}"


@pytest.mark.parametrize("how", ["file", "env", "insecure", "loopback"])
def test_mjpeg_exposure_check_passes_with_credentials_or_the_flag(how: str, tmp_path: Path) -> None:
    """Past the check, the run goes on to load the (missing) model: that error proves the check passed."""
    args, env = ["--mjpeg", "0.0.0.0:0"], dict(ENV)
    if how == "file":
        args += ["--mjpeg-auth", str(_auth_file(tmp_path))]
    elif how == "env":
        env["EDGE_MJPEG_PASSWORD"] = "t0ken"
    elif how == "insecure":
        args.append("--insecure-no-auth")
    else:
        args = ["--mjpeg", "127.0.0.2:0"]
    result = _edge("run", *args, "--frames", "1", "--model", str(tmp_path / "m.tflite"), env=env)
    assert result.returncode == 2
    assert _error_line(result).startswith("edge: error: --model"), result.stderr


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _http_get(url: str, authorization: str | None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_run_serves_the_stream_only_with_the_file_credentials(tmp_path: Path) -> None:
    """The deploy's contract end to end: --mjpeg HOST:PORT --mjpeg-auth FILE (0600, user:password)."""
    if not DEMO_MODEL.is_file():
        pytest.skip(f"{DEMO_MODEL} (the committed demo model) is missing")
    host = "127.0.0.2"
    port = _free_port(host)
    auth = _auth_file(tmp_path)
    right = "Basic " + base64.b64encode(b"viewer:t0ken:x").decode()
    wrong = "Basic " + base64.b64encode(b"viewer:t0ken").decode()
    process = subprocess.Popen(
        [sys.executable, "-m", "edge", "run", "--model", str(DEMO_MODEL), "--resolution", "160x120", "--quiet"]
        + ["--mjpeg", f"{host}:{port}", "--mjpeg-auth", str(auth), "--duration", "60"],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://{host}:{port}/"
    try:
        deadline = time.monotonic() + 60
        while (stats := _poll_stats(url + "stats", right)) is None:
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "the stream never came up"
            time.sleep(0.2)
        assert stats["thermal"]["samples"] >= 1 and set(stats["thermal"]["cpu_temperature_c"]) == {"min", "max", "last"}
        for authorization in (None, wrong):
            for path in ("stats", "frame.jpg", "stream"):
                status, body = _http_get(url + path, authorization)
                assert (status, body) == (401, b"authentication required\n"), path
        status, body = _http_get(url + "frame.jpg", right)
        assert status == 200 and body[:2] == b"\xff\xd8"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()


def _poll_stats(url: str, authorization: str) -> dict | None:
    """``/stats`` once it has frames, else None (not listening yet, or no frame processed yet)."""
    try:
        status, body = _http_get(url, authorization)
    except OSError:
        return None
    stats = json.loads(body) if status == 200 else {}
    return stats if stats.get("frames") else None
