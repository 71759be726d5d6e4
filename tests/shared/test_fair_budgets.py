"""Fair use of the upstream budgets (issue 16 point 5, issue 11 section 4): units are spent only for requests that
are sent, each caller has a share of every window, one request has a cost ceiling, retries keep a reserve, and a
429 that names no wait blocks for a growing, bounded interval."""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from contextlib import contextmanager
from datetime import date

import anyio
import httpx2
import pytest

from api.errors import kpi_error_response
from shared.budget import Gate, WindowLimiter
from shared.caller import caller, current_caller
from shared.clients import _http
from shared.clients._http import UpstreamHttp, new_async_client
from shared.errors import (
    CallerBudgetExceededError,
    QueryTooCostlyError,
    UpstreamError,
    UpstreamRateLimitedError,
)
from shared.models import kpi as m
from shared.operations import MAU
from shared.runtime import Runtime, open_runtime
from shared.sandbox import FaultSpec, SandboxState
from shared.services.cached import Plan
from shared.settings import Settings
from tests.conftest import clock

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def calling_as(subject: str | None) -> Generator[None]:
    token = current_caller.set(subject)
    try:
        yield
    finally:
        current_caller.reset(token)


def _cost_window(clock: FakeClock, *, max_cost_share: float = 1.0, retry_reserve: float = 0.0) -> WindowLimiter:
    return WindowLimiter(
        1000,
        300,
        source="amplitude",
        name="query cost",
        clock=clock,
        max_cost_share=max_cost_share,
        retry_reserve=retry_reserve,
    )


async def test_a_request_abandoned_while_waiting_for_a_slot_gives_its_units_back() -> None:
    window = WindowLimiter(10, 3600, source="amplitude", name="user lookup", clock=FakeClock())
    gate = Gate(anyio.CapacityLimiter(1), (window,))
    held, release = anyio.Event(), anyio.Event()

    async def holder() -> None:
        async with gate.slot():
            held.set()
            await release.wait()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(holder)
            await held.wait()
            with anyio.move_on_after(0.05):  # the caller's deadline passes while it waits for the slot
                async with gate.slot():
                    pytest.fail("the slot was never free")
            assert await window.used() == 1
            release.set()
    assert await window.used() == 1


async def test_a_request_cancelled_while_waiting_for_a_slot_gives_back_every_window() -> None:
    clock = FakeClock()
    five_minutes, hour = _cost_window(clock), WindowLimiter(108_000, 3600, source="amplitude", name="query cost")
    gate = Gate(anyio.CapacityLimiter(1), (five_minutes, hour))
    with anyio.fail_after(5):
        await gate.concurrency.acquire_on_behalf_of("someone else")
        async with anyio.create_task_group() as group:

            async def waiter() -> None:
                async with gate.slot(300):
                    pytest.fail("the slot was never free")

            group.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert await five_minutes.used() == 300
            group.cancel_scope.cancel()
    assert await five_minutes.used() == 0
    assert await hour.used() == 0


async def test_a_caller_spends_only_its_share_and_gets_a_429_while_others_go_on() -> None:
    window = WindowLimiter(360, 3600, source="amplitude", name="user lookup", clock=FakeClock(), caller_share=0.5)
    with anyio.fail_after(5):
        with calling_as("drainer"):
            for _ in range(180):
                await window.acquire()
            with pytest.raises(CallerBudgetExceededError) as caught:
                await window.acquire()
        with calling_as("analyst"):
            for _ in range(180):
                await window.acquire()
    error = caught.value
    assert error.status == 429
    assert error.subject == "drainer"
    assert error.retry_after == 3600
    assert "share (180)" in error.detail
    assert "amplitude user lookup budget (360 per 60 minutes)" in error.detail
    assert await window.used() == 360


async def test_the_service_itself_is_not_held_to_a_callers_share() -> None:
    window = WindowLimiter(4, 60, source="revenuecat", name="charts", clock=FakeClock(), caller_share=0.5)
    with anyio.fail_after(5), calling_as(None):
        for _ in range(4):
            await window.acquire()


