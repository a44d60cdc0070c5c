"""deploy/probe.py, the deploy's preflight check: each refusal names the problem and the fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import probe

ROOT = Path(__file__).resolve().parents[2]


def target(**changes: object) -> dict:
    base = {
        "machine": "aarch64",
        "userland_bits": 64,
        "dpkg_arch": "arm64",
        "os": "Debian GNU/Linux 13 (trixie)",
        "python": ["3", "13"],
        "free_mb": 4000,
        "free_path": "/opt",
    }
    return {**base, **changes}


def problems(**changes: object) -> list[str]:
    return probe.problems(target(**changes), "3.11", "3.13", 600)


@pytest.mark.parametrize("python", [["3", "11"], ["3", "13"]])
def test_64_bit_trixie_and_bookworm_pass(python: list[str]) -> None:
    assert problems(python=python) == []


@pytest.mark.parametrize(
    "changes",
    [
        {"machine": "armv7l", "userland_bits": 32, "dpkg_arch": "armhf"},
        # 32-bit Raspberry Pi OS on a 64-bit kernel: uname says aarch64, the userland is still armhf.
        {"machine": "aarch64", "userland_bits": 32, "dpkg_arch": "armhf"},
    ],
)
def test_a_32_bit_os_is_refused_with_the_reason(changes: dict) -> None:
    (message,) = problems(**changes)
    assert "32-bit OS: no LiteRT (TFLite runtime) wheels exist for it" in message
    assert "64-bit Raspberry Pi OS" in message


def test_not_a_pi_python_too_old_or_too_new_and_no_space() -> None:
    (message,) = problems(machine="x86_64", dpkg_arch="amd64")
    assert "x86_64" in message and "not a 64-bit Raspberry Pi" in message
    (message,) = problems(python=["3", "9"])
    assert "Python 3.9, need >= 3.11" in message and "Trixie" in message
    (message,) = problems(python=["3", "14"])
    assert "wheels up to CPython 3.13" in message
    (message,) = problems(free_mb=100)
    assert "100 MiB free on /opt, need 600 MiB" in message


def test_every_problem_is_reported_at_once() -> None:
    assert len(problems(userland_bits=32, dpkg_arch="armhf", python=["3", "9"], free_mb=1)) == 3


def test_the_script_prints_facts_and_problems_as_json() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "probe.py"), "--root", "/nonexistent/edge"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    facts = json.loads(proc.stdout)
    assert facts["free_path"] == "/"
    assert facts["userland_bits"] == 64
    assert {"machine", "dpkg_arch", "os", "python", "emulated", "systemd", "user", "problems"} <= set(facts)
    if facts["machine"] not in probe.ARM64:
        assert any("not a 64-bit Raspberry Pi" in p for p in facts["problems"])
