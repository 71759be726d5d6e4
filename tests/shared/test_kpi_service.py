"""The KPI service on sandbox data: figures checked against values computed here, independently, from the dataset."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from shared.errors import (
    InvalidInputError,
    NotFoundError,
    SourceNotConfiguredError,
    UpstreamAuthError,
    UpstreamError,
    UpstreamTimeoutError,
)
from shared.models import kpi as m
from shared.operations import CONVERSION, MAU, OVERVIEW, REFUND_ANALYSIS, USER_JOURNEY
from shared.runtime import Runtime, open_runtime
from shared.sandbox import Dataset, FaultSpec, SandboxState
from shared.settings import Settings
from tests.conftest import TODAY, clock

pytestmark = pytest.mark.anyio


def _active_users(dataset: Dataset, start: date, end: date) -> int:
    return len({e.user_id for e in dataset.events if start <= e.event_time.date() <= end})


def _month_end(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


async def test_overview_figures_match_the_dataset(runtime: Runtime, dataset: Dataset) -> None:
    result = await runtime.kpi.answer(OVERVIEW, m.OverviewQuery())
    month_start = TODAY.replace(day=1)
    assert result.partial is False
    assert result.data_source == "sandbox"
    assert result.amplitude == m.AmplitudeOverview(
        dau=_active_users(dataset, TODAY - timedelta(days=1), TODAY - timedelta(days=1)),
        dau_date=TODAY - timedelta(days=1),
        mau=_active_users(dataset, month_start, TODAY),
        new_users=sum(1 for u in dataset.users if month_start <= u.first_seen <= TODAY),
        month_start=month_start,
        month_partial=True,
    )
    assert result.revenuecat is not None
    window_start = TODAY - timedelta(days=27)
    revenue = sum(
        t.price_usd for t in dataset.transactions if window_start <= t.purchased_at.date() <= TODAY and not t.refunded
    )
    assert result.revenuecat.revenue_28d == pytest.approx(revenue, abs=0.01)
    assert result.revenuecat.active_subscriptions is not None and result.revenuecat.active_subscriptions > 0
    assert [s.status for s in result.sources] == ["ok", "ok"]


async def test_mau_of_each_closed_month_equals_distinct_active_users(runtime: Runtime, dataset: Dataset) -> None:
    result = await runtime.kpi.answer(MAU, m.MauQuery())
    assert [row.month for row in result.months][-1] == f"{TODAY:%Y-%m}"
    assert len(result.months) == 6
    previous: int | None = None
    for row in result.months:
        assert row.active_users is not None
        assert row.active_users == _active_users(dataset, row.start, row.end)
        assert row.partial is (_month_end(row.start) >= TODAY)  # the current month, until its last day is over
        if previous is not None:
            assert row.change == row.active_users - previous
            assert row.change_pct == pytest.approx((row.active_users - previous) / previous * 100, abs=0.01)
        previous = row.active_users
    assert result.months[-1].partial and not result.months[0].partial


async def test_mau_rejects_future_and_inverted_and_too_long_ranges(runtime: Runtime) -> None:
    cases = [
        (m.MauQuery(end_month=TODAY + timedelta(days=40)), "end_month"),
        (m.MauQuery(start_month=date(2026, 9, 1), end_month=date(2026, 6, 1)), "start_month"),
        (m.MauQuery(start_month=date(2020, 1, 1), end_month=date(2026, 6, 1)), "start_month"),
    ]
    for query, field in cases:
        with pytest.raises(InvalidInputError) as caught:
            await runtime.kpi.answer(MAU, query)
        assert caught.value.field == field
        assert caught.value.status == 422


async def test_conversion_counts_first_step_users_and_keeps_the_funnel_consistent(
    runtime: Runtime, dataset: Dataset
) -> None:
    start, end = TODAY - timedelta(days=29), TODAY
    result = await runtime.kpi.answer(CONVERSION, m.ConversionQuery(start_date=start, end_date=end))
    entered = {e.user_id for e in dataset.events if e.event_type == "Sign Up" and start <= e.event_time.date() <= end}
    assert [s.event_type for s in result.steps] == ["Sign Up", "View Paywall", "Start Trial", "Subscribe"]
    assert result.steps[0].users == len(entered)
    users = [s.users for s in result.steps]
    assert users == sorted(users, reverse=True)
    for previous, step in zip(result.steps, result.steps[1:], strict=False):
        assert step.step_conversion_pct == round(step.users / previous.users * 100, 2)
        assert step.cumulative_conversion_pct == round(step.users / users[0] * 100, 2)
        assert step.median_time_to_convert_seconds is not None and step.median_time_to_convert_seconds >= 0
    assert result.steps[0].step_conversion_pct == result.steps[0].cumulative_conversion_pct == 100.0
    assert result.overall_conversion_pct == round(users[-1] / users[0] * 100, 2)
    assert result.trial_conversion is not None
    assert result.trial_conversion.trials is not None and result.trial_conversion.trials > 0


async def test_conversion_without_revenuecat_has_no_trial_figures(
    make_settings: Callable[..., Settings], sandbox: SandboxState
) -> None:
    async with open_runtime(make_settings(REVENUECAT_API_KEY=None), clock=clock) as rt:
        result = await rt.kpi.answer(CONVERSION, m.ConversionQuery(steps=["App Open", "View Paywall"]))
    assert result.trial_conversion is None
    assert [s.source for s in result.sources] == ["amplitude"]
    assert sandbox.counts.get("revenuecat.chart", 0) == 0


async def test_conversion_validates_steps_and_dates(runtime: Runtime) -> None:
    cases = [
        (m.ConversionQuery(steps=["only one"]), "steps"),
        (m.ConversionQuery(end_date=TODAY + timedelta(days=1)), "end_date"),
        (m.ConversionQuery(start_date=TODAY, end_date=TODAY - timedelta(days=1)), "start_date"),
        (m.ConversionQuery(start_date=TODAY - timedelta(days=400), end_date=TODAY), "start_date"),
    ]
    for query, field in cases:
        with pytest.raises(InvalidInputError) as caught:
            await runtime.kpi.answer(CONVERSION, query)
        assert caught.value.field == field


async def test_journey_merges_both_sources_into_one_ordered_timeline(
    runtime: Runtime, dataset: Dataset, sandbox: SandboxState
) -> None:
    user = next(u for u in dataset.users if dataset.purchases_for(u.user_id) and dataset.subscriptions_for(u.user_id))
    result = await runtime.kpi.answer(USER_JOURNEY, m.UserJourneyQuery(user_id=user.user_id))
    events = dataset.events_for(user.amplitude_id)
    assert result.amplitude is not None and result.amplitude.amplitude_id == user.amplitude_id
    assert sum(1 for e in result.timeline if e.kind == "event") == min(len(events), 1000)
    assert [e.at for e in result.timeline] == sorted(e.at for e in result.timeline)
    purchases = dataset.purchases_for(user.user_id)
    assert sum(1 for e in result.timeline if e.kind == "purchase") == len(purchases)
    assert sum(1 for e in result.timeline if e.kind == "refund") == sum(1 for p in purchases if p.refunded)
    assert result.revenuecat is not None
    assert {s.id for s in result.revenuecat.subscriptions} == {
        s.subscription_id for s in dataset.subscriptions_for(user.user_id)
    }
    renewals = sum(max(0, len(s.transaction_ids) - 1) for s in dataset.subscriptions_for(user.user_id))
    assert sum(1 for e in result.timeline if e.kind == "renewal") == renewals
    assert sandbox.counts.get("revenuecat.v1_subscribers", 0) == 0


async def test_journey_works_for_anonymous_ids_and_amplitude_only_users(runtime: Runtime, dataset: Dataset) -> None:
    anonymous = next(u for u in dataset.users if u.user_id.startswith("$RCAnonymousID:"))
    result = await runtime.kpi.answer(USER_JOURNEY, m.UserJourneyQuery(user_id=anonymous.user_id))
    assert result.user_id == anonymous.user_id and result.amplitude is not None
    amplitude_only = next(u for u in dataset.users if not u.in_revenuecat)
    result = await runtime.kpi.answer(USER_JOURNEY, m.UserJourneyQuery(user_id=amplitude_only.user_id))
    assert result.revenuecat is None and result.amplitude is not None and not result.partial


async def test_journey_of_an_unknown_user_is_not_found_and_creates_nothing(
    runtime: Runtime, sandbox: SandboxState
) -> None:
    with pytest.raises(NotFoundError):
        await runtime.kpi.answer(USER_JOURNEY, m.UserJourneyQuery(user_id="nobody_at_all"))
    assert sandbox.counts.get("revenuecat.v1_subscribers", 0) == 0
    with pytest.raises(NotFoundError):
        await runtime.kpi.answer(USER_JOURNEY, m.UserJourneyQuery(user_id="nobody_at_all"))


@pytest.mark.parametrize("user_id", ["", "has space", "x" * 257, "semi;colon", "new\nline"])
def test_a_journey_query_refuses_invalid_user_ids_so_no_upstream_call_can_see_them(user_id: str) -> None:
    with pytest.raises(ValidationError) as caught:
        m.UserJourneyQuery(user_id=user_id)
    assert [error["loc"] for error in caught.value.errors()] == [("user_id",)]


async def test_refund_rates_per_month_match_the_dataset(runtime: Runtime, dataset: Dataset) -> None:
    start, end = date(2026, 5, 1), date(2026, 10, 31)
    result = await runtime.kpi.answer(REFUND_ANALYSIS, m.RefundAnalysisQuery(start_date=start, end_date=end))
    assert [p.period_start for p in result.periods] == [date(2026, month, 1) for month in range(5, 11)]
    for period in result.periods:
        month = [t for t in dataset.transactions if t.purchased_at.date().replace(day=1) == period.period_start]
        refunded = [t for t in month if t.refunded]
        assert period.transactions == len(month)
        assert period.refunded_transactions == len(refunded)
        assert period.refund_rate_pct == pytest.approx(len(refunded) / len(month) * 100, abs=0.01)
    complete = [p for p in result.periods if not p.incomplete]
    assert result.summary.transactions == sum(p.transactions or 0 for p in complete)
    assert result.summary.incomplete_periods == len(result.periods) - len(complete)
    assert "original transaction" in result.attribution_note
    assert result.customers is None


async def test_refund_analysis_details_refunded_purchases_per_customer(runtime: Runtime, dataset: Dataset) -> None:
    refunder = next(p.user_id for p in dataset.purchases if p.refunded)
    query = m.RefundAnalysisQuery(
        start_date=TODAY - timedelta(days=90), end_date=TODAY, user_ids=[refunder, "nobody_at_all", refunder]
    )
    result = await runtime.kpi.answer(REFUND_ANALYSIS, query)
    assert result.customers is not None
    assert [c.user_id for c in result.customers] == [refunder, "nobody_at_all"]
    found, unknown = result.customers
    expected = [p for p in dataset.purchases_for(refunder) if p.refunded]
    assert {item.id for item in found.refunded} == {p.purchase_id for p in expected}
    assert found.refunded_amount_usd == pytest.approx(sum(p.price_usd for p in expected), abs=0.01)
    assert unknown.found is False and unknown.refunded == []


async def test_refund_analysis_segments_by_store_and_rejects_unknown_segments(
    runtime: Runtime, dataset: Dataset
) -> None:
    query = m.RefundAnalysisQuery(start_date=date(2026, 8, 1), end_date=date(2026, 9, 30), segment="store")
    result = await runtime.kpi.answer(REFUND_ANALYSIS, query)
    stores = {t.store for t in dataset.transactions if date(2026, 8, 1) <= t.purchased_at.date() <= date(2026, 9, 30)}
    assert len({p.segment for p in result.periods}) == len(stores)
    for month in (date(2026, 8, 1), date(2026, 9, 1)):
        in_month = [t for t in dataset.transactions if t.purchased_at.date().replace(day=1) == month]
        assert sum(p.transactions or 0 for p in result.periods if p.period_start == month) == len(in_month)
    with pytest.raises(InvalidInputError) as caught:
        await runtime.kpi.answer(REFUND_ANALYSIS, query.model_copy(update={"segment": "planet"}))
    assert caught.value.field == "segment"


async def test_an_unconfigured_source_is_a_503_naming_it(make_settings: Callable[..., Settings]) -> None:
    async with open_runtime(make_settings(AMPLITUDE_SECRET_KEY=None, REVENUECAT_PROJECT_ID=" "), clock=clock) as rt:
        for call, source in [
            (rt.kpi.answer(OVERVIEW, m.OverviewQuery()), "amplitude"),
            (rt.kpi.answer(MAU, m.MauQuery()), "amplitude"),
            (rt.kpi.answer(CONVERSION, m.ConversionQuery()), "amplitude"),
            (rt.kpi.answer(USER_JOURNEY, m.UserJourneyQuery(user_id="user_00042")), "amplitude"),
            (rt.kpi.answer(REFUND_ANALYSIS, m.RefundAnalysisQuery(start_date=TODAY, end_date=TODAY)), "revenuecat"),
        ]:
            with pytest.raises(SourceNotConfiguredError) as caught:
                await call
            assert caught.value.status == 503 and caught.value.source == source


async def test_overview_is_partial_when_one_source_fails_transiently(runtime: Runtime, sandbox: SandboxState) -> None:
    sandbox.inject("revenuecat.overview", FaultSpec(status=500))
    result = await runtime.kpi.answer(OVERVIEW, m.OverviewQuery())
    assert result.partial and result.revenuecat is None and result.amplitude is not None
    failed = next(s for s in result.sources if s.source == "revenuecat")
    assert failed.status == "error" and failed.error is not None and failed.error.status == 502


async def test_overview_fails_when_both_sources_fail_or_credentials_are_rejected(
    runtime: Runtime, sandbox: SandboxState
) -> None:
    sandbox.inject("*", FaultSpec(status=503))
    with pytest.raises(UpstreamError):
        await runtime.kpi.answer(OVERVIEW, m.OverviewQuery())
    sandbox.clear_faults()
    sandbox.inject("revenuecat.overview", FaultSpec(status=401))
    with pytest.raises(UpstreamAuthError):
        await runtime.kpi.answer(OVERVIEW, m.OverviewQuery())


async def test_a_slow_upstream_times_out_within_the_deadline(
    make_settings: Callable[..., Settings], sandbox: SandboxState
) -> None:
    sandbox.inject("amplitude.users", FaultSpec(slow_body=3.0))
    async with open_runtime(make_settings(KPI_UPSTREAM_TIMEOUT=0.3), clock=clock) as rt:
        started = datetime.now(UTC)
        with pytest.raises(UpstreamTimeoutError):
            await rt.kpi.answer(MAU, m.MauQuery())
        assert datetime.now(UTC) - started < timedelta(seconds=2.5)
