"""Each KPI route returns its model, and its figures agree with the ones recomputed here from the raw dataset."""

from __future__ import annotations

from datetime import date, timedelta
from urllib.parse import quote

import httpx2
import pytest
from fastapi.testclient import TestClient

from shared.models import kpi as m
from shared.sandbox import Dataset, FaultSpec, SandboxState
from shared.sandbox.dataset import User
from shared.services.kpi import REFUND_ATTRIBUTION_NOTE
from tests.conftest import NOW, TODAY

from .conftest import PROBLEM_JSON, REFUND_BODY, ROUTE_IDS, ROUTES, Route, build_settings, call, reader, serve


def _active_users(dataset: Dataset, first: date, last: date) -> int:
    return len({e.user_id for e in dataset.events if first <= e.event_time.date() <= last})


def _users_with(dataset: Dataset, event_type: str, first: date, last: date) -> int:
    return len(
        {e.user_id for e in dataset.events if e.event_type == event_type and first <= e.event_time.date() <= last}
    )


def _month_end(first: date) -> date:
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_each_route_returns_its_model_from_both_sources(client: TestClient, route: Route) -> None:
    response = call(client, route, headers=reader())

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    result = route.model.model_validate(response.json())
    assert result.data_source == "live"
    assert result.generated_at == NOW
    assert result.partial is False
    assert result.sources
    assert all(source.status == "ok" and source.error is None for source in result.sources)


# ---------------------------------------------------------------------------------------------- overview


def test_overview_figures_match_the_dataset(client: TestClient, dataset: Dataset) -> None:
    response = client.get("/api/kpi/overview", headers=reader())

    result = m.OverviewResult.model_validate(response.json())
    assert result.as_of == TODAY
    amplitude = result.amplitude
    assert amplitude is not None
    yesterday = TODAY - timedelta(days=1)
    month_start = TODAY.replace(day=1)
    assert (amplitude.dau_date, amplitude.month_start, amplitude.month_partial) == (yesterday, month_start, True)
    assert amplitude.dau == _active_users(dataset, yesterday, yesterday)
    assert amplitude.mau == _active_users(dataset, month_start, TODAY)
    assert amplitude.new_users == sum(month_start <= u.first_seen <= TODAY for u in dataset.users)
    revenuecat = result.revenuecat
    assert revenuecat is not None
    window_start = dataset.end - timedelta(days=27)
    revenue = sum(t.price_usd for t in dataset.transactions if not t.refunded and t.purchased_at.date() >= window_start)
    assert revenuecat.currency == "USD"
    assert revenuecat.revenue_28d == pytest.approx(revenue, abs=0.01)
    assert revenuecat.active_trials == sum(s.status == "trialing" for s in dataset.subscriptions)
    assert revenuecat.active_subscriptions == sum(
        s.status in ("active", "in_grace_period") for s in dataset.subscriptions
    )


def test_overview_of_a_past_day_counts_that_day_and_its_month(client: TestClient, dataset: Dataset) -> None:
    as_of = date(2026, 10, 31)

    response = client.get("/api/kpi/overview", params={"as_of": as_of.isoformat()}, headers=reader())

    result = m.OverviewResult.model_validate(response.json())
    amplitude = result.amplitude
    assert amplitude is not None
    assert (result.as_of, amplitude.dau_date, amplitude.month_partial) == (as_of, as_of, False)
    assert amplitude.dau == _active_users(dataset, as_of, as_of)
    assert amplitude.mau == _active_users(dataset, date(2026, 10, 1), as_of)


# ---------------------------------------------------------------------------------------------- MAU


def test_mau_defaults_to_six_months_ending_with_the_partial_current_one(client: TestClient, dataset: Dataset) -> None:
    response = client.get("/api/kpi/mau", headers=reader())

    months = m.MauResult.model_validate(response.json()).months
    assert [row.month for row in months] == ["2026-06", "2026-07", "2026-08", "2026-09", "2026-10", "2026-11"]
    assert [row.partial for row in months] == [False] * 5 + [True]
    assert months[-1].end == TODAY
    assert months[-1].active_users == _active_users(dataset, date(2026, 11, 1), TODAY)


def test_mau_of_closed_months_is_distinct_users_with_any_event(client: TestClient, dataset: Dataset) -> None:
    response = client.get(
        "/api/kpi/mau", params={"start_month": "2026-01-15", "end_month": "2026-10-31"}, headers=reader()
    )

    months = m.MauResult.model_validate(response.json()).months
    assert [row.start for row in months] == [date(2026, month, 1) for month in range(1, 11)]
    previous: int | None = None
    for row in months:
        expected = _active_users(dataset, row.start, _month_end(row.start))
        assert (row.end, row.active_users, row.partial) == (_month_end(row.start), expected, False)
        assert row.change == (None if previous is None else expected - previous)
        previous = expected


# ---------------------------------------------------------------------------------------------- conversion


