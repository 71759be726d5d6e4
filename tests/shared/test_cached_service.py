"""Cache, single-flight and upstream budgets, counted through the sandbox's request counters."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import anyio
import pytest

from shared.cache import MemoryCache
from shared.errors import UpstreamError, UpstreamRateLimitedError
from shared.models import kpi as m
from shared.operations import CONVERSION, MAU, OVERVIEW, REFUND_ANALYSIS
from shared.runtime import Runtime, open_runtime
from shared.sandbox import FaultSpec, SandboxState
from shared.settings import Settings
from tests.conftest import TODAY, clock

pytestmark = pytest.mark.anyio


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_identical_cold_requests_make_one_upstream_call_per_question(
    runtime: Runtime, sandbox: SandboxState
) -> None:
    results: list[m.OverviewResult] = []

    async def ask() -> None:
        results.append((await runtime.cached.answer(OVERVIEW, m.OverviewQuery())).value)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            for _ in range(200):
                group.start_soon(ask)
    assert len(results) == 200
    assert all(result == results[0] for result in results)
    counts = sandbox.counts
    assert counts["amplitude.users"] == 3  # DAU, MAU and new users: three different questions, each asked once
    assert counts["revenuecat.overview"] == 1
    assert runtime.cached.computations == 1


async def test_a_second_request_is_a_cache_hit_and_equivalent_queries_share_it(
    runtime: Runtime, sandbox: SandboxState
) -> None:
    first = await runtime.cached.answer(MAU, m.MauQuery())
    second = await runtime.cached.answer(MAU, m.MauQuery(end_month=TODAY, start_month=date(2026, 6, 15)))
    assert (first.hit, second.hit) == (False, True)
    assert second.body == first.body
    assert sandbox.counts["amplitude.users"] == 1


async def test_entries_expire_after_their_ttl(make_settings: Callable[..., Settings], sandbox: SandboxState) -> None:
    fake = FakeTime()
    settings = make_settings(KPI_CACHE_TTL_MAU_CURRENT=60)
    async with open_runtime(settings, clock=clock, cache=MemoryCache(clock=fake)) as rt:
        rt.cached.clock = fake
        first = await rt.cached.answer(MAU, m.MauQuery())
        fake.now += 59
        cached = await rt.cached.answer(MAU, m.MauQuery())
        assert cached.hit and cached.age(fake.now) == 59 and cached.max_age(fake.now) == 1
        fake.now += 2
        fresh = await rt.cached.answer(MAU, m.MauQuery())
    assert not first.hit and not fresh.hit
    assert sandbox.counts["amplitude.users"] == 2


async def test_closed_months_are_kept_longer_than_the_current_one(runtime: Runtime) -> None:
    current = await runtime.cached.answer(MAU, m.MauQuery())
    closed = await runtime.cached.answer(MAU, m.MauQuery(start_month=date(2026, 1, 1), end_month=date(2026, 6, 1)))
    assert closed.ttl > current.ttl


async def test_errors_are_not_cached_and_partial_results_only_briefly(runtime: Runtime, sandbox: SandboxState) -> None:
    sandbox.inject("amplitude.users", FaultSpec(status=400, times=1))
    with pytest.raises(UpstreamError):
        await runtime.cached.answer(MAU, m.MauQuery())
    assert not (await runtime.cached.answer(MAU, m.MauQuery())).hit

    sandbox.inject("revenuecat.overview", FaultSpec(status=503))
    partial = await runtime.cached.answer(OVERVIEW, m.OverviewQuery())
    assert partial.value.partial
    assert partial.ttl == runtime.cached.ttl.partial


async def test_transient_failures_are_retried_but_other_4xx_are_not(runtime: Runtime, sandbox: SandboxState) -> None:
    sandbox.inject("amplitude.users", FaultSpec(status=502, times=1))
    await runtime.cached.answer(MAU, m.MauQuery())
    assert sandbox.counts["amplitude.users"] == 2

    sandbox.reset()
    sandbox.inject("amplitude.funnels", FaultSpec(status=400, times=1))
    with pytest.raises(UpstreamError):
        await runtime.cached.answer(CONVERSION, m.ConversionQuery())
    assert sandbox.counts["amplitude.funnels"] == 1


async def test_a_short_retry_after_is_honored_and_the_call_then_succeeds(
    runtime: Runtime, sandbox: SandboxState
) -> None:
    sandbox.inject("amplitude.users", FaultSpec(status=429, retry_after=1, times=1))
    with anyio.fail_after(10):
        served = await runtime.cached.answer(MAU, m.MauQuery())
    assert served.value.months
    assert sandbox.counts["amplitude.users"] == 2


async def test_a_retry_after_beyond_the_wait_bound_fails_fast_with_503(
    make_settings: Callable[..., Settings], sandbox: SandboxState
) -> None:
    sandbox.inject("amplitude.users", FaultSpec(status=429, retry_after=120))
    async with open_runtime(make_settings(), clock=clock) as rt:
        with anyio.fail_after(5), pytest.raises(UpstreamRateLimitedError) as caught:
            await rt.cached.answer(MAU, m.MauQuery())
    assert caught.value.retry_after == 120
    assert sandbox.counts["amplitude.users"] == 1


async def test_a_spent_charts_budget_fails_fast_instead_of_waiting_past_the_deadline(
    make_settings: Callable[..., Settings], sandbox: SandboxState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox, "charts_rpm", 2)  # the sandbox's headers tell the client its limit
    query = m.RefundAnalysisQuery(start_date=date(2026, 6, 1), end_date=date(2026, 9, 30))
    async with open_runtime(make_settings(KPI_REQUEST_DEADLINE=5), clock=clock) as rt:
        with anyio.fail_after(10), pytest.raises(UpstreamRateLimitedError) as caught:
            await rt.cached.answer(REFUND_ANALYSIS, query)
    assert 1 <= caught.value.retry_after <= 60
    assert sandbox.counts.get("revenuecat.chart", 0) <= 1  # no request was sent into a certain 429
