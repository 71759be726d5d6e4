"""Input and period rules of the operations. Period flags are true on every day: the current month (and the day being counted) is partial until it is over,
a closed period never is. Checked at the first and last day of a month and of a year, at 00:00 and 23:59 UTC,
with the service's injected clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta

import httpx2
import pytest

from shared.clients._http import UpstreamHttp
from shared.clients.amplitude import AmplitudeClient
from shared.clients.revenuecat import RevenueCatClient
from shared.errors import InvalidInputError
from shared.models import kpi as m
from shared.operations import CONVERSION, MAU, OVERVIEW
from shared.services.inputs import Inputs, add_months, month_end
from shared.services.kpi import KpiService

pytestmark = pytest.mark.anyio

INSTANTS = [
    datetime(2026, 11, 1, 0, 0, tzinfo=UTC),
    datetime(2026, 11, 1, 23, 59, 59, tzinfo=UTC),
    datetime(2026, 11, 30, 0, 0, tzinfo=UTC),
    datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC),
    datetime(2026, 12, 31, 0, 0, tzinfo=UTC),
    datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime(2027, 1, 1, 0, 0, tzinfo=UTC),
    datetime(2027, 1, 1, 23, 59, 59, tzinfo=UTC),
    datetime(2028, 2, 29, 23, 59, 59, tzinfo=UTC),
]


def _day(value: str) -> date:
    return date(int(value[:4]), int(value[4:6]), int(value[6:8]))


def amplitude_users(request: httpx2.Request) -> httpx2.Response:
    """Every bucket the query asks for, with 100 users each (the figures do not matter here, the flags do)."""
    start, end = _day(request.url.params["start"]), _day(request.url.params["end"])
    monthly = request.url.params["i"] == "30"
    buckets: list[str] = []
    day = start.replace(day=1) if monthly else start
    while day <= end:
        buckets.append(max(day, start).isoformat())
        day = add_months(day, 1) if monthly else day + timedelta(days=1)
    return httpx2.Response(200, json={"data": {"series": [[100] * len(buckets)], "xValues": buckets}})


def revenuecat(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, json={"object": "overview_metrics", "metrics": []})


@pytest.fixture
async def service_at() -> AsyncIterator[Callable[[datetime], KpiService]]:
    async with (
        httpx2.AsyncClient(base_url="https://amplitude.test", transport=httpx2.MockTransport(amplitude_users)) as amp,
        httpx2.AsyncClient(base_url="https://revenuecat.test", transport=httpx2.MockTransport(revenuecat)) as rc,
    ):

        def at(now: datetime) -> KpiService:
            return KpiService(
                AmplitudeClient(UpstreamHttp(amp, source="amplitude", deadline=5)),
                RevenueCatClient(UpstreamHttp(rc, source="revenuecat", deadline=5), "proj"),
                conversion_steps=("a", "b"),
                clock=lambda: now,
            )

        yield at


@pytest.mark.parametrize("now", INSTANTS, ids=[f"{i:%Y-%m-%dT%H:%M}" for i in INSTANTS])
async def test_only_the_current_month_is_partial_whatever_the_day_and_hour(
    service_at: Callable[[datetime], KpiService], now: datetime
) -> None:
    result = await service_at(now).answer(MAU, m.MauQuery())
    today = now.date()
    assert [row.partial for row in result.months] == [False] * 5 + [True]
    assert result.months[-1].month == f"{today:%Y-%m}" and result.months[-1].end == today
    assert all(row.end == month_end(row.start) for row in result.months[:-1])


@pytest.mark.parametrize("now", INSTANTS, ids=[f"{i:%Y-%m-%dT%H:%M}" for i in INSTANTS])
async def test_the_overview_month_is_partial_today_and_before_its_last_day_only(
    service_at: Callable[[datetime], KpiService], now: datetime
) -> None:
    service = service_at(now)
    today = now.date()
    current = await service.answer(OVERVIEW, m.OverviewQuery())
    assert current.amplitude is not None and current.amplitude.month_partial  # today is not over
    assert current.amplitude.dau_date == today - timedelta(days=1)  # the last complete day

    last_month_end = today.replace(day=1) - timedelta(days=1)
    closed = await service.answer(OVERVIEW, m.OverviewQuery(as_of=last_month_end))
    assert closed.amplitude is not None and not closed.amplitude.month_partial
    assert closed.amplitude.dau_date == last_month_end

    if today.day > 1:
        mid = await service.answer(OVERVIEW, m.OverviewQuery(as_of=today - timedelta(days=1)))
        assert mid.amplitude is not None
        assert mid.amplitude.month_partial is (today - timedelta(days=1) < month_end(today))


def test_a_comma_separated_funnel_says_to_repeat_steps() -> None:
    inputs = Inputs(today=date(2026, 11, 20), conversion_steps=("a", "b"))
    with pytest.raises(InvalidInputError) as raised:
        CONVERSION.resolve(m.ConversionQuery(steps=["Sign Up,Subscribe"]), inputs)
    assert raised.value.field == "steps"
    assert "steps=Sign%20Up&steps=Subscribe" in raised.value.detail