def test_conversion_takes_repeated_steps_in_order(client: TestClient, dataset: Dataset) -> None:
    steps = ["App Open", "View Paywall", "Start Trial"]
    params = (*(("steps", step) for step in steps), ("start_date", "2026-09-01"), ("end_date", "2026-09-30"))

    response = client.get("/api/kpi/conversion", params=params, headers=reader())

    assert response.status_code == 200, response.text
    result = m.ConversionResult.model_validate(response.json())
    assert [step.event_type for step in result.steps] == steps
    assert (result.start_date, result.end_date, result.mode) == (date(2026, 9, 1), date(2026, 9, 30), "ordered")
    assert result.steps[0].users == _users_with(dataset, "App Open", date(2026, 9, 1), date(2026, 9, 30))
    users = [step.users for step in result.steps]
    assert users == sorted(users, reverse=True)
    assert result.overall_conversion_pct == round(users[-1] / users[0] * 100, 2)
    assert result.steps[0].median_time_to_convert_seconds is None


def test_a_misspelled_step_is_still_a_200_with_a_warning_naming_the_step(client: TestClient) -> None:
    params = (("steps", "Sign Upp"), ("steps", "Subscribe"), ("start_date", "2026-10-01"), ("end_date", "2026-10-31"))

    response = client.get("/api/kpi/conversion", params=params, headers=reader())

    assert response.status_code == 200, response.text
    body = response.json()
    assert [step["users"] for step in body["steps"]] == [0, 0]
    assert body["warnings"] == [
        {
            "figure": "steps[0].users",
            "source": "amplitude",
            "reason": "no 'Sign Upp' events between 2026-10-01 and 2026-10-31: check the event type's spelling "
            "(event types are case-sensitive).",
        }
    ]


def test_conversion_defaults_to_the_configured_funnel_over_30_days(client: TestClient, dataset: Dataset) -> None:
    response = client.get("/api/kpi/conversion", headers=reader())

    result = m.ConversionResult.model_validate(response.json())
    assert [step.event_type for step in result.steps] == ["Sign Up", "View Paywall", "Start Trial", "Subscribe"]
    assert (result.start_date, result.end_date) == (TODAY - timedelta(days=29), TODAY)
    assert result.steps[0].users == _users_with(dataset, "Sign Up", result.start_date, TODAY)
    assert result.trial_conversion is not None


# ---------------------------------------------------------------------------------------------- user journey


def _anonymous_subscriber(dataset: Dataset) -> User:
    return next(
        u
        for u in dataset.users
        if u.user_id.startswith("$RCAnonymousID:")
        and dataset.subscriptions_for(u.user_id)
        and 0 < len(dataset.events_for(u.amplitude_id)) < 1000
    )


def test_an_anonymous_revenuecat_id_works_url_encoded_in_the_path(client: TestClient, dataset: Dataset) -> None:
    user = _anonymous_subscriber(dataset)

    response = client.get(f"/api/kpi/user/{quote(user.user_id, safe='')}", headers=reader())

    assert response.status_code == 200, response.text
    result = m.JourneyResult.model_validate(response.json())
    assert result.user_id == user.user_id
    assert result.amplitude is not None
    assert result.amplitude.amplitude_id == user.amplitude_id
    assert result.revenuecat is not None
    expected = {s.subscription_id for s in dataset.subscriptions_for(user.user_id)}
    assert {s.id for s in result.revenuecat.subscriptions} == expected
    events = [entry for entry in result.timeline if entry.source == "amplitude"]
    assert len(events) == len(dataset.events_for(user.amplitude_id))
    assert result.events_truncated is False
    assert [entry.at for entry in result.timeline] == sorted(entry.at for entry in result.timeline)


def test_a_user_only_amplitude_knows_has_no_revenuecat_profile(client: TestClient, dataset: Dataset) -> None:
    user = next(u for u in dataset.users if not u.in_revenuecat and dataset.events_for(u.amplitude_id))

    response = client.get(f"/api/kpi/user/{user.user_id}", headers=reader())

    result = m.JourneyResult.model_validate(response.json())
    assert result.revenuecat is None
    assert result.partial is False
    assert {entry.source for entry in result.timeline} == {"amplitude"}


# ---------------------------------------------------------------------------------------------- refunds


def test_refund_periods_match_the_dataset_transactions(client: TestClient, dataset: Dataset) -> None:
    response = client.post("/api/kpi/refund-analysis", json=dict(REFUND_BODY), headers=reader())

    result = m.RefundAnalysisResult.model_validate(response.json())
    assert (result.resolution, result.segment, result.currency) == ("month", None, "USD")
    assert [p.period_start for p in result.periods] == [date(2026, 9, 1), date(2026, 10, 1)]
    for period in result.periods:
        last = _month_end(period.period_start)
        txs = [t for t in dataset.transactions if period.period_start <= t.purchased_at.date() <= last]
        assert period.transactions == len(txs)
        assert period.refunded_transactions == sum(t.refunded for t in txs)
        assert period.revenue == pytest.approx(sum(t.price_usd for t in txs if not t.refunded), abs=0.01)
    complete = [p for p in result.periods if not p.incomplete]
    assert result.summary.transactions == sum(p.transactions or 0 for p in complete)
    assert result.summary.incomplete_periods == len(result.periods) - len(complete)
    assert result.attribution_note == REFUND_ATTRIBUTION_NOTE
    assert result.customers is None


