"""Keep freed frame buffers inside the process (glibc ``mallopt``), so a new frame does not page-fault in afresh.

A camera loop allocates a frame-sized array (0.9 MB at 640x480) for every frame and frees it a few frames
later, in another thread. glibc maps blocks over its dynamic threshold straight from the kernel and hands
the top of a heap back once more than twice that is free; either way the next frame's pages are new and
fault in one by one (tens of minor faults per frame, measured in ``scripts/bench_pipeline.py``'s loop).
Fixed thresholds keep those blocks in the heap, where the next frame reuses them. The memory kept is what
the loop already used at its peak, returned to the system when more than ``TRIM_THRESHOLD_BYTES`` is free.
"""

from __future__ import annotations

import ctypes
import logging
import platform
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
"""``mallopt`` parameters, from glibc's ``malloc.h``."""
MMAP_THRESHOLD_BYTES = 16 << 20
"""Blocks from this size up still come straight from the kernel (a 1920x1080 RGB frame is 6.2 MB); glibc's
ceiling for the value is 16 MB on 32-bit systems (Raspberry Pi OS armhf), 32 MB on 64-bit."""
TRIM_THRESHOLD_BYTES = 64 << 20
"""Free memory at the top of a heap beyond this goes back to the system."""


def keep_freed_frame_memory() -> bool:
    """Set glibc's fixed mmap and trim thresholds (process-wide, not undone); True when glibc took them.

    False, and nothing changed, on other C libraries and systems.
    """
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    if not done:
        log.debug("mallopt refused the frame-memory thresholds")
    return done
