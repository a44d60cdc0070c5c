"""``ReconnectingSource``: retries a live source that went away, with exponential backoff."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from edge.sources.base import Frame, FrameSource, SourceUnavailable

logger = logging.getLogger(__name__)


class ReconnectingSource(FrameSource):
    """Wraps a live source: on ``SourceUnavailable`` it closes, logs a message naming the source, waits with
    exponential backoff (``initial_backoff_s`` doubling up to ``max_backoff_s``) and reopens until it works
    again or ``max_attempts`` (None = forever) or ``stop`` is set."""

    def __init__(
        self,
        source: FrameSource,
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        max_attempts: int | None = None,
        stop: threading.Event | None = None,
        sleep: Callable[[float], Any] | None = None,
    ) -> None:
        super().__init__(source.name)
        self.source = source
        self.live = source.live
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_attempts = max_attempts
        self.stop = stop if stop is not None else threading.Event()
        self._sleep = sleep if sleep is not None else self.stop.wait
        self.reconnects = 0
        self.errors = 0

    def _open(self) -> None:
        try:
            self.source.open()
        except SourceUnavailable as exc:
            self._recover(exc)

    def _read(self) -> Frame | None:
        while not self.stop.is_set():
            try:
                return self.source.read()
            except SourceUnavailable as exc:
                self._recover(exc)
        return None

    def _recover(self, error: Exception) -> None:
        self.errors += 1
        self.last_error = str(error)
        self.source.close()
        delay = self.initial_backoff_s
        attempt = 0
        while not self.stop.is_set():
            attempt += 1
            if self.max_attempts is not None and attempt > self.max_attempts:
                raise SourceUnavailable(f"source {self.name!r}: gave up after {self.max_attempts} attempts ({error})")
            logger.warning("source %r unavailable (%s); retry %d in %.1f s", self.name, error, attempt, delay)
            self._sleep(delay)
            if self.stop.is_set():
                return
            try:
                self.source.open()
            except SourceUnavailable as exc:
                error = exc
                self.last_error = str(exc)
                delay = min(delay * 2, self.max_backoff_s)
                continue
            self.reconnects += 1
            logger.warning("source %r is back after %d attempt(s)", self.name, attempt)
            return

    def _close(self) -> None:
        self.source.close()

    def describe(self) -> dict[str, Any]:
        return {**self.source.describe(), "reconnects": self.reconnects, "errors": self.errors}
