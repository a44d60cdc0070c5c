"""The deploy's preflight check, run on the target with its own ``python3`` (stdlib only, Ansible ``script``).

    python3 probe.py --root /opt/edge --min-python 3.11 --max-python 3.13 --min-free-mb 600

Prints one JSON object: what the target is (architecture, userland bits, OS release, Python, free space,
emulation, systemd) and ``problems``, each one line that says what is wrong and what to do. The deploy stops
on the first host with problems, before it changes anything there.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

ARM64 = ("aarch64", "arm64")


def read(path: str) -> str:
    try:
        return Path(path).read_bytes().decode(errors="replace")
    except OSError:
        return ""


def dpkg_architecture() -> str:
    """``arm64``, ``armhf``, ... from dpkg (the userland's architecture, whatever the kernel); ``""`` without dpkg."""
    try:
        return subprocess.run(
            ["dpkg", "--print-architecture"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def os_release() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in read("/etc/os-release").splitlines() if "=" in line)
    return {key: value.strip().strip('"') for key, value in pairs}


def is_emulated() -> bool:
    """qemu-user leaks an x86 cpuinfo; qemu-system's ``virt`` machine has a ``linux,dummy-virt`` device tree."""
    cpuinfo = read("/proc/cpuinfo").lower()
    compatible = read("/sys/firmware/devicetree/base/compatible")
    return "qemu" in cpuinfo or "vendor_id" in cpuinfo or "linux,dummy-virt" in compatible


def facts(root: str) -> dict[str, Any]:
    """What the deploy needs to know of this host. ``free_mb`` is measured at the nearest existing parent of ``root``."""
    path = root
    while not os.path.exists(path):
        path = os.path.dirname(path)
    release = os_release()
    return {
        "machine": platform.machine(),
        "userland_bits": struct.calcsize("P") * 8,
        "dpkg_arch": dpkg_architecture(),
        "os": release.get("PRETTY_NAME", "unknown OS"),
        "python": list(platform.python_version_tuple()[:2]),
        "free_mb": shutil.disk_usage(path).free // 2**20,
        "free_path": path,
        "emulated": is_emulated(),
        "systemd": os.path.isdir("/run/systemd/system"),
        "user": getpass.getuser(),
        "pid1": read("/proc/1/comm").strip() or "?",
    }


def problems(target: dict[str, Any], min_python: str, max_python: str, min_free_mb: int) -> list[str]:
    """One line per reason this host cannot take the deploy, each with the fix; empty when it can."""
    found = []
    what = f"{target['os']} ({target['machine']}, {target['dpkg_arch'] or '?'} userland)"
    if target["userland_bits"] == 32 or target["dpkg_arch"] in ("armhf", "armel", "i386"):
        found.append(
            f"{what} is a 32-bit OS: no LiteRT (TFLite runtime) wheels exist for it. Flash the 64-bit Raspberry Pi "
            "OS (Trixie or Bookworm) and deploy again."
        )
    elif target["machine"] not in ARM64:
        found.append(f"{what} is not a 64-bit Raspberry Pi: the Pi runtime pins are linux aarch64 wheels.")
    python = tuple(int(part) for part in target["python"])
    version = ".".join(target["python"])
    if python < tuple(int(part) for part in min_python.split(".")):
        found.append(
            f"{what} has Python {version}, need >= {min_python}: use Raspberry Pi OS Trixie (Python 3.13) or "
            "Bookworm (3.11)."
        )
    elif python > tuple(int(part) for part in max_python.split(".")):
        found.append(
            f"{what} has Python {version}: the pinned ai-edge-litert has wheels up to CPython {max_python}. "
            "Use Raspberry Pi OS Trixie or Bookworm, or update deploy/requirements-pi.txt."
        )
    if target["free_mb"] < min_free_mb:
        found.append(
            f"{what} has {target['free_mb']} MiB free on {target['free_path']}, need {min_free_mb} MiB for the venv "
            "(OpenCV, the TFLite runtime): free some space (sudo apt clean; remove old files) and deploy again."
        )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/opt/edge")
    parser.add_argument("--min-python", default="3.11")
    parser.add_argument("--max-python", default="3.13")
    parser.add_argument("--min-free-mb", type=int, default=600)
    args = parser.parse_args(argv)
    target = facts(args.root)
    target["problems"] = problems(target, args.min_python, args.max_python, args.min_free_mb)
    print(json.dumps(target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
