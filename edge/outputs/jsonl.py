"""``JsonlOutput``: one JSON object per frame to a file or stdout."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TextIO

from edge.outputs.base import FrameResult, Output, OutputError


class JsonlOutput(Output):
    """One JSON object per frame to a file or ``-`` (stdout):
    ``{"time": unix s, "frame": index, "detections": [...], "stage_ms": {...}, "latency_ms": capture->result}``."""

    name = "jsonl"

    def __init__(self, target: str | Path) -> None:
        self.target = str(target)
        self._stream: TextIO | None = None
        self._owns = False

    def open(self) -> JsonlOutput:
        if self.target == "-":
            self._stream = sys.stdout
        else:
            path = Path(self.target)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._stream = path.open("w", buffering=1)
            except OSError as exc:
                raise OutputError(f"--jsonl {self.target!r}: cannot open for writing ({exc.strerror})") from exc
            self._owns = True
        return self

    def write(self, result: FrameResult) -> None:
        assert self._stream is not None, "JsonlOutput.write before open()"
        record = {
            "time": round(result.wall_time, 6),
            "frame": result.index,
            "detections": result.detections_json(),
            "stage_ms": {k: round(v, 3) for k, v in result.stage_ms.items()},
            "latency_ms": round((time.monotonic() - result.capture_time) * 1000.0, 3),
        }
        self._stream.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self._stream is not None:
            self._stream.flush()
            if self._owns:
                self._stream.close()
            self._stream = None
