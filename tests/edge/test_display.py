"""`--display` for real: .venv-display (OpenCV's GUI build, `make display-venv`) draws the annotated stream in a
window on an X server (Xvfb), and the window's pixels are read back from Xvfb's framebuffer file (XWD format)."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.outputs import _color
from tests.support.debian import debian_tool

ROOT = Path(__file__).resolve().parents[2]
DEMO_MODEL = ROOT / "models" / "demo_int8.tflite"
SCREEN = (800, 600)
FRAME = (640, 480)


def read_xwd(path: Path) -> np.ndarray:
    """An XWD file of a 24/32-bit TrueColor ZPixmap (what Xvfb's ``-fbdir`` writes) -> RGB uint8 ``(H, W, 3)``."""
    data = path.read_bytes()
    fields = struct.unpack(">25I", data[:100])
    header_size, width, height = fields[0], fields[4], fields[5]
    byte_order, bits_per_pixel, bytes_per_line, ncolors = fields[7], fields[11], fields[12], fields[19]
    if bits_per_pixel != 32:
        raise ValueError(f"{path}: {bits_per_pixel} bits per pixel, expected 32")
    start = header_size + 12 * ncolors
    rows = np.frombuffer(data, np.uint8, height * bytes_per_line, start).reshape(height, bytes_per_line)
    pixels = rows[:, : width * 4].reshape(height, width, 4)
    return pixels[:, :, [2, 1, 0]] if byte_order == 0 else pixels[:, :, [1, 2, 3]]  # LSB first: B, G, R, pad


@pytest.fixture(scope="module")
def display_python() -> str:
    """.venv-display's python, built by the project's own make target (the one the README gives)."""
    subprocess.run(["make", "-s", "display-venv"], cwd=ROOT, check=True, capture_output=True, timeout=900)
    python = ROOT / ".venv-display" / "bin" / "python"
    probe = subprocess.run(
        [str(python), "-c", "import cv2; print(cv2.getBuildInformation())"], capture_output=True, text=True, check=True
    )
    assert "QT:                          YES" in probe.stdout, "the display environment's OpenCV has no GUI backend"
    return str(python)


@pytest.fixture()
def xvfb(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An X server on a free display number; yields (DISPLAY, its framebuffer file)."""
    binary = debian_tool("Xvfb", "xvfb")
    if binary is None:
        pytest.skip("Xvfb is not installed and `apt-get install xvfb` is not possible here (no root/apt)")
    number = next(n for n in range(90, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    fbdir = tmp_path / "fb"
    fbdir.mkdir()
    server = subprocess.Popen(
        [binary, f":{number}", "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24", "-br", "-nolisten", "tcp"]
        + ["-fbdir", str(fbdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    framebuffer = fbdir / "Xvfb_screen0"
    deadline = time.monotonic() + 20
    while not Path(f"/tmp/.X11-unix/X{number}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert framebuffer.exists(), "Xvfb did not start"
    yield f":{number}", framebuffer
    server.terminate()
    server.wait(timeout=10)


def _window(screen: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box ``(x0, y0, x1, y1)`` of everything that is not the black root window, or None."""
    ys, xs = np.nonzero(screen.any(axis=2))
    if ys.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_display_draws_the_annotated_stream_in_a_desktop_window(display_python, xvfb, tmp_path: Path) -> None:
    display, framebuffer = xvfb
    report = tmp_path / "report.json"
    command = [display_python, "-m", "edge", "run", "--model", str(DEMO_MODEL), "--source", "synthetic"]
    command += ["--display", "--duration", "120", "--quiet", "--report", str(report)]
    env = {**os.environ, "DISPLAY": display, "PYTHONPATH": str(ROOT), "QT_LOGGING_RULES": "*=false"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    colours = {tuple(int(v) for v in _color(class_id)[::-1]) for class_id in range(4)}  # RGB
    shot, box, boxed = None, None, 0
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.5)
            shot = read_xwd(framebuffer)
            box = _window(shot)
            if box is None:
                continue
            x0, y0, x1, y1 = box
            window = shot[y0:y1, x0:x1]
            boxed = max(
                int(
                    np.isin(
                        window.reshape(-1, 3) @ [65536, 256, 1], [r * 65536 + g * 256 + b for r, g, b in colours]
                    ).sum()
                ),
                boxed,
            )
            if (x1 - x0, y1 - y0) == FRAME and boxed > 100:
                break
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert shot is not None
    cv2.imwrite(str(tmp_path / "screenshot.png"), shot[:, :, ::-1])
    assert box is not None, f"nothing was drawn on the X screen\n{output}"
    x0, y0, x1, y1 = box
    assert (x1 - x0, y1 - y0) == FRAME, f"window area {box} is not the 640x480 frame\n{output}"
    window = shot[y0:y1, x0:x1]
    assert len(np.unique(window.reshape(-1, 3), axis=0)) > 50, "the window shows no camera picture"
    corner = window[:24, :80]  # the FPS overlay: white text on a black box
    assert (corner == 0).all(axis=2).mean() > 0.5 and (corner > 200).all(axis=2).sum() > 10
    assert boxed > 100, "no detection box (class colours) was drawn in the window"
    assert process.returncode == 130, output
    summary = json.loads(report.read_text())
    assert summary["frames"] > 0 and summary["finished"] == "signal SIGINT"


def test_display_in_the_headless_runtime_is_one_line_naming_the_display_environment(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge", "run", "--model", str(DEMO_MODEL), "--display", "--frames", "5"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DISPLAY": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("edge:")]
    assert errors and "make display-venv" in errors[-1] and "Traceback" not in result.stderr, result.stderr