def test_refund_segments_add_up_to_the_unsegmented_period(client: TestClient, dataset: Dataset) -> None:
    body = {"start_date": "2026-08-01", "end_date": "2026-08-31", "segment": "store"}

    response = client.post("/api/kpi/refund-analysis", json=body, headers=reader())

    result = m.RefundAnalysisResult.model_validate(response.json())
    assert result.segment == "store"
    assert len({p.segment for p in result.periods}) > 1
    august = [t for t in dataset.transactions if date(2026, 8, 1) <= t.purchased_at.date() <= date(2026, 8, 31)]
    assert sum(p.transactions or 0 for p in result.periods) == len(august)


def test_weekly_refund_periods_start_on_mondays(client: TestClient) -> None:
    body = {"start_date": "2026-08-03", "end_date": "2026-08-30", "resolution": "week"}

    response = client.post("/api/kpi/refund-analysis", json=body, headers=reader())

    result = m.RefundAnalysisResult.model_validate(response.json())
    assert [p.period_start for p in result.periods] == [date(2026, 8, 3) + timedelta(weeks=n) for n in range(4)]


def test_refund_analysis_details_the_given_customers(client: TestClient, dataset: Dataset) -> None:
    refunder = next(p.user_id for p in dataset.purchases if p.refunded)
    body = {**REFUND_BODY, "user_ids": [refunder, "nobody_here", refunder]}

    response = client.post("/api/kpi/refund-analysis", json=body, headers=reader())

    result = m.RefundAnalysisResult.model_validate(response.json())
    assert result.customers is not None
    by_id = {c.user_id: c for c in result.customers}
    assert list(by_id) == [refunder, "nobody_here"]
    unknown = by_id["nobody_here"]
    assert (unknown.found, unknown.refunded, unknown.purchases, unknown.error) == (False, [], 0, None)
    known = by_id[refunder]
    purchases = dataset.purchases_for(refunder)
    refunded = [p for p in purchases if p.refunded]
    assert known.found is True
    assert {item.id for item in known.refunded} == {p.purchase_id for p in refunded}
    assert known.refunded_amount_usd == pytest.approx(sum(p.price_usd for p in refunded), abs=0.01)
    assert (known.purchases, known.subscriptions) == (len(purchases), len(dataset.subscriptions_for(refunder)))


# ---------------------------------------------------------------------------------------------- cache


def _max_age(response: httpx2.Response) -> int:
    directives = [part.strip() for part in response.headers["Cache-Control"].split(",")]
    assert "private" in directives
    return int(next(part for part in directives if part.startswith("max-age=")).removeprefix("max-age="))


def test_a_repeated_request_is_served_from_the_cache_without_upstream_calls(
    sandbox_url: str, sandbox: SandboxState
) -> None:
    with serve(build_settings(sandbox_url)) as fresh:
        first = fresh.get("/api/kpi/mau", headers=reader())
        calls = sandbox.counts
        same_query = fresh.get("/api/kpi/mau", params={"end_month": TODAY.isoformat()}, headers=reader())

    assert (first.headers["X-KPI-Cache"], same_query.headers["X-KPI-Cache"]) == ("miss", "hit")
    assert same_query.content == first.content
    assert sandbox.counts == calls
    assert 0 < _max_age(same_query) <= _max_age(first) <= 900
    assert int(same_query.headers["Age"]) >= 0


def test_a_cached_result_still_needs_a_valid_token(client: TestClient) -> None:
    assert client.get("/api/kpi/mau", headers=reader()).status_code == 200

    response = client.get("/api/kpi/mau")

    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON


def test_an_upstream_error_is_not_cached(sandbox_url: str, sandbox: SandboxState) -> None:
    sandbox.inject("amplitude.users", FaultSpec(status=500))
    with serve(build_settings(sandbox_url)) as fresh:
        failed = fresh.get("/api/kpi/mau", headers=reader())
        sandbox.clear_faults()
        recovered = fresh.get("/api/kpi/mau", headers=reader())

    assert failed.status_code == 502
    assert recovered.status_code == 200, recovered.text
    assert recovered.headers["X-KPI-Cache"] == "miss"


def test_a_partial_result_is_kept_only_briefly(sandbox_url: str, sandbox: SandboxState) -> None:
    sandbox.inject("revenuecat.*", FaultSpec(status=500))
    with serve(build_settings(sandbox_url)) as fresh:
        partial = fresh.get("/api/kpi/overview", headers=reader())

    assert m.OverviewResult.model_validate(partial.json()).partial is True
    assert _max_age(partial) <= 30