async def test_a_caller_refused_by_the_whole_window_keeps_its_share_unspent() -> None:
    window = WindowLimiter(4, 60, source="revenuecat", name="charts", clock=FakeClock(), caller_share=0.5)
    with anyio.fail_after(5):
        with calling_as(None):
            for _ in range(4):
                await window.acquire()
        with calling_as("analyst"), pytest.raises(UpstreamRateLimitedError):
            await window.acquire()
        assert await window.store.used(f"{window.key}:caller:analyst", 60) == 0


async def test_one_request_costing_more_than_half_the_window_is_refused_with_its_cost_and_the_fix() -> None:
    window = _cost_window(FakeClock(), max_cost_share=0.5)
    with anyio.fail_after(5), pytest.raises(QueryTooCostlyError) as caught:
        await window.acquire(980)  # a 10-step funnel over 49 days
    error = caught.value
    assert error.status == 422
    assert error.source == "amplitude"
    assert "cost 980 units" in error.detail
    assert "at most 500" in error.detail
    assert "shorten the date range" in error.detail
    assert await window.used() == 0
    with anyio.fail_after(5):
        await window.acquire(500)


async def test_a_retry_may_not_spend_the_reserve_of_the_window() -> None:
    window = _cost_window(FakeClock(), retry_reserve=0.5)
    with anyio.fail_after(5):
        await window.acquire(400)
        with pytest.raises(UpstreamRateLimitedError) as caught:
            await window.acquire(200, retry=True)
        assert await window.used() == 400
        await window.acquire(100, retry=True)
        await window.acquire(400)  # a first attempt may use the reserve
    assert "has no room for a retry" in caught.value.detail


async def test_a_spent_budget_says_which_one_and_when_it_frees() -> None:
    clock = FakeClock()
    window = _cost_window(clock)
    with anyio.fail_after(5):
        await window.acquire(900)
        clock.now += 100
        with pytest.raises(UpstreamRateLimitedError) as caught:
            await window.acquire(200)
    detail = caught.value.detail
    assert "amplitude query cost budget (1000 per 5 minutes) is spent" in detail
    assert "it frees in 200 s (at " in detail
    assert detail.endswith(" UTC).")


# ------------------------------------------------------------------------------------------ through the client


def _client(handler: httpx2.MockTransport, *, retries: int = 2) -> UpstreamHttp:
    http = new_async_client("https://amplitude.test", timeout=5, connect_timeout=5, transport=handler)
    return UpstreamHttp(http, source="amplitude", deadline=5, retries=retries, max_retry_wait=10)


async def test_an_expensive_query_is_not_retried_into_the_reserve_and_the_upstream_error_is_answered() -> None:
    sent: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        return httpx2.Response(503)

    window = _cost_window(FakeClock(), retry_reserve=0.5)
    gate = Gate(anyio.CapacityLimiter(5), (window,))
    http = _client(httpx2.MockTransport(handler))
    with anyio.fail_after(5), pytest.raises(UpstreamError) as caught:
        await http.get("/api/2/funnels", gate=gate, cost=400)
    assert caught.value.upstream_status == 503
    assert len(sent) == 1
    assert await window.used() == 400


class StepClock:
    def __init__(self) -> None:
        self.now = 50.0

    def monotonic(self) -> float:
        return self.now


