"""A small threaded MJPEG HTTP server: ``/`` live page, ``/stream`` multipart MJPEG, ``/stats`` JSON.

The pipeline calls ``publish(jpeg_bytes)`` once per frame (encoding happens once, not per client). Each
client has its own thread that sends the newest frame whenever it is ready for one, so a slow client
simply skips frames and never blocks the camera loop or other clients.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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
    const response = await fetch("/stats", {{cache: "no-store"}});
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


class MjpegServer:
    """Serve the newest published JPEG to any number of HTTP clients.

    ``stats_provider`` returns the JSON-ready dict served at ``/stats``. ``port=0`` picks a free port
    (see ``port`` after ``start()``). ``max_clients`` concurrent ``/stream`` clients; more get HTTP 503.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        stats_provider: Callable[[], dict[str, Any]] | None = None,
        max_clients: int = 16,
        sample_ms: int = 200,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.stats_provider = stats_provider or (lambda: {})
        self.max_clients = max_clients
        self.page = PAGE.format(sample_ms=sample_ms).encode()
        self._condition = threading.Condition()
        self._jpeg: bytes | None = None
        self._sequence = 0
        self._clients = 0
        self._closed = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.frames_sent = 0

    @property
    def port(self) -> int:
        if self._server is None:
            return self.requested_port
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def clients(self) -> int:
        with self._condition:
            return self._clients

    def start(self) -> MjpegServer:
        handler = _make_handler(self)
        try:
            server = ThreadingHTTPServer((self.host, self.requested_port), handler)
        except OSError as exc:
            raise OSError(f"--mjpeg {self.host}:{self.requested_port}: cannot listen ({exc.strerror or exc})") from exc
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="mjpeg-server", daemon=True)
        self._thread.start()
        logger.info("MJPEG stream at %s", self.url)
        return self

    def publish(self, jpeg: bytes) -> None:
        """Make ``jpeg`` the newest frame and wake waiting clients; never blocks on clients."""
        with self._condition:
            self._jpeg = jpeg
            self._sequence += 1
            self._condition.notify_all()

    def wait_frame(self, after: int, timeout: float) -> tuple[int, bytes | None]:
        """Block until a frame newer than sequence ``after`` exists (or timeout / close): ``(sequence, jpeg)``."""
        with self._condition:
            self._condition.wait_for(lambda: self._sequence > after or self._closed.is_set(), timeout=timeout)
            return self._sequence, self._jpeg

    def _enter_client(self) -> bool:
        with self._condition:
            if self._clients >= self.max_clients:
                return False
            self._clients += 1
            return True

    def _leave_client(self) -> None:
        with self._condition:
            self._clients -= 1

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


def _make_handler(server: MjpegServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30  # a client stuck for this long is dropped (its own thread only)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("mjpeg %s: " + format, self.client_address[0], *args)

        def _send_body(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
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
            if not server._enter_client():
                self._send_body(503, "text/plain", b"too many stream clients\n")
                return
            try:
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                sequence = 0
                while not server._closed.is_set():
                    newest, jpeg = server.wait_frame(sequence, timeout=1.0)
                    if jpeg is None or newest == sequence:
                        continue
                    sequence = newest
                    self.wfile.write(
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                    )
                    self.wfile.write(jpeg)
                    self.wfile.write(b"\r\n")
                    self.wfile.flush()
                    server.frames_sent += 1
            except OSError:  # client went away (broken pipe, reset, timeout)
                pass
            finally:
                server._leave_client()

    return Handler
