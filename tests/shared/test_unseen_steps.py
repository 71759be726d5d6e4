"""A misspelled event type silently gave 0 users (issue 15 point 7): a funnel step no user reached is checked with
Amplitude's event segmentation (`m=totals`), one request per such step within the same budget; an event never
tracked in the range is a warning, and a failed check costs only that warning."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date

import anyio
import httpx2
import pytest

from shared.budget import Gate, WindowLimiter
from shared.clients._http import UpstreamHttp, new_async_client
from shared.clients.amplitude import AmplitudeClient
from shared.models import kpi as m
from shared.operations import CONVERSION
from shared.runtime import Runtime
from shared.sandbox import (
    SANDBOX_AMPLITUDE_API_KEY,
    SANDBOX_AMPLITUDE_SECRET_KEY,
    Dataset,
    FaultSpec,
    SandboxServer,
    SandboxState,
)
from shared.services.kpi import KpiService
from tests.conftest import clock

pytestmark = pytest.mark.anyio

START, END = date(2026, 10, 1), date(2026, 10, 31)
DAYS = 31


def _query(*steps: str) -> m.ConversionQuery:
    return m.ConversionQuery(steps=list(steps), start_date=START, end_date=END)


def _segmentation_requests(result: m.ConversionResult) -> list[str]:
    return [r for p in result.provenance for r in p.requests if r.startswith("GET /api/2/events/segmentation")]


def _tracked(dataset: Dataset, event_type: str) -> int:
    return sum(1 for e in dataset.events if e.event_type == event_type and START <= e.event_time.date() <= END)


async def test_a_misspelled_step_gets_a_warning_naming_it_and_the_range_and_the_funnel_is_still_answered(
    runtime: Runtime, sandbox: SandboxState, dataset: Dataset
) -> None:
    assert _tracked(dataset, "Sign Upp") == 0 and _tracked(dataset, "Subscribe") > 0

    result = await runtime.kpi.answer(CONVERSION, _query("Sign Upp", "Subscribe"))

    assert [s.users for s in result.steps] == [0, 0]
    assert result.partial is False and result.overall_conversion_pct == 0.0
    assert result.warnings == [
        m.FigureWarning(
            figure="steps[0].users",
            source="amplitude",
            reason="no 'Sign Upp' events between 2026-10-01 and 2026-10-31: check the event type's spelling "
            "(event types are case-sensitive).",
        )
    ]
    # Both steps no user reached were checked, one request each; "Subscribe" was tracked, so no warning for it.
    assert sandbox.counts["amplitude.segmentation"] == 2
    requests = _segmentation_requests(result)
    assert len(requests) == 2
    assert all("m=totals" in r and "start=20261001" in r and "end=20261031" in r and "i=1" in r for r in requests)
    assert any(json.dumps({"event_type": "Sign Upp"}) in r for r in requests)
    check = next(p for p in result.provenance if _segmentation_requests_of(p))
    assert check.figures == ["steps[0].users", "steps[1].users"]
    assert (check.period_start, check.period_end, check.period_basis) == (START, END, "date_range")
    assert "failed" not in check.definition


def _segmentation_requests_of(provenance: m.Provenance) -> list[str]:
    return [r for r in provenance.requests if r.startswith("GET /api/2/events/segmentation")]


async def test_a_step_no_user_reached_whose_event_was_tracked_gets_no_warning(
    runtime: Runtime, sandbox: SandboxState, dataset: Dataset
) -> None:
    assert _tracked(dataset, "Sign Up") > 0  # every user signs up once, before subscribing

    result = await runtime.kpi.answer(CONVERSION, _query("Subscribe", "Sign Up"))

    assert result.steps[0].users > 0 and result.steps[1].users == 0
    assert result.steps[1].step_conversion_pct == 0.0
    assert result.warnings == []
    assert sandbox.counts["amplitude.segmentation"] == 1
    assert len(_segmentation_requests(result)) == 1


async def test_a_repeated_event_type_is_checked_once_and_only_where_nobody_reached_it(
    runtime: Runtime, sandbox: SandboxState
) -> None:
    result = await runtime.kpi.answer(CONVERSION, _query("Sign Up", "Subscribe", "Sign Up"))

    assert result.steps[0].users > 0 and result.steps[2].users == 0
    assert sandbox.counts["amplitude.segmentation"] == 1
    check = next(p for p in result.provenance if _segmentation_requests_of(p))
    assert check.figures == ["steps[2].users"] and result.warnings == []


async def test_a_funnel_every_step_of_which_someone_reached_asks_nothing_more(
    runtime: Runtime, sandbox: SandboxState
) -> None:
    result = await runtime.kpi.answer(CONVERSION, _query("Sign Up", "View Paywall"))

    assert all(s.users > 0 for s in result.steps)
    assert sandbox.counts.get("amplitude.segmentation", 0) == 0
    assert _segmentation_requests(result) == [] and result.warnings == []


async def test_a_failing_check_keeps_the_answer_without_the_warning_and_says_so_in_the_provenance(
    runtime: Runtime, sandbox: SandboxState
) -> None:
    sandbox.inject("amplitude.segmentation", FaultSpec(status=400))

    result = await runtime.kpi.answer(CONVERSION, _query("Sign Upp", "Subscribe"))

    assert [s.users for s in result.steps] == [0, 0]
    assert result.partial is False and result.warnings == []
    assert [s.status for s in result.sources] == ["ok", "ok"]
    check = next(p for p in result.provenance if _segmentation_requests_of(p))
    assert len(_segmentation_requests_of(check)) == 2
    assert "The check failed for steps[0]" in check.definition and "steps[1]" in check.definition


async def test_an_answer_whose_check_failed_is_cached_only_as_long_as_a_partial_one(
    runtime: Runtime, sandbox: SandboxState
) -> None:
    sandbox.inject("amplitude.segmentation", FaultSpec(status=503))
    failed = await runtime.cached.answer(CONVERSION, _query("Sign Upp", "Subscribe"))
    assert failed.value.short_lived and failed.ttl == runtime.cached.ttl.partial
    assert "short_lived" not in failed.value.model_dump_json()  # not part of the wire format

    sandbox.clear_faults()
    checked = await runtime.cached.answer(CONVERSION, _query("Sign Upq", "Subscribe"))
    assert not checked.value.short_lived and checked.ttl > runtime.cached.ttl.partial
    assert checked.value.warnings  # the check ran this time


async def test_a_slow_check_gives_up_in_time_and_keeps_the_answer(
    runtime: Runtime, sandbox: SandboxState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shared.services.kpi.EVENT_CHECK_SECONDS", 0.3)
    sandbox.inject("amplitude.segmentation", FaultSpec(latency=5.0))

    with anyio.fail_after(4):
        result = await runtime.kpi.answer(CONVERSION, _query("Subscribe", "Sign Upp"))

    assert result.warnings == [] and result.steps[0].users > 0
    check = next(p for p in result.provenance if _segmentation_requests_of(p))
    assert "took longer than 0.3 s" in check.definition


@pytest.fixture
async def metered(
    sandbox_server: SandboxServer, sandbox: SandboxState
) -> AsyncIterator[tuple[KpiService, WindowLimiter]]:
    """A service whose Amplitude client spends from a query-cost window the test can read."""
    window = WindowLimiter(100_000, 300, source="amplitude", name="query cost")
    async with new_async_client(
        sandbox_server.base_url,
        auth=httpx2.BasicAuth(SANDBOX_AMPLITUDE_API_KEY, SANDBOX_AMPLITUDE_SECRET_KEY),
        timeout=10,
        connect_timeout=5,
    ) as http:
        client = AmplitudeClient(
            UpstreamHttp(http, source="amplitude", deadline=10), dashboard=Gate(anyio.CapacityLimiter(5), (window,))
        )
        yield KpiService(client, None, conversion_steps=("Sign Up", "Subscribe"), clock=clock), window


async def test_each_check_costs_the_days_of_the_range_for_one_event_within_the_amplitude_budget(
    metered: tuple[KpiService, WindowLimiter],
) -> None:
    service, window = metered
    funnel_cost = DAYS * 2 * 3  # days x 2 x steps

    await service.answer(CONVERSION, _query("Sign Up", "View Paywall", "Subscribe"))
    assert await window.used() == funnel_cost

    await service.answer(CONVERSION, _query("Subscribe", "Sign Up", "Sign Upp"))  # two steps nobody reached
    assert await window.used() == 2 * funnel_cost + 2 * DAYS