async def test_429s_without_retry_after_block_for_a_doubling_bounded_interval_reset_by_success(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = StepClock()
    monkeypatch.setattr(_http, "time", clock)
    answers: list[int] = []

    def handler(_: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(answers.pop(0), text="Too many concurrent requests (limit 5)")

    http = _client(httpx2.MockTransport(handler), retries=0)
    blocks: list[int] = []
    with anyio.fail_after(5):
        for status in (429, 429, 429, 429, 429, 429, 200, 429):
            answers.append(status)
            try:
                await http.get("/api/2/users")
            except UpstreamRateLimitedError as exc:
                blocks.append(exc.retry_after)
                clock.now += exc.retry_after
    assert blocks == [5, 10, 20, 40, 60, 60, 5]


async def test_429s_of_one_burst_share_one_block_rather_than_doubling_it_each(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = StepClock()
    monkeypatch.setattr(_http, "time", clock)
    http = _client(httpx2.MockTransport(lambda _: httpx2.Response(429)), retries=0)
    blocks: list[int] = []
    with anyio.fail_after(5):
        for _ in range(3):
            with pytest.raises(UpstreamRateLimitedError) as caught:
                await http.get("/api/2/users")
            blocks.append(caught.value.retry_after)
            clock.now += 1
    assert blocks == [5, 4, 3]


# ------------------------------------------------------------------------------------------ cold computations


async def test_a_caller_may_have_only_its_share_of_cold_computations_in_flight(
    make_settings: Callable[..., Settings], sandbox: SandboxState
) -> None:
    sandbox.inject("amplitude.users", FaultSpec(latency=0.3))
    settings = make_settings(KPI_CALLER_COLD_COMPUTATIONS=2)
    months = [(date(2026, month, 1), date(2026, month, 1)) for month in (1, 2, 3)]
    outcomes: dict[str, object] = {}

    async def ask(subject: str, label: str, start: date, end: date) -> None:
        with calling_as(subject):
            try:
                served = await rt.cached.answer(MAU, m.MauQuery(start_month=start, end_month=end))
                outcomes[label] = served.value.partial
            except CallerBudgetExceededError as exc:
                outcomes[label] = exc

    async with open_runtime(settings, data_source="sandbox", clock=clock) as rt:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                for index, (start, end) in enumerate(months[:2]):
                    group.start_soon(ask, "drainer", f"drainer-{index}", start, end)
                await anyio.wait_all_tasks_blocked()
                assert rt.cached.computations == 2
                await ask("drainer", "drainer-2", *months[2])
                await ask("analyst", "analyst", *months[2])
    refused = outcomes["drainer-2"]
    assert isinstance(refused, CallerBudgetExceededError)
    assert refused.status == 429
    assert "2 uncached computations in flight" in refused.detail
    assert outcomes["drainer-0"] is False
    assert outcomes["drainer-1"] is False
    assert outcomes["analyst"] is False


async def test_a_caller_who_joined_a_computation_refused_for_its_starters_share_computes_for_itself(
    runtime: Runtime,
) -> None:
    started, go = anyio.Event(), anyio.Event()

    async def compute() -> m.MauResult:
        if caller() == "drainer":
            started.set()
            await go.wait()
            raise CallerBudgetExceededError("share spent", source="amplitude", retry_after=60, subject="drainer")
        return await runtime.kpi.answer(MAU, m.MauQuery())

    plan = Plan("kpi_mau", "fair-budgets:joined", m.MauResult, 60, compute)
    outcomes: dict[str, object] = {}

    async def ask(subject: str) -> None:
        with calling_as(subject):
            try:
                outcomes[subject] = (await runtime.cached.serve(plan)).value
            except CallerBudgetExceededError as exc:
                outcomes[subject] = exc

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(ask, "drainer")
            await started.wait()
            group.start_soon(ask, "analyst")
            await anyio.wait_all_tasks_blocked()
            go.set()
    assert isinstance(outcomes["drainer"], CallerBudgetExceededError)
    assert isinstance(outcomes["analyst"], m.MauResult)


def test_a_callers_spent_share_is_a_429_problem_with_retry_after() -> None:
    error = CallerBudgetExceededError("share spent", source="amplitude", retry_after=42, subject="drainer")
    response = kpi_error_response(error, instance="/api/kpi/mau")
    body = json.loads(bytes(response.body))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "42"
    assert body["type"] == "https://loop-kpi.dev/problems/caller-budget-exceeded"
    assert (body["title"], body["retry_after"], body["source"]) == ("Too many requests", 42, "amplitude")
    assert "drainer" not in json.dumps(body)


async def test_a_small_window_still_serves_one_dashboard_load_to_each_caller() -> None:
    window = WindowLimiter(5, 60, source="revenuecat", name="charts", clock=FakeClock(), caller_share=0.5)
    with anyio.fail_after(5), calling_as("reader"):
        for _ in range(4):  # overview 2, conversion 1, refunds 1
            await window.acquire()
        with pytest.raises(CallerBudgetExceededError):
            await window.acquire()
