"""The emulated Pi for ``@pytest.mark.pi`` tests: a freshly booted VM (scripts/pi_emulator.sh) for the session.

The tests run only with ``RUN_PI_TESTS=1`` (``make test-pi`` sets it): building the image takes minutes, and each
session starts from a freshly flashed disk (``reset``), booted with ``PI_OS`` (trixie) on ``PI_CPU``
(cortex-a72). The VM is powered off at the end.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EMULATOR = ROOT / "scripts" / "pi_emulator.sh"
BUILD_TIMEOUT_S = 60 * 60
BOOT_TIMEOUT_S = 15 * 60


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = None
    if os.environ.get("RUN_PI_TESTS") != "1":
        reason = "emulated-Pi tests run with RUN_PI_TESTS=1 (make test-pi): building the emulator takes minutes"
    elif os.geteuid() != 0:
        reason = "building the emulated Pi needs root (mmdebstrap, chroot)"
    elif not Path(sys.executable).with_name("ansible-playbook").exists():
        reason = "ansible-core is not installed (pip install -r requirements/deploy.txt)"
    if reason:
        for item in items:
            if "pi" in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


def emulator(*args: str, timeout: float, **env: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(EMULATOR), *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **env}
    )
    assert proc.returncode == 0, f"pi_emulator.sh {' '.join(args)}:\n{proc.stderr[-3000:]}"
    return proc


@dataclasses.dataclass
class EmulatedPi:
    """The booted VM: ``pi`` is ``PI=`` for the driver; the MJPEG port of the guest is forwarded to ``mjpeg_port``."""

    pi: str
    os: str
    cpu: str
    mjpeg_port: int
    credentials: str | None = None
    """``user:password`` of the stream, read from the Pi the first time it is needed (after the deploy)."""

    def ssh(self, command: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [str(EMULATOR), "ssh", command], capture_output=True, text=True, timeout=timeout, env=self.env()
        )
        if check:
            assert proc.returncode == 0, f"{command}: rc {proc.returncode}\n{proc.stderr[-2000:]}"
        return proc

    def env(self) -> dict[str, str]:
        return {**os.environ, "PI_OS": self.os, "PI_CPU": self.cpu}

    def boot(self, cpu: str | None = None) -> None:
        """Power off (if running) and boot again, on ``cpu`` when given; the disk is kept."""
        self.cpu = cpu or self.cpu
        emulator("stop", timeout=300, PI_OS=self.os, PI_CPU=self.cpu)
        emulator("start", timeout=BOOT_TIMEOUT_S, PI_OS=self.os, PI_CPU=self.cpu)

    def get(self, path: str, timeout: float = 10, credentials: str | None = "deployed") -> tuple[int, bytes]:
        """HTTP GET on the guest's MJPEG server through the forwarded port: (status, body); (0, b"") unreachable.

        ``credentials``: ``"deployed"`` (the Pi's ``mjpeg.credentials``), a ``user:password`` string, or ``None``.
        """
        if credentials == "deployed":
            if self.credentials is None:
                self.credentials = self.ssh("cat /opt/edge/mjpeg.credentials").stdout.strip()
            credentials = self.credentials
        headers = {}
        if credentials is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.mjpeg_port}{path}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (OSError, urllib.error.URLError):
            return 0, b""

    def wait_stats(self, deadline_s: float, predicate=lambda stats: stats.get("frames", 0) > 0) -> dict:
        """Poll ``/stats`` until ``predicate`` holds; the last stats seen go in the failure message."""
        end = time.monotonic() + deadline_s
        last: dict = {}
        while time.monotonic() < end:
            status, body = self.get("/stats")
            if status == 200:
                last = json.loads(body)
                if predicate(last):
                    return last
            time.sleep(2)
        raise AssertionError(f"/stats did not get there in {deadline_s:.0f} s; last: {last}")


@pytest.fixture(scope="session")
def emulated_pi() -> Iterator[EmulatedPi]:
    os_name = os.environ.get("PI_OS", "trixie")
    cpu = os.environ.get("PI_CPU", "cortex-a72")
    emulator("build", timeout=BUILD_TIMEOUT_S, PI_OS=os_name)
    emulator("reset", timeout=300, PI_OS=os_name)
    emulator("start", timeout=BOOT_TIMEOUT_S, PI_OS=os_name, PI_CPU=cpu)
    state = dict(
        line.split("=", 1) for line in emulator("env", timeout=30, PI_OS=os_name).stdout.splitlines() if "=" in line
    )
    try:
        yield EmulatedPi(state["PI"], os_name, cpu, int(state["PI_EMULATOR_MJPEG_PORT"]))
    finally:
        subprocess.run([str(EMULATOR), "stop"], capture_output=True, timeout=300, env={**os.environ, "PI_OS": os_name})
