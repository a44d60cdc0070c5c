"""deploy/requirements-pi.txt resolves for both Raspberry Pi OS releases, with pip's platform tags, no Pi needed.

Each release is Python X.Y on linux aarch64 plus the OS's NumPy (python3-numpy from apt, which the venv uses and
pip must never replace). pip resolves the pins for that interpreter and platform (``--dry-run``, PEP 658
metadata, nothing installed); the resolution must be exactly the pins plus the OS's NumPy, wheels only. A pin
that breaks one OS (a wheel missing for cp313, a dependency that wants another NumPy) fails here, before any
deploy does. Needs PyPI, like ``make setup``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import pi

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "deploy" / "requirements-pi.txt"
PLATFORMS = ("manylinux_2_27_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")


def pins(path: Path) -> dict[str, str]:
    """``{normalized name: version}`` of a ``name==version`` requirements file; ``ValueError`` on anything else."""
    found = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.\-+]+)", line)
        if match is None:
            raise ValueError(f"{path}:{number}: expected name==version, got {line!r}")
        found[normalize(match[1])] = match[2]
    return found


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def resolve(requirements: Path, python: str, numpy: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """pip's resolution of ``requirements`` for CPython ``python`` on linux aarch64 with ``numpy`` pinned."""
    constraints = tmp_path / "constraints-os.txt"
    constraints.write_text(f"numpy=={numpy}\n")
    report = tmp_path / f"report-{python}.json"
    platforms = [arg for tag in PLATFORMS for arg in ("--platform", tag)]
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--no-input"]
    cmd += ["--report", str(report), *platforms, "--python-version", python, "--implementation", "cp"]
    cmd += ["--only-binary=:all:", "-r", str(requirements), "-c", str(constraints)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("release", sorted(pi.PI_OS_RELEASES))
def test_pins_resolve_for_the_release_with_its_os_numpy(release: str, tmp_path: Path) -> None:
    os_release = pi.PI_OS_RELEASES[release]
    proc = resolve(REQUIREMENTS, os_release.python, os_release.numpy, tmp_path)
    assert proc.returncode == 0, f"{release} (cp{os_release.python}): {proc.stderr[-3000:]}"
    report = json.loads((tmp_path / f"report-{os_release.python}.json").read_text())
    resolved = {normalize(item["metadata"]["name"]): item["metadata"]["version"] for item in report["install"]}
    assert resolved == {**pins(REQUIREMENTS), "numpy": os_release.numpy}, "every transitive dependency is pinned"
    tag = f"cp{os_release.python.replace('.', '')}"
    for item in report["install"]:
        wheel = item["download_info"]["url"].rsplit("/", 1)[-1]
        assert wheel.endswith(".whl"), wheel
        if "aarch64" not in wheel:
            assert wheel.endswith("-none-any.whl"), f"{wheel}: neither pure Python nor linux aarch64"
    (litert,) = [i for i in report["install"] if normalize(i["metadata"]["name"]) == "ai-edge-litert"]
    assert f"-{tag}-{tag}-manylinux" in litert["download_info"]["url"] and "aarch64" in litert["download_info"]["url"]


def test_a_pin_without_a_cp313_wheel_fails_to_resolve(tmp_path: Path) -> None:
    """The check can fail: the pin this project shipped before Trixie (no cp313 wheel) does not resolve for it."""
    old = tmp_path / "requirements-old.txt"
    old.write_text("ai-edge-litert==1.4.0\n")
    trixie = pi.PI_OS_RELEASES["trixie"]
    proc = resolve(old, trixie.python, trixie.numpy, tmp_path)
    assert proc.returncode != 0
    assert "No matching distribution found for ai-edge-litert==1.4.0" in proc.stderr


def test_pins_reject_a_line_that_is_not_an_exact_pin(tmp_path: Path) -> None:
    loose = tmp_path / "requirements.txt"
    loose.write_text("numpy>=2\n")
    with pytest.raises(ValueError, match=r"requirements.txt:1: expected name==version"):
        pins(loose)
