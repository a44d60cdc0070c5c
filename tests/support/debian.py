"""Install a Debian package a test needs (chromium, xvfb), once per machine, under a file lock."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

LOCK = Path("/tmp/edge-tests-apt-install.lock")


def debian_tool(command: str, package: str) -> str | None:
    """Path of ``command``, installing Debian's ``package`` with apt-get when it is missing; None if impossible
    (no apt-get, not root and no passwordless sudo, or no package registry)."""
    LOCK.touch(exist_ok=True)
    with LOCK.open("r+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = shutil.which(command)
        if found:
            return found
        if shutil.which("apt-get") is None:
            return None
        prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for step in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", package]):
            try:
                subprocess.run(prefix + step, check=True, capture_output=True, timeout=900, env=env)
            except (OSError, subprocess.SubprocessError):
                return None
        return shutil.which(command)
