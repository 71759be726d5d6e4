"""The overview, source by source: Amplitude's DAU, month-to-date MAU and new users; RevenueCat's overview metrics;
each with the notes (warnings, provenance) of its figures."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta

from shared.clients.amplitude import AmplitudeClient
from shared.clients.revenuecat import RevenueCatClient
from shared.models import definitions as d
from shared.models import kpi as m
from shared.models.amplitude import UsersData
from shared.services import timeline
from shared.services.fanout import gather3
from shared.services.figures import Fetched, Notes, fetch
from shared.services.inputs import month_end
from shared.services.series import bucket


async def amplitude_overview(
    client: AmplitudeClient, as_of: date, today: date, clock: Callable[[], datetime]
) -> tuple[m.AmplitudeOverview, Notes]:
    """DAU (of the last complete day, or of `as_of` in the past), month-to-date MAU and new users, concurrently."""
    dau_date = as_of - timedelta(days=1) if as_of == today else as_of
    month_start = as_of.replace(day=1)
    dau, active, new = await gather3(
        lambda: fetch(lambda: client.users(dau_date, dau_date, metric="active", interval=1), clock),
        lambda: fetch(lambda: client.users(month_start, as_of, metric="active", interval=30), clock),
        lambda: fetch(lambda: client.users(month_start, as_of, metric="new", interval=30), clock),
    )
    notes = Notes()
    overview = m.AmplitudeOverview(
        dau=notes.read("amplitude.dau", "amplitude", lambda: bucket(dau.value, dau_date, daily=True)),
        dau_date=dau_date,
        mau=notes.read("amplitude.mau", "amplitude", lambda: bucket(active.value, month_start, daily=False)),
        new_users=notes.read("amplitude.new_users", "amplitude", lambda: bucket(new.value, month_start, daily=False)),
        month_start=month_start,
        month_partial=as_of == today or as_of < month_end(as_of),
    )
    day_basis: m.PeriodBasis = "last_complete_day" if as_of == today else "utc_day"
    groups: list[tuple[str, Fetched[UsersData], tuple[date, date], m.PeriodBasis, str]] = [
        ("dau", dau, (dau_date, dau_date), day_basis, d.DAU),
        ("mau", active, (month_start, as_of), "month_to_date", d.MAU_TO_DATE),
        ("new_users", new, (month_start, as_of), "month_to_date", d.NEW_USERS),
    ]
    for figure, fetched, period, basis, definition in groups:
        notes.cite([f"amplitude.{figure}"], "amplitude", fetched, period=period, basis=basis, definition=definition)
    return overview, notes


async def revenuecat_overview(
    client: RevenueCatClient, clock: Callable[[], datetime]
) -> tuple[m.RevenueCatOverview, Notes]:
    """RevenueCat's overview metrics; a metric that is missing or has no value costs only its figure."""
    fetched = await fetch(lambda: client.overview("USD"), clock)
    overview = fetched.value
    by_id = {metric.id: metric for metric in overview.metrics}
    notes = Notes()

    def value(metric_id: str, figure: str) -> float | None:
        metric = by_id.get(metric_id)
        if metric is None:
            notes.missing(f"revenuecat.{figure}", "revenuecat", f"RevenueCat's overview metrics have no {metric_id!r}.")
            return None
        if metric.value is None:
            notes.missing(f"revenuecat.{figure}", "revenuecat", f"RevenueCat's {metric_id!r} metric has no value.")
        return metric.value

    def count(metric_id: str, figure: str) -> int | None:
        found = value(metric_id, figure)
        return None if found is None else round(found)

    updated = [metric.last_updated_at for metric in overview.metrics if metric.last_updated_at is not None]
    updated_at = timeline.from_ms(max(updated)) if updated else None
    if updated_at is None:
        notes.missing("revenuecat.last_updated_at", "revenuecat", "no overview metric says when it was computed.")
    result = m.RevenueCatOverview(
        currency=overview.currency or "USD",
        mrr=value("mrr", "mrr"),
        revenue_28d=value("revenue", "revenue_28d"),
        active_subscriptions=count("active_subscriptions", "active_subscriptions"),
        active_trials=count("active_trials", "active_trials"),
        new_customers_28d=count("new_customers", "new_customers_28d"),
        active_users_28d=count("active_users", "active_users_28d"),
        last_updated_at=updated_at,
    )
    as_of = (updated_at or fetched.fetched_at).date()
    now, trailing = (as_of, as_of), (as_of - timedelta(days=27), as_of)
    metrics: list[tuple[str, tuple[date, date], m.PeriodBasis, str]] = [
        ("mrr", now, "snapshot", d.MRR),
        ("active_subscriptions", now, "snapshot", d.ACTIVE_SUBSCRIPTIONS),
        ("active_trials", now, "snapshot", d.ACTIVE_TRIALS),
        ("revenue_28d", trailing, "trailing_28_days", d.REVENUE_28D),
        ("new_customers_28d", trailing, "trailing_28_days", d.NEW_CUSTOMERS_28D),
        ("active_users_28d", trailing, "trailing_28_days", d.ACTIVE_USERS_28D),
    ]
    for figure, period, basis, definition in metrics:
        notes.cite(
            [f"revenuecat.{figure}"],
            "revenuecat",
            fetched,
            period=period,
            basis=basis,
            definition=definition,
            upstream_updated_at=updated_at,
        )
    return result, notes
