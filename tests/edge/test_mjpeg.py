"""The MJPEG server with a real HTTP client (urllib, http.client, raw sockets) and its page in headless Chromium.

Authenticated servers bind 127.0.0.2 (loopback to the OS, a different address from the clients' 127.0.0.1);
clients that never read connect from 127.0.0.10 and up, so per-address caps and total slots both apply.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import threading
import time
import types
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge import sources
from edge.auth import Credentials, FailedLoginLimiter
from edge.mjpeg import BOUNDARY, MjpegServer, parse_host_port
from edge.outputs import MjpegOutput
from edge.pipeline import Pipeline
from tests.support.debian import debian_tool

CREDENTIALS = Credentials("edge", "s3cret:token")
STATS = {"frames": 42, "fps": 29.5}


def _jpeg(k: int, size: tuple[int, int] = (48, 64), texture: bool = False) -> bytes:
    frame = np.zeros((*size, 3), np.uint8)
    frame[:] = ((k * 37) % 256, (k * 91) % 256, 128)
    if texture:  # a camera-like JPEG size (tens of kB), not a flat colour
        frame[::5] = 220
        frame[:, ::7] = 40
    return cv2.imencode(".jpg", frame)[1].tobytes()


class Publisher:
    """Publishes a new, differently coloured frame every ``interval_s`` until stopped (textured above 48x64)."""

    def __init__(self, server: MjpegServer, interval_s: float = 0.03, size: tuple[int, int] = (48, 64)) -> None:
        self.server, self.interval_s = server, interval_s
        self.size = size
        self.stop = threading.Event()
        self.count = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.server.publish(_jpeg(self.count, self.size, texture=self.size != (48, 64)))
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
    with MjpegServer("127.0.0.1", 0, stats_provider=lambda: STATS, max_clients=3) as srv:
        yield srv


@pytest.fixture
def auth_server() -> Iterator[MjpegServer]:
    with MjpegServer("127.0.0.2", 0, stats_provider=lambda: STATS, credentials=CREDENTIALS) as srv:
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


def test_ipv6_loopback_host_is_served() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    try:
        server = MjpegServer("::1", 0, stats_provider=lambda: STATS).start()
    except OSError as exc:
        pytest.skip(f"cannot listen on ::1 here ({exc})")
    try:
        assert server.url == f"http://[::1]:{server.port}/"
        with urllib.request.urlopen(server.url + "stats", timeout=5) as response:
            assert json.loads(response.read()) == STATS
    finally:
        server.stop()


def test_listen_backlog_is_sized_for_real_use(server: MjpegServer) -> None:
    assert server._server is not None and server._server.request_queue_size == 64


@pytest.fixture(scope="session")
def chromium() -> str:
    path = debian_tool("chromium", "chromium")
    if path is None:
        pytest.skip("chromium is not installed and `apt-get install chromium` is not possible here (no root/apt)")
    return path


def test_index_page_in_headless_chromium_shows_a_live_image(server: MjpegServer, chromium: str, tmp_path: Path) -> None:
    with Publisher(server, interval_s=0.05):
        dom = _page_dom(chromium, server.url, tmp_path / "profile")
    _assert_live_page(dom)


def _get(server: MjpegServer, path: str, authorization: str | None) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` with an optional ``Authorization`` header: ``(status, headers, first 64 kB of the body)``."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        connection.request("GET", path, headers={"Authorization": authorization} if authorization else {})
        response = connection.getresponse()
        return response.status, dict(response.headers), response.read(65536)
    finally:
        connection.close()


@pytest.mark.parametrize("path", ["/", "/stream", "/stats", "/frame.jpg", "/nope"])
def test_missing_or_wrong_credentials_get_401_and_no_frame(auth_server: MjpegServer, path: str) -> None:
    wrong = [
        None,
        Credentials("edge", "s3cret").header(),
        Credentials("edge", "s3cret:token!").header(),
        Credentials("admin", "s3cret:token").header(),
        "Bearer s3cret:token",
        "Basic ????",
    ]
    with Publisher(auth_server):
        for authorization in wrong:
            status, headers, body = _get(auth_server, path, authorization)
            assert status == 401, authorization
            assert headers["WWW-Authenticate"] == 'Basic realm="edge"'
            assert body == b"authentication required\n", "no page, stats or JPEG without credentials"
    assert auth_server.frames_sent == 0


def test_right_credentials_get_page_stats_frame_and_stream(auth_server: MjpegServer) -> None:
    header = CREDENTIALS.header()
    with Publisher(auth_server):
        assert _get(auth_server, "/", header)[0] == 200
        status, _, body = _get(auth_server, "/stats", header)
        assert status == 200 and json.loads(body) == STATS
        status, headers, body = _get(auth_server, "/frame.jpg", header)
        assert status == 200 and headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
        request = urllib.request.Request(auth_server.url + "stream", headers={"Authorization": header})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert len(_read_parts(response, 3)) == 3


def test_repeated_wrong_passwords_lock_out_that_address_only() -> None:
    limiter = FailedLoginLimiter(max_failures=3, window_s=60, lockout_s=1.0)
    with MjpegServer("127.0.0.2", 0, credentials=CREDENTIALS, login_limiter=limiter) as server, Publisher(server):

        def get(authorization: str | None, source: str = "127.0.0.20") -> tuple[int, dict[str, str]]:
            connection = http.client.HTTPConnection(server.host, server.port, timeout=5, source_address=(source, 0))
            try:
                connection.request(
                    "GET", "/frame.jpg", headers={"Authorization": authorization} if authorization else {}
                )
                response = connection.getresponse()
                response.read()
                return response.status, dict(response.headers)
            finally:
                connection.close()

        wrong = Credentials("edge", "guess").header()
        for _ in range(5):
            assert get(None)[0] == 401  # a browser's first request carries no password: not a failure
        for _ in range(3):
            assert get(wrong)[0] == 401
        status, headers = get(CREDENTIALS.header())
        assert status == 429 and int(headers["Retry-After"]) >= 1, "the right password waits out the lockout too"
        assert get(CREDENTIALS.header(), source="127.0.0.21")[0] == 200, "other addresses are not locked out"
        time.sleep(1.1)
        assert get(CREDENTIALS.header())[0] == 200
    assert limiter.lockouts == 1


def _stall(port: int, count: int, addresses: int = 8) -> list[socket.socket]:
    """``count`` clients from 127.0.0.10.. (``addresses`` of them) that request /stream and never read."""
    stalled = []
    for k in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.bind((f"127.0.0.{10 + k % addresses}", 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        stalled.append(sock)
    return stalled


def _watch(server: MjpegServer, within_s: float) -> float:
    """Open /stream as a viewer, retrying after 503, until 3 frames arrive: seconds it took (fails after ``within_s``)."""
    start = time.monotonic()
    while True:
        try:
            with urllib.request.urlopen(server.url + "stream", timeout=5) as response:
                assert len(_read_parts(response, 3)) == 3
                return time.monotonic() - start
        except urllib.error.HTTPError as exc:
            assert exc.code == 503, exc
        assert time.monotonic() - start < within_s, f"no frames for a viewer within {within_s} s"
        time.sleep(0.25)


@pytest.mark.parametrize("count", [16, 100])
def test_clients_that_never_read_are_dropped_and_a_viewer_gets_frames(count: int) -> None:
    with MjpegServer("127.0.0.1", 0) as server, Publisher(server, size=(480, 640)):
        stalled = _stall(server.port, count)
        try:
            deadline = time.monotonic() + 5
            while server.clients < server.max_clients and time.monotonic() < deadline:
                time.sleep(0.01)
            assert server.clients == server.max_clients, "the non-reading clients should take every slot first"
            took = _watch(server, within_s=12.0)
            assert server.clients_dropped >= server.max_clients - 1
        finally:
            for sock in stalled:
                sock.close()
    assert took < 12.0


def test_stream_slots_are_capped_per_client_address() -> None:
    with MjpegServer("127.0.0.1", 0, max_clients=8, max_clients_per_address=2) as server, Publisher(server):
        held = _stall(server.port, 2, addresses=1)
        try:
            deadline = time.monotonic() + 5
            while server.clients < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            third = _stall(server.port, 1, addresses=1)[0]  # same address 127.0.0.10: refused
            third.settimeout(5)
            assert third.recv(64).startswith(b"HTTP/1.1 503")
            third.close()
            with urllib.request.urlopen(server.url + "stream", timeout=5) as response:  # from 127.0.0.1
                assert len(_read_parts(response, 2)) == 2
        finally:
            for sock in held:
                sock.close()


def _no_detections(image: np.ndarray) -> types.SimpleNamespace:
    """A stand-in detector: finds nothing, instantly."""
    return types.SimpleNamespace(boxes=np.zeros((0, 4), np.float32), scores=np.zeros(0, np.float32), class_ids=[])


def _camera_fps(stalled_clients: int, duration_s: float = 4.0) -> float:
    """Average FPS of a paced 30 FPS synthetic camera through the pipeline into MJPEG, with clients that never read.

    The clients connect from another thread once the first frame is through, and stay until the run ends.
    """
    output = MjpegOutput("127.0.0.1", 0)
    source = sources.SyntheticSource(resolution=(320, 240), fps=30.0, paced=True)
    pipeline = Pipeline(source, _no_detections, [output], duration_s=duration_s)
    stalled: list[socket.socket] = []

    def connect() -> None:
        while pipeline.stats.frames == 0 and not pipeline.stop_event.is_set():
            time.sleep(0.01)
        stalled.extend(_stall(output.server.port, stalled_clients))

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    try:
        summary = pipeline.run()
    finally:
        thread.join(timeout=10)
        for sock in stalled:
            sock.close()
    assert len(stalled) == stalled_clients
    return summary["average_fps"]


def test_clients_that_never_read_do_not_slow_the_camera_loop() -> None:
    unloaded = _camera_fps(0)
    if unloaded <= 25.0:
        pytest.skip(f"camera paced at 30 FPS ran at {unloaded} FPS with no client: the machine is too busy to compare")
    for count in (16, 100):
        loaded = _camera_fps(count)
        assert loaded >= 0.95 * unloaded, f"{count} non-reading clients: {loaded} FPS vs {unloaded} unloaded"


def _page_dom(chromium: str, url: str, profile: Path) -> str:
    """The page's DOM after 3 s of (virtual) time in headless Chromium."""
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=3000",
        "--dump-dom",
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _assert_live_page(dom: str) -> None:
    marker = 'data-updates="'
    assert marker in dom, f"page script did not see a decoded frame:\n{dom[:1500]}"
    updates = int(dom.split(marker, 1)[1].split('"', 1)[0])
    assert updates >= 2, f"the <img> showed {updates} distinct frame(s); expected a live, updating stream"
    assert '"frames": 42' in dom, f"the page should show /stats:\n{dom.split('<pre', 1)[-1][:300]}"


def test_page_with_basic_auth_in_headless_chromium_shows_stream_and_stats(
    auth_server: MjpegServer, chromium: str, tmp_path: Path
) -> None:
    secret = urllib.parse.quote(CREDENTIALS.password, safe="")
    url = f"http://{CREDENTIALS.user}:{secret}@{auth_server.host}:{auth_server.port}/"
    with Publisher(auth_server, interval_s=0.05):
        dom = _page_dom(chromium, url, tmp_path / "profile")
    _assert_live_page(dom)
