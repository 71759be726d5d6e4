"""Upstream budgets: concurrency gates and sliding-window rate limiters that wait when the caller's deadline allows,
and fail fast with a retry-after when it does not (upstream-apis.md §1.11 and §2.9).

A wait is allowed only if it ends before the effective deadline of the caller's cancel scope (`anyio.fail_after`
set by the service per operation), so a caller never hangs past its deadline.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from shared.errors import Source, UpstreamRateLimitedError


def remaining_time() -> float:
    """Seconds left before the current cancel scope's deadline (inf when there is none)."""
    return anyio.current_effective_deadline() - anyio.current_time()


class WindowLimiter:
    """At most `capacity` units of cost in any `window` seconds, shared by every caller of one budget.

    `observe` feeds it what the upstream says it counted (RevenueCat's rate-limit headers): the limit replaces the
    capacity, and usage above our own count (other clients on the same key) is recorded as spent now.
    """

    def __init__(
        self,
        capacity: float,
        window: float,
        *,
        source: Source,
        name: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.window = window
        self.source: Source = source
        self.name = name
        self._clock = clock
        self._spent: deque[tuple[float, float]] = deque()
        self._lock = anyio.Lock()
        self.waited = 0.0
        self.rejected = 0

    def used(self) -> float:
        """Cost spent in the current window."""
        self._expire(self._clock())
        return sum(cost for _, cost in self._spent)

    def _expire(self, now: float) -> None:
        while self._spent and self._spent[0][0] <= now - self.window:
            self._spent.popleft()

    def _wait_for(self, cost: float, now: float) -> float:
        """Seconds until `cost` fits (0 when it fits now)."""
        self._expire(now)
        used = sum(c for _, c in self._spent)
        if used + cost <= self.capacity or not self._spent:
            return 0.0
        excess = used + cost - self.capacity
        freed = 0.0
        for stamp, spent in self._spent:
            freed += spent
            if freed >= excess:
                return max(0.0, stamp + self.window - now)
        return self.window

    async def acquire(self, cost: float = 1.0) -> None:
        """Spend `cost`, waiting for the window if the deadline allows; else `UpstreamRateLimitedError`."""
        async with self._lock:
            while True:
                now = self._clock()
                wait = self._wait_for(cost, now)
                if wait <= 0:
                    self._spent.append((now, cost))
                    return
                if wait >= remaining_time():
                    self.rejected += 1
                    raise UpstreamRateLimitedError(
                        f"the service's {self.source} {self.name} budget is spent; retry in {math.ceil(wait)} s.",
                        source=self.source,
                        retry_after=max(1, math.ceil(wait)),
                        upstream_status=None,
                    )
                self.waited += wait
                await anyio.sleep(wait)

    def observe(self, usage: int, limit: int) -> None:
        """Adopt the upstream's view: its limit, and any usage we did not make ourselves."""
        if limit > 0:
            self.capacity = float(limit)
        now = self._clock()
        self._expire(now)
        missing = usage - sum(c for _, c in self._spent)
        if missing > 0:
            self._spent.append((now, float(missing)))

    def block_for(self, seconds: float) -> None:
        """The upstream said 429 with Retry-After: treat the window as full for that long."""
        now = self._clock()
        self._expire(now)
        self._spent.clear()
        self._spent.append((now - self.window + seconds, self.capacity))


@dataclass
class Gate:
    """A concurrency limit plus rate windows, for one upstream endpoint family (one RevenueCat domain, say)."""

    concurrency: anyio.CapacityLimiter
    windows: tuple[WindowLimiter, ...] = ()

    @asynccontextmanager
    async def slot(self, cost: float = 1.0) -> AsyncGenerator[None]:
        """Hold a concurrency slot after spending `cost` of every window."""
        for window in self.windows:
            await window.acquire(cost)
        async with self.concurrency:
            yield

    def observe(self, usage: int, limit: int) -> None:
        """Feed the upstream's rate-limit headers to the per-minute window."""
        if self.windows:
            self.windows[0].observe(usage, limit)

    def block_for(self, seconds: float) -> None:
        """The upstream answered 429: its window is full for `seconds`."""
        if self.windows:
            self.windows[0].block_for(seconds)


def open_gate(concurrency: int) -> Gate:
    """A gate with only a concurrency limit."""
    return Gate(anyio.CapacityLimiter(concurrency))
