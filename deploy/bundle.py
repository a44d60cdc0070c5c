"""Build the edge wheel for a deploy and name its release by content.

    python deploy/bundle.py   # -> {"release": "<12 hex>", "wheel": "/abs/path/edge_ssd-...whl", "requirements": ...}

The release id hashes the edge sources, ``edge/pyproject.toml`` and ``deploy/requirements-pi.txt``, so an
unchanged tree maps to the same release on the Pi (nothing to do) and any change to a new one.
``EDGE_RELEASE_SALT=<text>`` forces a fresh release of the same sources (e.g. to rebuild a damaged venv).
The wheel is built from a copy of ``edge/`` so the working tree gets no ``build/`` or ``*.egg-info``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EDGE = ROOT / "edge"
REQUIREMENTS = ROOT / "deploy" / "requirements-pi.txt"
CACHE = ROOT / ".cache" / "deploy" / "wheels"


def source_files() -> list[Path]:
    """The files that make a release: ``edge/**/*.py``, ``edge/pyproject.toml``, the Pi requirements."""
    files = [p for p in EDGE.rglob("*.py") if "__pycache__" not in p.parts and "build" not in p.parts]
    return sorted(files) + [EDGE / "pyproject.toml", REQUIREMENTS]


def release_id(files: list[Path], salt: str = "") -> str:
    """sha256 over ``salt`` and (relative path, bytes) of ``files``, first 12 hex digits."""
    digest = hashlib.sha256(salt.encode())
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def build_wheel(release: str) -> Path:
    """Build (once per release) the pure-Python edge wheel into ``.cache/deploy/wheels/<release>/``."""
    out = CACHE / release
    wheels = sorted(out.glob("*.whl"))
    if wheels:
        return wheels[0]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "edge"
        shutil.copytree(EDGE, src, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
        staging = Path(tmp) / "wheel"
        cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(staging)]
        subprocess.run([*cmd, str(src)], check=True)
        out.mkdir(parents=True, exist_ok=True)
        (wheel,) = staging.glob("*.whl")
        # Copy under a private name, then rename: a deploy running beside this one never sees half a wheel.
        partial = out / f"{wheel.name}.{os.getpid()}.partial"
        shutil.copyfile(wheel, partial)
        os.replace(partial, out / wheel.name)
        return out / wheel.name


def main() -> int:
    release = release_id(source_files(), os.environ.get("EDGE_RELEASE_SALT", ""))
    wheel = build_wheel(release)
    print(json.dumps({"release": release, "wheel": str(wheel), "requirements": str(REQUIREMENTS)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
