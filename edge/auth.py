"""HTTP Basic credentials for the MJPEG server, and the rule for when a bind address needs them.

The contract a deploy relies on:

- ``--mjpeg-auth FILE``: FILE holds one line ``user:password`` (UTF-8; the user has no ``:``, the password
  may; a trailing newline is fine). It is read once at start and must grant no permission to group or
  others (``chmod 600``), else the run is refused.
- Without ``--mjpeg-auth``, ``EDGE_MJPEG_PASSWORD`` (user ``EDGE_MJPEG_USER``, default ``edge``).
- A loopback bind (127.0.0.0/8, ::1, ``localhost``) may run without credentials; any other bind needs them
  unless ``--insecure-no-auth`` is given. Credentials, when given, are required on every bind.
- Guessing is slowed per client address (``FailedLoginLimiter``): after ``max_failures`` wrong passwords within
  ``window_s`` that address gets HTTP 429 (even with the right password) until ``lockout_s`` have passed; other
  addresses are unaffected, and a request without credentials (a browser's first try) is not a failure.
"""

from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import hmac
import ipaddress
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from edge.errors import EdgeError

DEFAULT_USER = "edge"
PASSWORD_ENV = "EDGE_MJPEG_PASSWORD"
USER_ENV = "EDGE_MJPEG_USER"
REALM = "edge"


class AuthError(EdgeError, ValueError):
    """Credentials cannot be read, or a bind would expose the stream without them (one-line message)."""


@dataclasses.dataclass(frozen=True)
class Credentials:
    """One user and password accepted by HTTP Basic authentication."""

    user: str
    password: str = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        if not self.user or ":" in self.user:
            raise AuthError(f"user name must be non-empty and contain no ':', got {self.user!r}")
        if not self.password:
            raise AuthError(f"password for user {self.user!r} is empty")

    def accepts(self, authorization: str | None) -> bool:
        """True when an ``Authorization`` header value carries exactly these credentials.

        The decoded ``user:password`` bytes are compared in constant time with ``hmac.compare_digest``.
        """
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(decoded, f"{self.user}:{self.password}".encode())

    def header(self) -> str:
        """The ``Authorization`` header value a client sends for these credentials."""
        return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()


class FailedLoginLimiter:
    """Per-address brake on password guessing (thread-safe; ``clock`` is injectable for tests).

    ``retry_after(address)`` -> seconds the address must wait (0.0: it may try now); ``failed(address)`` records
    a wrong password; ``succeeded(address)`` forgets its failures. At most ``max_addresses`` addresses are
    tracked (the longest-quiet one is forgotten first), so a flood of source addresses cannot grow memory.
    """

    def __init__(
        self,
        max_failures: int = 10,
        window_s: float = 60.0,
        lockout_s: float = 60.0,
        max_addresses: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.max_addresses = max_addresses
        self.clock = clock
        self.lockouts = 0
        self._failures: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> float:
        with self._lock:
            times = self._failures.get(address)
            if times is None or len(times) < self.max_failures:
                return 0.0
            return max(0.0, times[-1] + self.lockout_s - self.clock())

    def failed(self, address: str) -> None:
        now = self.clock()
        with self._lock:
            times = self._failures.pop(address, None) or collections.deque(maxlen=self.max_failures)
            while times and now - times[0] > self.window_s:
                times.popleft()
            times.append(now)
            self._failures[address] = times  # most recent last
            if len(times) == self.max_failures:
                self.lockouts += 1
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)


def parse_credentials(text: str, where: str) -> Credentials:
    """``"user:password"`` (one line, trailing newline allowed) -> ``Credentials``; ``where`` names the origin."""
    line = text.removesuffix("\n").removesuffix("\r")
    if not line or "\n" in line or "\r" in line:
        raise AuthError(f"{where}: expected one line 'user:password'")
    user, sep, password = line.partition(":")
    if not sep:
        raise AuthError(f"{where}: expected one line 'user:password', found no ':'")
    try:
        return Credentials(user, password)
    except AuthError as exc:
        raise AuthError(f"{where}: {exc}") from exc


def read_credentials_file(path: str | Path) -> Credentials:
    """Read ``user:password`` from ``path``, refusing a file that group or others may access (mode & 0o077)."""
    where = f"--mjpeg-auth {path}"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise AuthError(f"{where}: cannot open ({exc.strerror or exc})") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise AuthError(f"{where}: not a regular file")
        if mode & 0o077:
            raise AuthError(
                f"{where}: mode {stat.S_IMODE(mode):04o} gives group/others access; expected 0600 (chmod 600 {path})"
            )
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        return parse_credentials(data.decode("utf-8"), where)
    except UnicodeDecodeError as exc:
        raise AuthError(f"{where}: not UTF-8 text") from exc


def credentials_from_env(environ: Mapping[str, str]) -> Credentials | None:
    """Credentials from ``EDGE_MJPEG_PASSWORD`` (user ``EDGE_MJPEG_USER``, default ``edge``); None when unset."""
    password = environ.get(PASSWORD_ENV)
    if password is None:
        return None
    try:
        return Credentials(environ.get(USER_ENV) or DEFAULT_USER, password)
    except AuthError as exc:
        raise AuthError(f"{PASSWORD_ENV}/{USER_ENV}: {exc}") from exc


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1); other names and addresses are not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, credentials: Credentials | None, insecure_no_auth: bool = False) -> None:
    """Refuse to serve the stream on a non-loopback ``host`` without credentials unless ``insecure_no_auth``."""
    if credentials is None and not insecure_no_auth and not is_loopback(host):
        raise AuthError(
            f"--mjpeg {host}: a non-loopback address needs credentials: pass --mjpeg-auth FILE (one line "
            f"user:password, mode 0600) or set {PASSWORD_ENV}, or --insecure-no-auth to serve anyone"
        )
