"""Amplitude concurrency gates and RevenueCat rpm (docs/upstream-apis.md#amplitude-limits, #revenuecat-rate-limits)."""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECONDS = 60.0


class ConcurrencyGate:
    """Counts requests in flight; ``try_acquire`` fails once ``limit`` are running (None = unlimited)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0

    def try_acquire(self, limit: int | None) -> bool:
        with self._lock:
            if limit is not None and self._in_flight >= limit:
                return False
            self._in_flight += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    usage: int  # requests in the current window, including this one when allowed
    limit: int
    retry_after: int  # seconds until a slot frees up (0 when allowed)


class SlidingWindowLimiter:
    """Sliding 60-second window per domain, driven by an injectable monotonic clock (seconds)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}

    def hit(self, domain: str, limit: int) -> RateDecision:
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(domain, deque())
            while hits and hits[0] <= now - WINDOW_SECONDS:
                hits.popleft()
            if len(hits) >= limit:
                wait = max(1, math.ceil(hits[0] + WINDOW_SECONDS - now))
                return RateDecision(False, len(hits), limit, wait)
            hits.append(now)
            return RateDecision(True, len(hits), limit, 0)

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()
