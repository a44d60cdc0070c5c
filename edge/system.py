"""Host facts for reports: CPU temperature, Raspberry Pi throttling flags, emulation (qemu) detection.

Every probe returns ``None`` plus a note when the facility is absent (a desktop has no ``vcgencmd``).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")
CPUINFO = Path("/proc/cpuinfo")
DEVICETREE_COMPATIBLE = Path("/sys/firmware/devicetree/base/compatible")
DMI_SYS_VENDOR = Path("/sys/class/dmi/id/sys_vendor")
QEMU_VIRT_COMPATIBLE = "linux,dummy-virt"
"""The device-tree ``compatible`` of qemu's ``virt`` machine; a Pi's reads ``raspberrypi,4-model-b``, ``brcm,...``."""

THROTTLE_BITS: dict[int, str] = {
    0: "under_voltage",
    1: "arm_frequency_capped",
    2: "currently_throttled",
    3: "soft_temperature_limit",
    16: "under_voltage_occurred",
    17: "arm_frequency_capping_occurred",
    18: "throttling_occurred",
    19: "soft_temperature_limit_occurred",
}


def cpu_temperature_c(path: Path = THERMAL_ZONE) -> float | None:
    """CPU temperature in degrees Celsius from sysfs (millidegrees in the file), ``None`` when unreadable."""
    try:
        return int(path.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return None


def parse_throttled(text: str) -> dict[str, Any]:
    """Parse ``vcgencmd get_throttled`` output (``throttled=0x50005``) into ``{"raw": int, flag: bool, ...}``."""
    _, _, value = text.strip().partition("=")
    try:
        raw = int(value, 16)
    except ValueError as exc:
        raise ValueError(f"vcgencmd get_throttled: expected 'throttled=0x...', got {text.strip()!r}") from exc
    flags: dict[str, Any] = {"raw": raw}
    flags.update({name: bool(raw >> bit & 1) for bit, name in THROTTLE_BITS.items()})
    return flags


CURRENT_THROTTLE_FLAGS: tuple[str, ...] = tuple(THROTTLE_BITS[bit] for bit in range(4))
"""Flags that say the Pi is limited right now (bits 0-3); bits 16-19 say it happened since boot."""


def throttle_event(flags: dict[str, Any], baseline: dict[str, Any] | None) -> list[str]:
    """Names of the flags in ``flags`` (``parse_throttled``) that make a throttle event during a run.

    A flag of ``CURRENT_THROTTLE_FLAGS`` set now, or an "occurred since boot" flag that was clear in
    ``baseline`` (the run's first reading): one set before the run started is not this run's event. Empty
    list: no event.
    """
    baseline = baseline or {}
    current = [name for name in CURRENT_THROTTLE_FLAGS if flags.get(name)]
    occurred = [THROTTLE_BITS[bit] for bit in range(16, 20)]
    return current + [name for name in occurred if flags.get(name) and not baseline.get(name)]


def throttling() -> dict[str, Any] | None:
    """Throttling flags from ``vcgencmd get_throttled`` when the tool exists, else ``None``."""
    tool = shutil.which("vcgencmd")
    if tool is None:
        return None
    try:
        out = subprocess.run([tool, "get_throttled"], capture_output=True, text=True, timeout=2, check=True)
        return parse_throttled(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def is_emulated(
    cpuinfo: Path = CPUINFO, compatible: Path = DEVICETREE_COMPATIBLE, dmi_vendor: Path = DMI_SYS_VENDOR
) -> bool:
    """True under qemu, from something a real Raspberry Pi does not have.

    - ``EDGE_EMULATED=1`` (set by the deploy's service settings and by ``make pi-run`` / ``pi-bench``);
    - qemu-user: an arm process that sees an x86 ``/proc/cpuinfo`` (``vendor_id``), which qemu 7.2 passes through;
    - qemu-system ``virt`` (the booted emulated Pi): its device tree is ``linux,dummy-virt``, and its cpuinfo is
      ARM's, so cpuinfo alone cannot tell; under UEFI/ACPI the DMI vendor says ``QEMU``.
    """
    if os.environ.get("EDGE_EMULATED", "") not in ("", "0"):
        return True
    text = _read(cpuinfo).lower()
    arm = platform.machine() in ("aarch64", "arm64", "armv7l")
    if "qemu" in text or (arm and "vendor_id" in text):
        return True
    if QEMU_VIRT_COMPATIBLE in _read(compatible).split("\0"):
        return True
    return _read(dmi_vendor).strip().upper().startswith("QEMU")


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode(errors="replace")
    except OSError:
        return ""


def snapshot() -> dict[str, Any]:
    """One JSON-ready dict of host facts; absent probes are ``null`` with an entry in ``notes``."""
    temperature = cpu_temperature_c()
    throttled = throttling()
    notes = []
    if temperature is None:
        notes.append(f"cpu_temperature_c: {THERMAL_ZONE} not readable on this host")
    if throttled is None:
        notes.append("throttled: vcgencmd not available (not a Raspberry Pi OS host)")
    return {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_temperature_c": temperature,
        "throttled": throttled,
        "emulated": is_emulated(),
        "notes": notes,
    }
