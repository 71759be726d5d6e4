"""Upstream budgets: windows wait when the deadline allows, fail fast with a retry-after when not, and follow
RevenueCat's rate-limit headers."""

from __future__ import annotations

import anyio
import pytest

from shared.budget import WindowLimiter
from shared.errors import UpstreamRateLimitedError

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _limiter(capacity: float, clock: FakeClock, window: float = 60) -> WindowLimiter:
    return WindowLimiter(capacity, window, source="revenuecat", name="charts", clock=clock)


async def test_a_window_admits_its_capacity_then_fails_fast_past_the_deadline() -> None:
    clock = FakeClock()
    limiter = _limiter(3, clock)
    with anyio.fail_after(5):
        for _ in range(3):
            await limiter.acquire()
        clock.now += 20
        with pytest.raises(UpstreamRateLimitedError) as caught:
            await limiter.acquire()
    assert caught.value.retry_after == 40
    assert caught.value.status == 503
    assert limiter.rejected == 1


async def test_a_window_frees_up_as_old_requests_age_out() -> None:
    clock = FakeClock()
    limiter = _limiter(2, clock)
    with anyio.fail_after(5):
        await limiter.acquire()
        clock.now += 30
        await limiter.acquire()
        clock.now += 31
        await limiter.acquire()
    assert await limiter.used() == 2


async def test_the_limiter_adopts_the_limit_and_usage_the_upstream_reports() -> None:
    clock = FakeClock()
    limiter = _limiter(5, clock)
    with anyio.fail_after(5):
        await limiter.acquire()
        await limiter.observe(usage=4, limit=25)
        assert limiter.capacity == 25
        assert await limiter.used() == 4
        for _ in range(21):
            await limiter.acquire()
        with pytest.raises(UpstreamRateLimitedError):
            await limiter.acquire()


async def test_a_429_blocks_the_window_for_its_retry_after() -> None:
    clock = FakeClock()
    limiter = _limiter(10, clock)
    await limiter.block_for(12)
    with anyio.fail_after(5), pytest.raises(UpstreamRateLimitedError) as caught:
        await limiter.acquire()
    assert caught.value.retry_after == 12
    clock.now += 12
    with anyio.fail_after(5):
        await limiter.acquire()


async def test_a_short_wait_within_the_deadline_is_waited_out() -> None:
    limiter = WindowLimiter(1, 0.2, source="amplitude", name="query cost")
    with anyio.fail_after(5):
        await limiter.acquire()
        await limiter.acquire()
    assert limiter.waited > 0
    assert limiter.rejected == 0


async def test_cost_counts_against_the_window() -> None:
    clock = FakeClock()
    limiter = WindowLimiter(1000, 300, source="amplitude", name="query cost", clock=clock)
    with anyio.fail_after(5):
        await limiter.acquire(900)
        with pytest.raises(UpstreamRateLimitedError) as caught:
            await limiter.acquire(200)
    assert caught.value.retry_after == 300
