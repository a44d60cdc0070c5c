"""The MJPEG server with a real HTTP client (urllib, raw sockets) and its page in headless Chromium."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.mjpeg import BOUNDARY, MjpegServer, parse_host_port

LOCK = Path("/tmp/edge-tests-chromium-install.lock")


def _jpeg(k: int, size: tuple[int, int] = (48, 64)) -> bytes:
    frame = np.zeros((*size, 3), np.uint8)
    frame[:] = ((k * 37) % 256, (k * 91) % 256, 128)
    return cv2.imencode(".jpg", frame)[1].tobytes()


class Publisher:
    """Publishes a new, differently coloured frame every ``interval_s`` until stopped."""

    def __init__(self, server: MjpegServer, interval_s: float = 0.03) -> None:
        self.server, self.interval_s = server, interval_s
        self.stop = threading.Event()
        self.count = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.server.publish(_jpeg(self.count))
            self.count += 1
            time.sleep(self.interval_s)

    def __enter__(self) -> Publisher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


@pytest.fixture
def server() -> Iterator[MjpegServer]:
    with MjpegServer("127.0.0.1", 0, stats_provider=lambda: {"frames": 42, "fps": 29.5}, max_clients=3) as srv:
        yield srv


def _read_parts(response, count: int) -> list[bytes]:
    """Read ``count`` JPEG parts from a multipart/x-mixed-replace response."""
    parts = []
    while len(parts) < count:
        line = response.readline()
        if line.strip() != f"--{BOUNDARY}".encode():
            continue
        headers = {}
        while line := response.readline().strip():
            key, _, value = line.decode().partition(":")
            headers[key.lower()] = value.strip()
        assert headers["content-type"] == "image/jpeg"
        parts.append(response.read(int(headers["content-length"])))
    return parts


def test_index_page_and_stats(server: MjpegServer) -> None:
    with urllib.request.urlopen(server.url, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
        page = response.read().decode()
    assert '<img id="stream" src="/stream"' in page and "/stats" in page
    with urllib.request.urlopen(server.url + "stats", timeout=5) as response:
        assert response.headers["Content-Type"] == "application/json"
        assert json.loads(response.read()) == {"frames": 42, "fps": 29.5}
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(server.url + "nope", timeout=5)
    assert info.value.code == 404


def test_stream_sends_newest_frames_as_multipart_jpeg(server: MjpegServer) -> None:
    with Publisher(server), urllib.request.urlopen(server.url + "stream", timeout=5) as response:
        assert response.headers["Content-Type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        parts = _read_parts(response, 4)
    images = [cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR) for p in parts]
    assert all(img is not None and img.shape == (48, 64, 3) for img in images)
    assert len({p for p in parts}) == 4, "each part should be a new frame"


def test_slow_and_many_clients_never_block_publish(server: MjpegServer) -> None:
    big = _jpeg(0, size=(720, 1280))
    stalled = []
    for _ in range(3):  # connect and never read: their socket buffers fill up
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        stalled.append(sock)
    deadline = time.monotonic() + 5
    while server.clients < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.clients == 3
    start = time.monotonic()
    for k in range(300):
        server.publish(big + bytes([k % 256]))
    assert time.monotonic() - start < 2.0, "publish must not wait for clients"
    with pytest.raises(urllib.error.HTTPError) as info:  # max_clients reached
        urllib.request.urlopen(server.url + "stream", timeout=5)
    assert info.value.code == 503
    for sock in stalled:
        sock.close()
    deadline = time.monotonic() + 10
    while server.clients > 0 and time.monotonic() < deadline:
        server.publish(_jpeg(1))
        time.sleep(0.05)
    assert server.clients == 0
    with Publisher(server), urllib.request.urlopen(server.url + "stream", timeout=5) as response:
        assert len(_read_parts(response, 2)) == 2


def test_parse_host_port() -> None:
    assert parse_host_port("8080") == ("127.0.0.1", 8080)
    assert parse_host_port(":9000") == ("127.0.0.1", 9000)
    assert parse_host_port("0.0.0.0:8081") == ("0.0.0.0", 8081)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_host_port("localhost:http")


def test_port_in_use_is_a_clear_error(server: MjpegServer) -> None:
    with pytest.raises(OSError, match=f"--mjpeg 127.0.0.1:{server.port}: cannot listen"):
        MjpegServer("127.0.0.1", server.port).start()


def _install_chromium() -> str | None:
    """Find ``chromium``, installing the Debian package under a file lock when missing; None if impossible."""
    LOCK.touch(exist_ok=True)
    with LOCK.open("r+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = shutil.which("chromium")
        if found:
            return found
        if shutil.which("apt-get") is None:
            return None
        prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
            try:
                subprocess.run(prefix + command, check=True, capture_output=True, timeout=900, env=env)
            except (OSError, subprocess.SubprocessError):
                return None
        return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium() -> str:
    path = _install_chromium()
    if path is None:
        pytest.skip("chromium is not installed and `apt-get install chromium` is not possible here (no root/apt)")
    return path


def test_index_page_in_headless_chromium_shows_a_live_image(server: MjpegServer, chromium: str, tmp_path: Path) -> None:
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=3000",
        "--dump-dom",
        server.url,
    ]
    with Publisher(server, interval_s=0.05):
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    marker = 'data-updates="'
    assert marker in dom, f"page script did not see a decoded frame:\n{dom[:1500]}"
    updates = int(dom.split(marker, 1)[1].split('"', 1)[0])
    assert updates >= 2, f"the <img> showed {updates} distinct frame(s); expected a live, updating stream"
    assert '"frames": 42' in dom, "the page should show /stats"
