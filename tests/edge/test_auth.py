"""``edge.auth``: the credentials file and env contract, the constant-time Basic check, the loopback rule."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from edge.auth import (
    AuthError,
    Credentials,
    FailedLoginLimiter,
    check_exposure,
    credentials_from_env,
    is_loopback,
    parse_credentials,
    read_credentials_file,
)


def _basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def _secret_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "mjpeg.auth"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_accepts_only_the_exact_credentials() -> None:
    creds = Credentials("edge", "pa:ss wörd")
    assert creds.accepts(_basic("edge:pa:ss wörd"))
    assert creds.accepts(creds.header())
    assert creds.accepts("basic " + creds.header().split()[1])  # the scheme is case-insensitive
    for header in (
        None,
        "",
        _basic("edge:pa:ss"),
        _basic("edge:pa:ss wörd "),
        _basic("Edge:pa:ss wörd"),
        _basic("edge"),
        "Bearer " + creds.header().split()[1],
        "Basic !!not-base64!!",
        "Basic",
    ):
        assert not creds.accepts(header), header


def test_password_is_not_in_the_repr() -> None:
    assert "hunter2" not in repr(Credentials("edge", "hunter2"))


@pytest.mark.parametrize(
    ("text", "user", "password"),
    [("edge:s3cret\n", "edge", "s3cret"), ("viewer:a:b:c", "viewer", "a:b:c"), ("u:p\r\n", "u", "p")],
)
def test_parse_credentials(text: str, user: str, password: str) -> None:
    assert parse_credentials(text, "f") == Credentials(user, password)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "one line"),
        ("edge:a\nother:b\n", "one line"),
        ("justapassword\n", "no ':'"),
        (":secret", "user name must be non-empty"),
        ("edge:\n", "password for user 'edge' is empty"),
    ],
)
def test_parse_credentials_errors_name_the_origin(text: str, message: str) -> None:
    with pytest.raises(AuthError, match=f"^--mjpeg-auth x: .*{message}"):
        parse_credentials(text, "--mjpeg-auth x")


def test_credentials_file_0600_is_read(tmp_path: Path) -> None:
    assert read_credentials_file(_secret_file(tmp_path, "edge:tok3n\n")) == Credentials("edge", "tok3n")
    assert read_credentials_file(_secret_file(tmp_path, "edge:tok3n\n", 0o400)) == Credentials("edge", "tok3n")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660])
def test_credentials_file_open_to_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = _secret_file(tmp_path, "edge:tok3n\n", mode)
    with pytest.raises(AuthError) as info:
        read_credentials_file(path)
    message = str(info.value)
    assert message.startswith(f"--mjpeg-auth {path}: mode {mode:04o}") and "chmod 600" in message
    assert "\n" not in message and "tok3n" not in message


def test_missing_credentials_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(AuthError, match=r"^--mjpeg-auth .*nope: cannot open \(No such file"):
        read_credentials_file(tmp_path / "nope")
    with pytest.raises(AuthError, match="not a regular file"):
        read_credentials_file(tmp_path)


def test_credentials_from_env() -> None:
    assert credentials_from_env({}) is None
    assert credentials_from_env({"EDGE_MJPEG_PASSWORD": "t"}) == Credentials("edge", "t")
    assert credentials_from_env({"EDGE_MJPEG_PASSWORD": "t", "EDGE_MJPEG_USER": "cam"}) == Credentials("cam", "t")
    with pytest.raises(AuthError, match="^EDGE_MJPEG_PASSWORD/EDGE_MJPEG_USER: password .* is empty"):
        credentials_from_env({"EDGE_MJPEG_PASSWORD": ""})


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("127.255.0.9", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("10.0.0.1", False),
        ("raspberrypi.local", False),
        ("128.0.0.1", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_non_loopback_bind_needs_credentials_or_the_insecure_flag() -> None:
    creds = Credentials("edge", "t")
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1"):
        check_exposure(host, None)
    for host in ("0.0.0.0", "192.168.1.20", "::", "raspberrypi.local"):
        check_exposure(host, creds)
        check_exposure(host, None, insecure_no_auth=True)
        with pytest.raises(AuthError, match=f"^--mjpeg {host}: a non-loopback address needs credentials"):
            check_exposure(host, None)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failed_login_limiter_locks_out_one_address_for_a_while() -> None:
    clock = FakeClock()
    limiter = FailedLoginLimiter(max_failures=3, window_s=60, lockout_s=30, clock=clock)
    for _ in range(2):
        limiter.failed("10.0.0.5")
    assert limiter.retry_after("10.0.0.5") == 0.0
    limiter.failed("10.0.0.5")
    assert limiter.retry_after("10.0.0.5") == pytest.approx(30.0)
    assert limiter.retry_after("10.0.0.6") == 0.0, "another address is never locked out"
    clock.now += 29.0
    assert limiter.retry_after("10.0.0.5") == pytest.approx(1.0)
    clock.now += 1.5
    assert limiter.retry_after("10.0.0.5") == 0.0
    assert limiter.lockouts == 1


def test_failed_login_limiter_forgets_old_failures_and_successes() -> None:
    clock = FakeClock()
    limiter = FailedLoginLimiter(max_failures=3, window_s=10, lockout_s=30, clock=clock)
    for _ in range(2):
        limiter.failed("a")
    clock.now += 11.0  # outside the window
    limiter.failed("a")
    assert limiter.retry_after("a") == 0.0
    limiter.failed("a")
    limiter.succeeded("a")
    limiter.failed("a")
    assert limiter.retry_after("a") == 0.0


def test_failed_login_limiter_tracks_a_bounded_number_of_addresses() -> None:
    limiter = FailedLoginLimiter(max_failures=2, max_addresses=100, clock=FakeClock())
    for k in range(1000):
        limiter.failed(f"10.0.{k // 256}.{k % 256}")
    assert len(limiter._failures) == 100
