"""A small threaded MJPEG HTTP server: ``/`` live page, ``/stream`` multipart MJPEG, ``/stats`` JSON.

The pipeline calls ``publish(jpeg_bytes)`` once per frame (encoding happens once, not per client). Each
client has its own thread that sends the newest frame whenever it is ready for one, so a slow client
simply skips frames and never blocks the camera loop or other clients. A client that takes no whole frame
within a few seconds (it connected and never reads) is dropped, and stream slots are capped per client
address and in all, so clients that never read cannot keep real viewers out. With credentials
(``edge.auth``) every path needs HTTP Basic authentication; when to require them is ``edge.auth``'s rule.
"""

from __future__ import annotations

import collections
import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edge.auth import REALM, Credentials, FailedLoginLimiter

logger = logging.getLogger(__name__)

BOUNDARY = "edgeframe"

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>edge detector — live</title>
<style>
body {{ background: #111; color: #ddd; font: 14px sans-serif; margin: 1em; }}
img {{ max-width: 100%; border: 1px solid #444; }}
pre {{ background: #1b1b1b; padding: .5em; }}
</style>
</head>
<body>
<h1>edge detector — live</h1>
<img id="stream" src="/stream" alt="live annotated stream">
<p>frames seen by this page: <span id="updates">0</span></p>
<pre id="stats">waiting for /stats…</pre>
<canvas id="probe" width="32" height="24" hidden></canvas>
<script>
const img = document.getElementById("stream");
const probe = document.getElementById("probe").getContext("2d", {{willReadFrequently: true}});
let last = null, updates = 0;
function sample() {{
  if (!img.naturalWidth) return;
  probe.drawImage(img, 0, 0, 32, 24);
  const data = probe.getImageData(0, 0, 32, 24).data;
  let hash = 0;
  for (let i = 0; i < data.length; i += 7) hash = (hash * 31 + data[i]) | 0;
  if (hash !== last) {{ last = hash; updates += 1; }}
  document.getElementById("updates").textContent = updates;
  document.body.dataset.updates = updates;
}}
async function stats() {{
  try {{
    // location.origin, not "/stats": a page opened as http://user:pass@host/ resolves relative URLs with the
    // credentials in them, which fetch() refuses; same-origin requests carry the browser's cached credentials.
    const response = await fetch(new URL("/stats", location.origin), {{cache: "no-store"}});
    if (!response.ok) throw new Error("HTTP " + response.status);
    document.getElementById("stats").textContent = JSON.stringify(await response.json(), null, 1);
  }} catch (error) {{
    document.getElementById("stats").textContent = "stats unavailable: " + error;
  }}
}}
setInterval(sample, {sample_ms});
setInterval(stats, 1000);
stats();
</script>
</body>
</html>
"""


def parse_host_port(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``"8080"``, ``":8080"``, ``"0.0.0.0:8080"`` -> ``(host, port)``; binds ``default_host`` when no host is given."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    try:
        port_number = int(port)
    except ValueError as exc:
        raise ValueError(f"--mjpeg: expected HOST:PORT or PORT, got {text!r}") from exc
    if not 0 <= port_number <= 65535:
        raise ValueError(f"--mjpeg: port must be in 0..65535, got {port_number}")
    return (host or default_host), port_number


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True


class _HttpServer6(_HttpServer):
    address_family = socket.AF_INET6


class MjpegServer:
    """Serve the newest published JPEG to HTTP clients, with optional Basic authentication and bounded slots.

    ``stats_provider`` returns the JSON-ready dict served at ``/stats``. ``port=0`` picks a free port (see
    ``port`` after ``start()``). ``credentials`` (``edge.auth.Credentials``): every path answers 401 without
    them. At most ``max_clients`` concurrent ``/stream`` clients in all and ``max_clients_per_address`` from
    one IP address; more get HTTP 503. A client that cannot take a whole frame within ``client_timeout_s``
    (or sends no request for that long) is dropped, so clients that never read free their slot in seconds.
    ``backlog`` is the listen queue length. ``login_limiter`` (default ``FailedLoginLimiter()``: 10 wrong
    passwords a minute lock that address out for a minute, with HTTP 429) slows password guessing.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        stats_provider: Callable[[], dict[str, Any]] | None = None,
        max_clients: int = 16,
        sample_ms: int = 200,
        credentials: Credentials | None = None,
        max_clients_per_address: int = 4,
        client_timeout_s: float = 3.0,
        backlog: int = 64,
        login_limiter: FailedLoginLimiter | None = None,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.stats_provider = stats_provider or (lambda: {})
        self.max_clients = max_clients
        self.max_clients_per_address = max_clients_per_address
        self.client_timeout_s = client_timeout_s
        self.backlog = backlog
        self.credentials = credentials
        self.login_limiter = login_limiter if login_limiter is not None else FailedLoginLimiter()
        self.page = PAGE.format(sample_ms=sample_ms).encode()
        self._condition = threading.Condition()
        self._jpeg: bytes | None = None
        self._part = b""
        self._sequence = 0
        self._clients: collections.Counter[str] = collections.Counter()
        self._closed = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.frames_sent = 0
        self.clients_dropped = 0

    @property
    def port(self) -> int:
        if self._server is None:
            return self.requested_port
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def clients(self) -> int:
        with self._condition:
            return self._clients.total()

    def start(self) -> MjpegServer:
        server_class = _HttpServer6 if ":" in self.host else _HttpServer
        server = server_class((self.host, self.requested_port), _make_handler(self), bind_and_activate=False)
        server.request_queue_size = self.backlog
        try:
            server.server_bind()
            server.server_activate()
        except OSError as exc:
            server.server_close()
            raise OSError(f"--mjpeg {self.host}:{self.requested_port}: cannot listen ({exc.strerror or exc})") from exc
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="mjpeg-server", daemon=True)
        self._thread.start()
        logger.info("MJPEG stream at %s%s", self.url, "" if self.credentials else " (no authentication)")
        return self

    def publish(self, jpeg: bytes) -> None:
        """Make ``jpeg`` the newest frame and wake waiting clients; never blocks on clients."""
        part = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
        part += jpeg + b"\r\n"
        with self._condition:
            self._jpeg = jpeg
            self._part = part
            self._sequence += 1
            self._condition.notify_all()

    def wait_frame(self, after: int, timeout: float) -> tuple[int, bytes | None]:
        """Block until a frame newer than sequence ``after`` exists (or timeout / close): ``(sequence, jpeg)``."""
        with self._condition:
            self._condition.wait_for(lambda: self._sequence > after or self._closed.is_set(), timeout=timeout)
            return self._sequence, self._jpeg

    def _wait_part(self, after: int, timeout: float) -> tuple[int, bytes]:
        """Like ``wait_frame`` but returns the whole multipart part (boundary, headers, JPEG, CRLF)."""
        with self._condition:
            self._condition.wait_for(lambda: self._sequence > after or self._closed.is_set(), timeout=timeout)
            return self._sequence, self._part

    def _enter_client(self, address: str) -> bool:
        with self._condition:
            if self._clients.total() >= self.max_clients or self._clients[address] >= self.max_clients_per_address:
                return False
            self._clients[address] += 1
            return True

    def _leave_client(self, address: str, dropped: bool) -> None:
        with self._condition:
            self._clients[address] -= 1
            if self._clients[address] <= 0:
                del self._clients[address]
            self.clients_dropped += int(dropped)

    def stop(self) -> None:
        self._closed.set()
        with self._condition:
            self._condition.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> MjpegServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


STREAM_SEND_BUFFER = 256 * 1024
"""``SO_SNDBUF`` of a ``/stream`` socket: enough for a few frames, small enough that a client that does not read
fills it (and then times out) within seconds instead of hiding in megabytes of auto-tuned kernel buffer."""


def _make_handler(server: MjpegServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = server.client_timeout_s  # socket timeout: a request or a whole frame must pass within it

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("mjpeg %s: " + format, self.client_address[0], *args)

        def _send_body(
            self, status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _authorized(self) -> bool:
            if server.credentials is None:
                return True
            address = self.client_address[0]
            wait_s = server.login_limiter.retry_after(address)
            if wait_s > 0:
                retry = {"Retry-After": str(max(1, round(wait_s)))}
                self._send_body(429, "text/plain", b"too many wrong passwords: try again later\n", retry)
                return False
            authorization = self.headers.get("Authorization")
            if server.credentials.accepts(authorization):
                server.login_limiter.succeeded(address)
                return True
            if authorization is not None:
                server.login_limiter.failed(address)
                logger.warning("mjpeg: wrong credentials from %s", address)
            challenge = {"WWW-Authenticate": f'Basic realm="{REALM}"'}
            self._send_body(401, "text/plain", b"authentication required\n", challenge)
            return False

        def do_GET(self) -> None:
            if not self._authorized():
                return
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._send_body(200, "text/html; charset=utf-8", server.page)
            elif path == "/stats":
                body = json.dumps(server.stats_provider(), default=str).encode()
                self._send_body(200, "application/json", body)
            elif path == "/stream":
                self._stream()
            elif path == "/frame.jpg":
                _, jpeg = server.wait_frame(0, timeout=5.0)
                if jpeg is None:
                    self._send_body(503, "text/plain", b"no frame yet\n")
                else:
                    self._send_body(200, "image/jpeg", jpeg)
            else:
                self._send_body(404, "text/plain", b"not found: try /, /stream, /stats\n")

        def _stream(self) -> None:
            address = self.client_address[0]
            if not server._enter_client(address):
                self._send_body(503, "text/plain", b"too many stream clients\n", {"Retry-After": "5"})
                return
            dropped = False
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SEND_BUFFER)
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                sequence = 0
                while not server._closed.is_set():
                    newest, part = server._wait_part(sequence, timeout=1.0)
                    if not part or newest == sequence:
                        continue
                    sequence = newest
                    self.wfile.write(part)  # sendall under the socket timeout: a stalled client raises here
                    server.frames_sent += 1
            except TimeoutError:
                dropped = True
                logger.info("mjpeg %s: dropped a client that took no frame for %g s", address, self.timeout)
            except OSError:  # client went away (broken pipe, reset)
                pass
            finally:
                server._leave_client(address, dropped)

    return Handler
