"""Logging that a flood of bad requests cannot turn into a flood of log lines.

A client that sends the same mistake a thousand times a second must not fill the
disk or drown the server's own warnings: `ThrottledLog` lets through a burst,
then about `rate` records a second (a token bucket), and the first record let
through after a pause says how many were dropped meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any


class TokenBucket:
    """`burst` tokens, refilled at `rate` a second; `take()` says whether one was left."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be positive and burst at least 1, got {rate}, {burst}")
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


class ThrottledLog:
    """A logger's `log` behind a token bucket; dropped records are counted, not lost silently."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        rate: float = 1.0,
        burst: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._bucket = TokenBucket(rate, burst, clock)
        self._dropped = 0
        self._lock = threading.Lock()

    @property
    def dropped(self) -> int:
        """Records dropped since the last one let through."""
        return self._dropped

    def log(self, level: int, message: str, *args: Any, **extra: Any) -> None:
        if not self._logger.isEnabledFor(level):
            return
        if not self._bucket.take():
            with self._lock:
                self._dropped += 1
            return
        with self._lock:
            dropped, self._dropped = self._dropped, 0
        if dropped:
            message = f"{message} ({dropped} similar record(s) dropped before this one)"
        self._logger.log(level, message, *args, extra=extra or None)
