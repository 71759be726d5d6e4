"""Upstream budgets: concurrency gates and sliding-window rate limiters that wait when the caller's deadline allows,
and fail fast with a retry-after when it does not (docs/upstream-apis.md#amplitude-limits and #revenuecat-rate-limits).

A wait is allowed only if it ends before the effective deadline of the caller's cancel scope (`anyio.fail_after`
set by the service per operation), so a caller never hangs past its deadline. Windows live in a `WindowStore`:
in process by default, or shared by every replica through Redis (`shared.shared_state`).

Units are spent only for requests that are sent: a request abandoned while it waits for a concurrency slot
(cancelled, or out of time) gives its units back. Each caller (token subject, `shared.caller`) may spend at most
`caller_share` of a window, so one caller meets a 429 of its own rather than everyone a 503; and one request may
cost at most `max_cost_share` of a window (a 422 naming the cost). A retry may only spend what leaves
`retry_reserve` of the window free: an expensive query is not retried into the budget everybody else needs.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import anyio

from shared.caller import caller
from shared.errors import CallerBudgetExceededError, QueryTooCostlyError, Source, UpstreamRateLimitedError

DEFAULT_MAX_BLOCK = 300.0
"""Longest an upstream-supplied wait (Retry-After, backoff_ms) blocks a budget, unless configured otherwise."""

COST_HINTS: dict[tuple[str, str], str] = {
    ("amplitude", "query cost"): (
        "A users query costs one unit per day of its range and a funnel days x 2 x steps: "
        "shorten the date range (or use fewer funnel steps)."
    ),
}
"""How to make a request cheaper, per (source, budget name), for the 422 of a request above the ceiling."""

CALLER_MIN_UNITS = 4.0
"""A caller may always spend this much of a window (or all of a smaller one), whatever its share: RevenueCat's
charts window is 5 a minute until its headers say otherwise, and one dashboard load (overview, conversion, refunds)
takes 4 charts calls."""


def remaining_time() -> float:
    """Seconds left before the current cancel scope's deadline (inf when there is none)."""
    return anyio.current_effective_deadline() - anyio.current_time()


def _span(seconds: float) -> str:
    return f"{seconds / 60:g} minutes" if seconds >= 120 else f"{seconds:g} s"


def _frees_at(wait: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=math.ceil(wait))).strftime("%H:%M:%S UTC")


class WindowStore(Protocol):
    """Where rate windows keep what was spent."""

    async def spend(
        self, name: str, cost: float, capacity: float, window: float, *, force: bool = False, entry: str = ""
    ) -> float:
        """Spend `cost` if it fits (or `force`), returning 0; else the seconds until it would fit. `entry` names
        the spending, for `refund`."""
        ...

    async def refund(self, name: str, cost: float, entry: str) -> None:
        """Give back what `spend(..., entry=entry)` spent (a request abandoned before it was sent)."""
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
        self._spent: dict[str, deque[tuple[float, float, str]]] = {}
        self._blocked_until: dict[str, float] = {}

    def _window(self, name: str, window: float, now: float) -> deque[tuple[float, float, str]]:
        spent = self._spent.setdefault(name, deque())
        while spent and spent[0][0] <= now - window:
            spent.popleft()
        return spent

    async def spend(
        self, name: str, cost: float, capacity: float, window: float, *, force: bool = False, entry: str = ""
    ) -> float:
        now = self.clock()
        blocked = self._blocked_until.get(name, 0.0) - now
        if blocked > 0 and not force:
            return blocked
        spent = self._window(name, window, now)
        used = sum(c for _, c, _ in spent)
        if force or not spent or used + cost <= capacity:
            spent.append((now, cost, entry))
            return 0.0
        excess, freed = used + cost - capacity, 0.0
        for stamp, amount, _ in spent:
            freed += amount
            if freed >= excess:
                return max(0.0, stamp + window - now)
        return window

    async def refund(self, name: str, cost: float, entry: str) -> None:
        spent = self._spent.get(name, deque[tuple[float, float, str]]())
        for item in spent:
            if item[2] == entry:
                spent.remove(item)
                return

    async def used(self, name: str, window: float) -> float:
        return sum(c for _, c, _ in self._window(name, window, self.clock()))

    async def block(self, name: str, seconds: float) -> None:
        self._blocked_until[name] = self.clock() + min(seconds, self.max_block)


@dataclass(frozen=True)
class Spending:
    """Units spent in one window (and in the caller's share of it), which `refund` gives back."""

    limiter: WindowLimiter
    cost: float
    entry: str
    caller_key: str | None

    async def refund(self) -> None:
        store = self.limiter.store
        await store.refund(self.limiter.key, self.cost, self.entry)
        if self.caller_key is not None:
            await store.refund(self.caller_key, self.cost, self.entry)


