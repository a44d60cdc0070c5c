"""``edge.memory``: frame-sized blocks freed and allocated again reuse the process's pages instead of faulting in."""

from __future__ import annotations

import platform
import resource
import sys

import numpy as np
import pytest

from edge.memory import keep_freed_frame_memory

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's"
)

FRAME_SHAPE = (480, 640, 3)
FRAME_PAGES = int(np.prod(FRAME_SHAPE)) // resource.getpagesize()


def _faults_over_frames(count: int) -> int:
    """Minor page faults while ``count`` frames are allocated, written and freed two at a time, like a loop's."""
    frames = [np.empty(FRAME_SHAPE, np.uint8) for _ in range(2)]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for index in range(count):
        frame = np.empty(FRAME_SHAPE, np.uint8)
        frame.fill(index)
        frames = [frames[1], frame]
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@glibc
def test_freed_frames_are_reused_without_page_faults() -> None:
    assert keep_freed_frame_memory()
    _faults_over_frames(4)  # the heap grows to its working size once
    assert _faults_over_frames(50) < FRAME_PAGES  # not one frame's worth of new pages over 50 frames


def test_other_c_libraries_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    assert keep_freed_frame_memory() is False
