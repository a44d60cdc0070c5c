"""The emulated Pi for ``@pytest.mark.pi`` tests: started (and built, the first time) once per session.

The tests run only with ``RUN_PI_TESTS=1`` (``make test-pi`` sets it): building the emulator takes minutes.
An emulator already running is used and left running; one started here is stopped at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EMULATOR = ROOT / "scripts" / "pi_emulator.sh"
BUILD_TIMEOUT_S = 90 * 60


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = None
    if os.environ.get("RUN_PI_TESTS") != "1":
        reason = "emulated-Pi tests run with RUN_PI_TESTS=1 (make test-pi): building the emulator takes minutes"
    elif os.geteuid() != 0:
        reason = "the emulated Pi needs root (debootstrap, chroot, mount)"
    elif not Path(sys.executable).with_name("ansible-playbook").exists():
        reason = "ansible-core is not installed (pip install -r requirements/deploy.txt)"
    if reason:
        for item in items:
            if "pi" in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def pi_host() -> Iterator[str]:
    """``user@127.0.0.1:port`` of the running emulated Pi."""
    status = subprocess.run([str(EMULATOR), "status"], capture_output=True, text=True, timeout=30)
    started_here = status.returncode != 0
    if started_here:
        start = subprocess.run([str(EMULATOR), "start"], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        assert start.returncode == 0, f"pi emulator did not start:\n{start.stderr[-3000:]}"
        status = start
    lines = [line for line in status.stdout.splitlines() if line.startswith("PI=")]
    assert lines, f"no PI= line from {EMULATOR}: {status.stdout!r}"
    try:
        yield lines[-1].removeprefix("PI=")
    finally:
        if started_here:
            subprocess.run([str(EMULATOR), "stop"], capture_output=True, timeout=120)