class WindowLimiter:
    """At most `capacity` units of cost in any `window` seconds, shared by every caller of one budget.

    `observe` feeds it what the upstream says it counted (RevenueCat's rate-limit headers): the limit replaces the
    capacity, and usage above the window's own count (other clients on the same key) is recorded as spent now.
    A caller (`shared.caller`) may spend at most `caller_share` of the capacity; one request at most
    `max_cost_share` of it; a retry only what leaves `retry_reserve` of it free.
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
        caller_share: float = 1.0,
        max_cost_share: float = 1.0,
        retry_reserve: float = 0.0,
    ) -> None:
        self.capacity = capacity
        self.max_block = max_block
        self.window = window
        self.source: Source = source
        self.name = name
        self.store: WindowStore = store or LocalWindowStore(clock)
        self.caller_share = caller_share
        self.max_cost_share = max_cost_share
        self.retry_reserve = retry_reserve
        self.key = f"{source}:{name}:{int(window)}"
        self.waited = 0.0
        self.rejected = 0

    @property
    def label(self) -> str:
        """The budget in words: `amplitude query cost budget (1000 per 5 minutes)`."""
        return f"{self.source} {self.name} budget ({self.capacity:g} per {_span(self.window)})"

    async def used(self) -> float:
        """Cost spent in the current window."""
        return await self.store.used(self.key, self.window)

    async def acquire(self, cost: float = 1.0, *, retry: bool = False) -> Spending:
        """Spend `cost`, waiting for the window if the deadline allows; else `UpstreamRateLimitedError` (or, for
        the caller's own share, `CallerBudgetExceededError`). In a window with a `retry_reserve`, a retry never
        waits: it fits now, leaving the reserve free, or not at all."""
        max_cost = self.capacity * self.max_cost_share
        if cost > max_cost:
            hint = COST_HINTS.get((self.source, self.name), "Ask for less at once.")
            raise QueryTooCostlyError(
                f"This request would cost {cost:g} units of the {self.label}; one request may cost at most "
                f"{max_cost:g}. {hint}",
                source=self.source,
                cost=cost,
                max_cost=max_cost,
            )
        no_wait = retry and self.retry_reserve > 0
        if no_wait and await self.used() + cost > self.capacity * (1 - self.retry_reserve):
            raise self._spent_error(self.window, retry=True)
        subject = caller()
        caller_key = f"{self.key}:caller:{subject}" if subject is not None and self.caller_share < 1 else None
        entry = secrets.token_hex(8)
        while True:
            if caller_key is not None:
                share = max(self.capacity * self.caller_share, min(self.capacity, CALLER_MIN_UNITS))
                wait = await self.store.spend(caller_key, cost, share, self.window, entry=entry)
                if wait > 0:
                    if no_wait or wait >= remaining_time():
                        self.rejected += 1
                        raise CallerBudgetExceededError(
                            f"this caller has spent its share ({share:g}) of the service's {self.label}; the rest "
                            f"is kept for other callers. It frees in {math.ceil(wait)} s (at {_frees_at(wait)}).",
                            source=self.source,
                            retry_after=max(1, math.ceil(wait)),
                            subject=subject or "",
                        )
                    self.waited += wait
                    await anyio.sleep(wait)
                    continue
            wait = await self.store.spend(self.key, cost, self.capacity, self.window, entry=entry)
            if wait <= 0:
                return Spending(self, cost, entry, caller_key)
            if caller_key is not None:
                await self.store.refund(caller_key, cost, entry)
            if no_wait or wait >= remaining_time():
                raise self._spent_error(wait)
            self.waited += wait
            await anyio.sleep(wait)

    def _spent_error(self, wait: float, *, retry: bool = False) -> UpstreamRateLimitedError:
        self.rejected += 1
        what = "has no room for a retry" if retry else "is spent"
        return UpstreamRateLimitedError(
            f"the service's {self.label} {what}; it frees in {math.ceil(wait)} s (at {_frees_at(wait)}).",
            source=self.source,
            retry_after=max(1, math.ceil(wait)),
            upstream_status=None,
        )

    async def observe(self, usage: int, limit: int) -> None:
        """Adopt the upstream's view: its limit, and any usage the window did not see."""
        if limit > 0:
            self.capacity = float(limit)
        missing = usage - await self.store.used(self.key, self.window)
        if missing > 0:
            await self.store.spend(self.key, float(missing), self.capacity, self.window, force=True)

    async def block_for(self, seconds: float) -> None:
        """The upstream answered 429 with Retry-After: nothing is spent for that long (at most `max_block`)."""
        await self.store.block(self.key, min(seconds, self.max_block))


class SharedSlots(Protocol):
    """A concurrency limit shared with other replicas (`shared.shared_state.SharedSemaphore`)."""

    async def acquire(self) -> str:
        """Wait for a lease; its token."""
        ...

    async def release(self, token: str) -> None:
        """Give the lease back."""
        ...


@dataclass
class Gate:
    """A concurrency limit plus rate windows, for one upstream endpoint family (one RevenueCat domain, say).

    `shared`, when set, is the same limit across replicas (Redis leases), taken after this process's own slot.
    """

    concurrency: anyio.CapacityLimiter
    windows: tuple[WindowLimiter, ...] = ()
    shared: SharedSlots | None = None

    @asynccontextmanager
    async def slot(self, cost: float = 1.0, *, retry: bool = False) -> AsyncGenerator[None]:
        """Hold a concurrency slot after spending `cost` of every window; the units go back if the request is
        abandoned before it holds the slot (cancelled, or out of time while waiting)."""
        spent: list[Spending] = []
        lease: str | None = None
        try:
            for window in self.windows:
                spent.append(await window.acquire(cost, retry=retry))
            await self.concurrency.acquire()
            try:
                if self.shared is not None:
                    lease = await self.shared.acquire()
            except BaseException:
                self.concurrency.release()
                raise
        except BaseException:
            with anyio.CancelScope(shield=True):
                for spending in spent:
                    await spending.refund()
            raise
        try:
            yield
        finally:
            self.concurrency.release()
            if lease is not None and self.shared is not None:
                with anyio.CancelScope(shield=True):
                    await self.shared.release(lease)

    async def observe(self, usage: int, limit: int) -> None:
        """Feed the upstream's rate-limit headers to the per-minute window."""
        if self.windows:
            await self.windows[0].observe(usage, limit)

    async def block_for(self, seconds: float) -> None:
        """The upstream answered 429: its window is full for `seconds`."""
        if self.windows:
            await self.windows[0].block_for(seconds)
