"""Upstream budgets: concurrency gates and sliding-window rate limiters that wait when the caller's deadline allows,
and fail fast with a retry-after when it does not (docs/upstream-apis.md#amplitude-limits and #revenuecat-rate-limits).

A wait is allowed only if it ends before the effective deadline of the caller's cancel scope (`anyio.fail_after`
set by the service per operation), so a caller never hangs past its deadline. Windows live in a `WindowStore`:
in process by default, or shared by every replica through Redis (`shared.shared_state`).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import anyio

from shared.errors import Source, UpstreamRateLimitedError

DEFAULT_MAX_BLOCK = 300.0
"""Longest an upstream-supplied wait (Retry-After, backoff_ms) blocks a budget, unless configured otherwise."""


def remaining_time() -> float:
    """Seconds left before the current cancel scope's deadline (inf when there is none)."""
    return anyio.current_effective_deadline() - anyio.current_time()


class WindowStore(Protocol):
    """Where rate windows keep what was spent."""

    async def spend(self, name: str, cost: float, capacity: float, window: float, *, force: bool = False) -> float:
        """Spend `cost` if it fits (or `force`), returning 0; else the seconds until it would fit."""
        ...

    async def used(self, name: str, window: float) -> float:
        """Cost spent in the current window."""
        ...

    async def block(self, name: str, seconds: float) -> None:
        """Refuse every spend for `seconds` (the upstream said 429 + Retry-After)."""
        ...


class LocalWindowStore:
    """Windows in this process only."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, max_block: float = DEFAULT_MAX_BLOCK) -> None:
        self.clock = clock
        self.max_block = max_block
        self._spent: dict[str, deque[tuple[float, float]]] = {}
        self._blocked_until: dict[str, float] = {}

    def _window(self, name: str, window: float, now: float) -> deque[tuple[float, float]]:
        spent = self._spent.setdefault(name, deque())
        while spent and spent[0][0] <= now - window:
            spent.popleft()
        return spent

    async def spend(self, name: str, cost: float, capacity: float, window: float, *, force: bool = False) -> float:
        now = self.clock()
        blocked = self._blocked_until.get(name, 0.0) - now
        if blocked > 0 and not force:
            return blocked
        spent = self._window(name, window, now)
        used = sum(c for _, c in spent)
        if force or not spent or used + cost <= capacity:
            spent.append((now, cost))
            return 0.0
        excess, freed = used + cost - capacity, 0.0
        for stamp, amount in spent:
            freed += amount
            if freed >= excess:
                return max(0.0, stamp + window - now)
        return window

    async def used(self, name: str, window: float) -> float:
        return sum(c for _, c in self._window(name, window, self.clock()))

    async def block(self, name: str, seconds: float) -> None:
        self._blocked_until[name] = self.clock() + min(seconds, self.max_block)


class WindowLimiter:
    """At most `capacity` units of cost in any `window` seconds, shared by every caller of one budget.

    `observe` feeds it what the upstream says it counted (RevenueCat's rate-limit headers): the limit replaces the
    capacity, and usage above the window's own count (other clients on the same key) is recorded as spent now.
    """

    def __init__(
        self,
        capacity: float,
        window: float,
        *,
        source: Source,
        name: str,
        clock: Callable[[], float] = time.monotonic,
        store: WindowStore | None = None,
        max_block: float = DEFAULT_MAX_BLOCK,
    ) -> None:
        self.capacity = capacity
        self.max_block = max_block
        self.window = window
        self.source: Source = source
        self.name = name
        self.store: WindowStore = store or LocalWindowStore(clock)
        self._key = f"{source}:{name}:{int(window)}"
        self.waited = 0.0
        self.rejected = 0

    async def used(self) -> float:
        """Cost spent in the current window."""
        return await self.store.used(self._key, self.window)

    async def acquire(self, cost: float = 1.0) -> None:
        """Spend `cost`, waiting for the window if the deadline allows; else `UpstreamRateLimitedError`."""
        while True:
            wait = await self.store.spend(self._key, cost, self.capacity, self.window)
            if wait <= 0:
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

    async def observe(self, usage: int, limit: int) -> None:
        """Adopt the upstream's view: its limit, and any usage the window did not see."""
        if limit > 0:
            self.capacity = float(limit)
        missing = usage - await self.store.used(self._key, self.window)
        if missing > 0:
            await self.store.spend(self._key, float(missing), self.capacity, self.window, force=True)

    async def block_for(self, seconds: float) -> None:
        """The upstream answered 429 with Retry-After: nothing is spent for that long (at most `max_block`)."""
        await self.store.block(self._key, min(seconds, self.max_block))


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

    async def observe(self, usage: int, limit: int) -> None:
        """Feed the upstream's rate-limit headers to the per-minute window."""
        if self.windows:
            await self.windows[0].observe(usage, limit)

    async def block_for(self, seconds: float) -> None:
        """The upstream answered 429: its window is full for `seconds`."""
        if self.windows:
            await self.windows[0].block_for(seconds)
