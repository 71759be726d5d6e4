"""The KPI service: the five operations both faces expose, and all of their logic.

Faces stay thin: they turn their input into the query models of `shared.models.kpi`, call one method here, and
render the result or the `KpiError` it raises. Independent upstream calls run concurrently, so an operation takes
as long as its slowest branch.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import anyio
from pydantic import TypeAdapter, ValidationError

from shared.clients.amplitude import AmplitudeClient
from shared.clients.revenuecat import RevenueCatClient
from shared.errors import (
    InvalidInputError,
    KpiError,
    NotFoundError,
    SourceNotConfiguredError,
    UpstreamAuthError,
    UpstreamError,
)
from shared.models import kpi as m
from shared.models.amplitude import ActivityEvent, UsersData
from shared.models.revenuecat import ChartData, Purchase, Subscription, SubscriptionTransaction

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")

MAX_MAU_MONTHS = 36
MIN_DATE = date(2000, 1, 1)  # no analytics or store data predates it; keeps date arithmetic far from year 1
MAX_FUNNEL_DAYS = 366
MAX_REFUND_DAYS = 3 * 366
CUSTOMER_CONCURRENCY = 8
REFUND_ATTRIBUTION_NOTE = (
    "RevenueCat attributes a refund to the period of the original transaction, not to the day of the refund, so "
    "past periods can still change and recent periods (incomplete=true) are excluded from the summary rates. "
    "Revenue is net of refunds of that period's transactions. Per-customer details list refunded one-time "
    "purchases only: RevenueCat API v2 exposes no refund state on subscriptions."
)
_USER_ID = TypeAdapter(m.UserId)


@dataclass(frozen=True)
class _Range:
    start: date
    end: date


class KpiService:
    """The five KPI operations over an Amplitude client and a RevenueCat client (either may be unconfigured)."""

    def __init__(
        self,
        amplitude: AmplitudeClient | None,
        revenuecat: RevenueCatClient | None,
        *,
        conversion_steps: Sequence[str],
        data_source: m.DataSource = "live",
        activity_limit: int = 1000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._amplitude = amplitude
        self._revenuecat = revenuecat
        self._conversion_steps = tuple(conversion_steps)
        self.data_source: m.DataSource = data_source
        self._activity_limit = activity_limit
        self._clock = clock

    # ------------------------------------------------------------------------------------------ overview

    async def overview(self, query: m.OverviewQuery) -> m.OverviewResult:
        """Amplitude DAU/MAU/new users and RevenueCat's overview metrics, fetched concurrently."""
        amplitude, revenuecat = self._require_amplitude(), self._require_revenuecat()
        today = self._today()
        as_of = self.resolve_overview(query).as_of or today
        amp, rc = await _both(self._amplitude_overview(amplitude, as_of, today), self._revenuecat_overview(revenuecat))
        _raise_if_all_failed(amp, rc)
        return m.OverviewResult(
            **self._meta(("amplitude", amp), ("revenuecat", rc)),
            as_of=as_of,
            amplitude=None if isinstance(amp, KpiError) else amp,
            revenuecat=None if isinstance(rc, KpiError) else rc,
        )

    async def _amplitude_overview(self, client: AmplitudeClient, as_of: date, today: date) -> m.AmplitudeOverview:
        dau_date = as_of - timedelta(days=1) if as_of == today else as_of
        month_start = as_of.replace(day=1)
        dau, active, new = await _all(
            lambda: client.users(dau_date, dau_date, metric="active", interval=1),
            lambda: client.users(month_start, as_of, metric="active", interval=30),
            lambda: client.users(month_start, as_of, metric="new", interval=30),
        )
        return m.AmplitudeOverview(
            dau=_bucket(dau, dau_date, daily=True),
            dau_date=dau_date,
            mau=_bucket(active, month_start, daily=False),
            new_users=_bucket(new, month_start, daily=False),
            month_start=month_start,
            month_partial=as_of < _month_end(as_of),
        )

    async def _revenuecat_overview(self, client: RevenueCatClient) -> m.RevenueCatOverview:
        overview = await client.overview("USD")
        by_id = {metric.id: metric for metric in overview.metrics}

        def value(metric_id: str) -> float | None:
            metric = by_id.get(metric_id)
            return None if metric is None else metric.value

        def count(metric_id: str) -> int | None:
            found = value(metric_id)
            return None if found is None else round(found)

        updated = [metric.last_updated_at for metric in overview.metrics if metric.last_updated_at is not None]
        return m.RevenueCatOverview(
            currency=overview.currency or "USD",
            mrr=value("mrr"),
            revenue_28d=value("revenue"),
            active_subscriptions=count("active_subscriptions"),
            active_trials=count("active_trials"),
            new_customers_28d=count("new_customers"),
            active_users_28d=count("active_users"),
            last_updated_at=_from_ms(max(updated)) if updated else None,
        )

    # ------------------------------------------------------------------------------------------ MAU

    async def mau(self, query: m.MauQuery) -> m.MauResult:
        """Monthly active users per calendar month, with month-over-month change."""
        client = self._require_amplitude()
        today = self._today()
        query = self.resolve_mau(query)
        start_month, end_month = query.start_month or today, query.end_month or today
        months = _months_between(start_month, end_month)
        last_day = min(_month_end(end_month), today)
        data = await client.users(start_month, last_day, metric="active", interval=30)
        values = _monthly_values(data)
        rows: list[m.MauMonth] = []
        previous: int | None = None
        for month_start in months:
            key = (month_start.year, month_start.month)
            if key not in values:
                raise UpstreamError(f"amplitude returned no bucket for {month_start:%Y-%m}.", source="amplitude")
            users = values[key]
            end = min(_month_end(month_start), today)
            change = None if previous is None else users - previous
            rows.append(
                m.MauMonth(
                    month=f"{month_start:%Y-%m}",
                    start=month_start,
                    end=end,
                    active_users=users,
                    change=change,
                    change_pct=_pct(change, previous),
                    partial=end < _month_end(month_start),
                )
            )
            previous = users
        return m.MauResult(**self._meta(("amplitude", None)), months=rows)

    # ------------------------------------------------------------------------------------------ conversion

    async def conversion(self, query: m.ConversionQuery) -> m.ConversionResult:
        """An Amplitude funnel over event steps, plus RevenueCat's trial conversion when configured."""
        client = self._require_amplitude()
        query = self.resolve_conversion(query)
        steps = list(query.steps or ())
        span = _Range(query.start_date or self._today(), query.end_date or self._today())
        window = query.conversion_window_days * 86_400

        funnel_call = client.funnel(steps, span.start, span.end, conversion_window_seconds=window, mode=query.mode)
        if self._revenuecat is None:
            funnel = await funnel_call
            trial: m.TrialConversion | KpiError | None = None
        else:
            funnel, trial = await _both(funnel_call, self._trial_conversion(self._revenuecat, span))
            if isinstance(funnel, KpiError):
                raise funnel
            if isinstance(trial, UpstreamAuthError):
                raise trial
        stages: list[m.FunnelStep] = []
        for index, event_type in enumerate(steps):
            stages.append(
                m.FunnelStep(
                    event_type=event_type,
                    users=round(funnel.cumulative_raw[index]),
                    step_conversion=funnel.step_by_step[index],
                    cumulative_conversion=funnel.cumulative[index],
                    median_time_to_convert_seconds=_ms_to_s(funnel.median_trans_times, index),
                    average_time_to_convert_seconds=_ms_to_s(funnel.avg_trans_times, index),
                )
            )
        sources: list[tuple[m.Source, object]] = [("amplitude", None)]
        if trial is not None:
            sources.append(("revenuecat", trial))
        return m.ConversionResult(
            **self._meta(*sources),
            start_date=span.start,
            end_date=span.end,
            conversion_window_days=query.conversion_window_days,
            mode=query.mode,
            steps=stages,
            overall_conversion=funnel.cumulative[-1],
            trial_conversion=trial if isinstance(trial, m.TrialConversion) else None,
        )

    async def _trial_conversion(self, client: RevenueCatClient, span: _Range) -> m.TrialConversion:
        days = (span.end - span.start).days + 1
        resolution = "day" if days <= 62 else "week" if days <= 366 else "month"
        chart = await client.chart("trial_conversion_rate", span.start, span.end, resolution=resolution)
        trials_i = _measure(chart, "trials")
        conversions_i = _measure(chart, "conversions")
        trials = conversions = 0
        incomplete: set[int] = set()
        for point in chart.values:
            if point.segment not in (None, 0) or point.value is None:
                continue
            if point.incomplete:
                incomplete.add(point.cohort)
                continue
            if point.measure == trials_i:
                trials += round(point.value)
            elif point.measure == conversions_i:
                conversions += round(point.value)
        return m.TrialConversion(
            conversion_rate_pct=_pct(conversions, trials),
            trials=trials,
            conversions=conversions,
            incomplete_periods=len(incomplete),
        )

    # ------------------------------------------------------------------------------------------ user journey

    async def user_journey(self, user_id: str) -> m.JourneyResult:
        """One user's Amplitude events and RevenueCat purchases, merged into one timeline (oldest first)."""
        user_id = self.resolve_user_id(user_id)
        amplitude, revenuecat = self._require_amplitude(), self._require_revenuecat()
        amp, rc = await _both(
            self._amplitude_journey(amplitude, user_id), self._revenuecat_journey(revenuecat, user_id)
        )
        _raise_if_all_failed(amp, rc)
        amp_ok = None if isinstance(amp, KpiError) else amp
        rc_ok = None if isinstance(rc, KpiError) else rc
        if (amp_ok is None or amp_ok[0] is None) and (rc_ok is None or rc_ok[0] is None):
            failed = amp if isinstance(amp, KpiError) else rc if isinstance(rc, KpiError) else None
            if failed is not None:
                raise failed
            raise NotFoundError(f"user {user_id!r} is unknown to Amplitude and RevenueCat.")
        timeline: list[m.TimelineEntry] = []
        profile, truncated = None, False
        if amp_ok is not None:
            profile, events, truncated = amp_ok
            timeline += events
        customer = None
        if rc_ok is not None:
            customer, entries = rc_ok
            timeline += entries
        timeline.sort(key=lambda entry: entry.at)
        return m.JourneyResult(
            **self._meta(("amplitude", amp), ("revenuecat", rc)),
            user_id=user_id,
            amplitude=profile,
            revenuecat=customer,
            timeline=timeline,
            events_truncated=truncated,
        )

    async def _amplitude_journey(
        self, client: AmplitudeClient, user_id: str
    ) -> tuple[m.AmplitudeProfile | None, list[m.TimelineEntry], bool]:
        match = await client.find_user(user_id)
        if match is None:
            return None, [], False
        activity, truncated = await client.user_activity(match.amplitude_id, limit=self._activity_limit)
        data = activity.user_data
        profile = m.AmplitudeProfile(
            amplitude_id=data.canonical_amplitude_id or match.amplitude_id,
            first_used=data.first_used,
            last_used=data.last_used,
            num_events=data.num_events,
            num_sessions=data.num_sessions,
            country=data.country,
            platform=data.platform,
        )
        return profile, [_event_entry(event) for event in activity.events], truncated

    async def _revenuecat_journey(
        self, client: RevenueCatClient, user_id: str
    ) -> tuple[m.CustomerProfile | None, list[m.TimelineEntry]]:
        customer = await client.customer(user_id)
        if customer is None:
            return None, []
        subscriptions, purchases = await _all(lambda: client.subscriptions(user_id), lambda: client.purchases(user_id))
        transactions = await _bounded_map(
            [lambda s=sub: client.subscription_transactions(s.id) for sub in subscriptions], CUSTOMER_CONCURRENCY
        )
        entries: list[m.TimelineEntry] = []
        for subscription, sub_transactions in zip(subscriptions, transactions, strict=True):
            entries += _subscription_entries(subscription, sub_transactions)
        for purchase in purchases:
            entries += _purchase_entries(purchase)
        total = sum((s.total_revenue_in_usd.gross for s in subscriptions if s.total_revenue_in_usd), 0.0)
        total += sum((p.revenue_in_usd.gross for p in purchases if p.revenue_in_usd and p.status != "refunded"), 0.0)
        profile = m.CustomerProfile(
            first_seen_at=_from_ms(customer.first_seen_at),
            last_seen_at=_from_ms(customer.last_seen_at),
            country=customer.last_seen_country,
            subscriptions=[_subscription_summary(s) for s in subscriptions],
            total_revenue_usd=round(total, 2),
        )
        return profile, entries

    # ------------------------------------------------------------------------------------------ refund analysis

    async def refund_analysis(self, query: m.RefundAnalysisQuery) -> m.RefundAnalysisResult:
        """RevenueCat refund rate and revenue per period, with optional per-customer refund details."""
        client = self._require_revenuecat()
        query = self.resolve_refund_analysis(query)
        span = _Range(query.start_date, query.end_date)
        if query.segment is not None:
            options = await client.chart_options("refund_rate")
            valid = sorted(str(s.get("id")) for s in options.segments if s.get("id") is not None)
            if query.segment not in valid:
                raise InvalidInputError(
                    f"segment must be one of {', '.join(valid) or 'nothing (no segments offered)'}.", field="segment"
                )

        async def charts() -> tuple[ChartData, ChartData]:
            return await _all(
                lambda: client.chart(
                    "refund_rate", span.start, span.end, resolution=query.resolution, segment=query.segment
                ),
                lambda: client.chart(
                    "revenue", span.start, span.end, resolution=query.resolution, segment=query.segment
                ),
            )

        async def customers() -> list[m.CustomerRefunds] | None:
            if not query.user_ids:
                return None
            return await _bounded_map(
                [lambda u=user_id: self._customer_refunds(client, u) for user_id in query.user_ids],
                CUSTOMER_CONCURRENCY,
            )

        outcomes: tuple[tuple[ChartData, ChartData], list[m.CustomerRefunds] | None] = await _all(charts, customers)
        (refund_chart, revenue_chart), details = outcomes
        periods = _refund_periods(refund_chart, revenue_chart)
        meta = self._meta(("revenuecat", None))
        # Customers whose lookup failed are missing from the result: it is partial, though the charts answered.
        meta["partial"] = any(c.error is not None for c in details or [])
        return m.RefundAnalysisResult(
            **meta,
            start_date=span.start,
            end_date=span.end,
            resolution=query.resolution,
            segment=query.segment,
            currency=revenue_chart.yaxis_currency or "USD",
            periods=periods,
            summary=_refund_summary(periods),
            attribution_note=REFUND_ATTRIBUTION_NOTE,
            customers=details,
        )

    async def _customer_refunds(self, client: RevenueCatClient, user_id: str) -> m.CustomerRefunds:
        try:
            customer = await client.customer(user_id)
            if customer is None:
                return m.CustomerRefunds(
                    user_id=user_id, found=False, refunded=[], refunded_amount_usd=0, purchases=0, subscriptions=0
                )
            purchases, subscriptions = await _all(
                lambda: client.purchases(user_id), lambda: client.subscriptions(user_id)
            )
        except UpstreamAuthError:
            raise
        except UpstreamError as exc:
            return m.CustomerRefunds(
                user_id=user_id,
                found=None,
                refunded=[],
                refunded_amount_usd=0,
                purchases=0,
                subscriptions=0,
                error=problem_of(exc),
            )
        refunded = [
            m.RefundedItem(
                kind="purchase",
                id=p.id,
                product_id=p.product_id,
                purchased_at=_from_ms_required(p.purchased_at),
                amount_usd=p.revenue_in_usd.gross if p.revenue_in_usd else None,
                store=p.store,
            )
            for p in purchases
            if p.status == "refunded"
        ]
        return m.CustomerRefunds(
            user_id=user_id,
            found=True,
            refunded=refunded,
            refunded_amount_usd=round(sum(item.amount_usd or 0.0 for item in refunded), 2),
            purchases=len(purchases),
            subscriptions=len(subscriptions),
        )

    # ------------------------------------------------------------------------------------------ inputs

    def resolve_overview(self, query: m.OverviewQuery) -> m.OverviewQuery:
        """The query with its defaults made concrete, validated (`InvalidInputError` names the field)."""
        today = self._today()
        as_of = _not_before_min(query.as_of or today, "as_of")
        if as_of > today:
            raise InvalidInputError("as_of must not be in the future.", field="as_of")
        return m.OverviewQuery(as_of=as_of)

    def resolve_mau(self, query: m.MauQuery) -> m.MauQuery:
        """Months as their first days, default the last six; validated."""
        today = self._today()
        end_month = _not_before_min(query.end_month or today, "end_month").replace(day=1)
        start_month = _not_before_min(query.start_month or _add_months(end_month, -5), "start_month").replace(day=1)
        if end_month > today:
            raise InvalidInputError("end_month must not be in the future.", field="end_month")
        if start_month > end_month:
            raise InvalidInputError("start_month must not be after end_month.", field="start_month")
        span = (end_month.year - start_month.year) * 12 + end_month.month - start_month.month + 1
        if span > MAX_MAU_MONTHS:
            raise InvalidInputError(f"at most {MAX_MAU_MONTHS} months can be asked at once.", field="start_month")
        return m.MauQuery(start_month=start_month, end_month=end_month)

    def resolve_conversion(self, query: m.ConversionQuery) -> m.ConversionQuery:
        """Steps and dates made concrete (default funnel, last 30 days); validated."""
        steps = list(query.steps) if query.steps is not None else list(self._conversion_steps)
        if not 2 <= len(steps) <= m.MAX_FUNNEL_STEPS:
            raise InvalidInputError(f"a funnel needs 2 to {m.MAX_FUNNEL_STEPS} steps.", field="steps")
        end = _not_before_min(query.end_date or self._today(), "end_date")
        span = self._date_range(query.start_date or end - timedelta(days=29), end, MAX_FUNNEL_DAYS)
        return query.model_copy(update={"steps": steps, "start_date": span.start, "end_date": span.end})

    def resolve_user_id(self, user_id: str) -> str:
        """A valid user id (length and characters), or `InvalidInputError`."""
        return _valid_user_id(user_id)

    def resolve_refund_analysis(self, query: m.RefundAnalysisQuery) -> m.RefundAnalysisQuery:
        """Dates validated; user ids de-duplicated, first occurrence kept."""
        self._date_range(query.start_date, query.end_date, MAX_REFUND_DAYS)
        if query.user_ids is None:
            return query
        return query.model_copy(update={"user_ids": list(dict.fromkeys(query.user_ids))})

    def today(self) -> date:
        """Today (UTC) by the service's clock."""
        return self._today()

    # ------------------------------------------------------------------------------------------ helpers

    def _require_amplitude(self) -> AmplitudeClient:
        if self._amplitude is None:
            raise SourceNotConfiguredError("amplitude", variables=("AMPLITUDE_API_KEY", "AMPLITUDE_SECRET_KEY"))
        return self._amplitude

    def _require_revenuecat(self) -> RevenueCatClient:
        if self._revenuecat is None:
            raise SourceNotConfiguredError("revenuecat", variables=("REVENUECAT_API_KEY", "REVENUECAT_PROJECT_ID"))
        return self._revenuecat

    def _today(self) -> date:
        return self._clock().astimezone(UTC).date()

    def _date_range(self, start: date, end: date, max_days: int) -> _Range:
        _not_before_min(start, "start_date")
        _not_before_min(end, "end_date")
        if end > self._today():
            raise InvalidInputError("end_date must not be in the future.", field="end_date")
        if start > end:
            raise InvalidInputError("start_date must not be after end_date.", field="start_date")
        if (end - start).days + 1 > max_days:
            raise InvalidInputError(f"the date range must not exceed {max_days} days.", field="start_date")
        return _Range(start, end)

    def _meta(self, *sources: tuple[m.Source, object]) -> dict[str, Any]:
        statuses = [
            m.SourceStatus(source=name, status="error", error=problem_of(outcome))
            if isinstance(outcome, KpiError)
            else m.SourceStatus(source=name, status="ok")
            for name, outcome in sources
        ]
        return {
            "data_source": self.data_source,
            "generated_at": self._clock().astimezone(UTC),
            "partial": any(s.status == "error" for s in statuses),
            "sources": statuses,
        }


# ---------------------------------------------------------------------------------------------- concurrency


async def _both(a: Awaitable[A], b: Awaitable[B]) -> tuple[A | UpstreamError, B | UpstreamError]:
    """Run two upstream branches concurrently; each branch's `UpstreamError` is returned, not raised."""
    results: dict[int, Any] = {}

    async def run(index: int, awaitable: Awaitable[Any]) -> None:
        try:
            results[index] = await awaitable
        except UpstreamError as exc:
            results[index] = exc

    async with anyio.create_task_group() as group:
        group.start_soon(run, 0, a)
        group.start_soon(run, 1, b)
    return results[0], results[1]


async def _all(*calls: Callable[[], Awaitable[Any]]) -> Any:
    """Run calls concurrently and return their results in order; the first failure cancels the rest."""
    return await _bounded_map(list(calls), len(calls))


async def _bounded_map(calls: Sequence[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run calls with at most `limit` in flight; results keep the calls' order."""
    results: list[Any] = [None] * len(calls)
    if not calls:
        return []
    limiter = anyio.CapacityLimiter(max(1, limit))

    async def run(index: int) -> None:
        async with limiter:
            results[index] = await calls[index]()

    try:
        async with anyio.create_task_group() as group:
            for index in range(len(calls)):
                group.start_soon(run, index)
    except BaseExceptionGroup as group_error:
        raise _first_kpi_error(group_error) from None
    return results


def _first_kpi_error(group_error: BaseExceptionGroup[BaseException]) -> BaseException:
    """Unwrap a task group's failure to the error a caller can render (the first one raised)."""
    leaves: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:  # pyright: ignore[reportUnknownVariableType, reportUnknownMemberType]
                walk(inner)  # pyright: ignore[reportUnknownArgumentType]
        else:
            leaves.append(error)

    walk(group_error)
    return next((e for e in leaves if isinstance(e, KpiError)), leaves[0] if leaves else group_error)


def _raise_if_all_failed(*outcomes: object) -> None:
    """Raise the first error when no branch succeeded, or when a branch says our credentials are wrong."""
    for outcome in outcomes:
        if isinstance(outcome, UpstreamAuthError):
            raise outcome
    errors = [outcome for outcome in outcomes if isinstance(outcome, KpiError)]
    if len(errors) == len(outcomes):
        raise errors[0]


def problem_of(error: KpiError) -> m.SourceProblem:
    """The problem-details fields of an error, for per-source statuses."""
    return m.SourceProblem(
        type=error.type_uri,
        title=error.title,
        status=error.status,
        detail=error.detail,
        retry_after=getattr(error, "retry_after", None),
    )


# ---------------------------------------------------------------------------------------------- dates


def _not_before_min(day: date, field: str) -> date:
    if day < MIN_DATE:
        raise InvalidInputError(f"{field} must be on or after {MIN_DATE.isoformat()}.", field=field)
    return day


def _month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + (day.month - 1) + months
    return date(index // 12, index % 12 + 1, 1)


def _months_between(start: date, end: date) -> list[date]:
    count = (end.year - start.year) * 12 + end.month - start.month + 1
    return [_add_months(start, i) for i in range(count)]


def _from_ms(value: int | None) -> datetime | None:
    return None if value is None else _from_ms_required(value)


def _from_ms_required(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def _parse_amplitude_time(value: str) -> datetime:
    text = value.strip().replace("T", " ").removesuffix("Z")
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise UpstreamError("amplitude sent an event time in an unknown format.", source="amplitude") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _cohort_date(cohort: int) -> date:
    """A chart point's period start; `cohort` is unix seconds (ms tolerated: its unit is UNCONFIRMED)."""
    seconds = cohort / 1000 if cohort > 100_000_000_000 else cohort
    return datetime.fromtimestamp(seconds, UTC).date()


# ---------------------------------------------------------------------------------------------- figures


def _valid_user_id(user_id: str) -> str:
    try:
        return _USER_ID.validate_python(user_id)
    except ValidationError as exc:
        raise InvalidInputError(
            f"user_id must be 1 to {m.USER_ID_MAX_LENGTH} characters from letters, digits and _.:@$+-=|/#~!*.",
            field="user_id",
        ) from exc


def _pct(part: float | None, whole: float | None) -> float | None:
    if part is None or not whole:
        return None
    return round(part / whole * 100, 2)


def _ms_to_s(values: list[float], index: int) -> float | None:
    if index == 0 or index >= len(values) or not math.isfinite(values[index]):
        return None
    return round(values[index] / 1000, 3)


def _bucket(data: UsersData, start: date, *, daily: bool) -> int:
    """The ungrouped series' value for the bucket starting at `start` (the only bucket of a one-bucket query)."""
    if not data.series or not data.x_values:
        raise UpstreamError("amplitude returned no users series.", source="amplitude")
    series = data.series[0]
    key = start.isoformat()
    if key in data.x_values:
        return round(series[data.x_values.index(key)])
    if daily:
        raise UpstreamError(f"amplitude returned no bucket for {key}.", source="amplitude")
    return round(series[-1])


def _monthly_values(data: UsersData) -> dict[tuple[int, int], int]:
    if not data.series:
        raise UpstreamError("amplitude returned no users series.", source="amplitude")
    values: dict[tuple[int, int], int] = {}
    for x_value, value in zip(data.x_values, data.series[0], strict=True):
        try:
            day = date.fromisoformat(x_value[:10])
        except ValueError as exc:
            raise UpstreamError("amplitude returned a bucket date in an unknown format.", source="amplitude") from exc
        values[(day.year, day.month)] = values.get((day.year, day.month), 0) + round(value)
    return values


def _measure(chart: ChartData, *names: str) -> int:
    """Index of the measure whose display name matches one of `names` (case-insensitive, exact then partial)."""
    wanted = [name.lower() for name in names]
    lowered = [measure.display_name.lower() for measure in chart.measures]
    for name in wanted:
        if name in lowered:
            return lowered.index(name)
    for index, display in enumerate(lowered):
        if any(name in display for name in wanted):
            return index
    raise UpstreamError(f"revenuecat's {chart.display_name} chart has no {names[0]!r} measure.", source="revenuecat")


def _points(chart: ChartData) -> dict[tuple[int, int | None], dict[int, tuple[float | None, bool]]]:
    table: dict[tuple[int, int | None], dict[int, tuple[float | None, bool]]] = {}
    for point in chart.values:
        table.setdefault((point.cohort, point.segment), {})[point.measure] = (point.value, point.incomplete)
    return table


def _refund_periods(refunds: ChartData, revenue: ChartData) -> list[m.RefundPeriod]:
    rate_i = _measure(refunds, "refund rate", "rate")
    refunded_i = _measure(refunds, "refunded transactions", "refunds", "refunded")
    transactions_i = _measure(refunds, "transactions")
    revenue_i = _measure(revenue, "revenue")
    revenue_points = _points(revenue)
    segments = refunds.segments or []
    periods: list[m.RefundPeriod] = []
    for (cohort, segment), measures in sorted(_points(refunds).items(), key=lambda kv: (kv[0][0], kv[0][1] or -1)):
        label = None
        if segment is not None and 0 <= segment < len(segments):
            if segments[segment].is_total:
                continue
            label = segments[segment].display_name or segments[segment].id
        incomplete = any(flag for _, flag in measures.values())
        revenue_value = revenue_points.get((cohort, segment), {}).get(revenue_i, (None, False))[0]
        periods.append(
            m.RefundPeriod(
                period_start=_cohort_date(cohort),
                segment=label,
                refund_rate_pct=_round(measures.get(rate_i, (None, False))[0]),
                refunded_transactions=_int(measures.get(refunded_i, (None, False))[0]),
                transactions=_int(measures.get(transactions_i, (None, False))[0]),
                revenue=_round(revenue_value),
                incomplete=incomplete,
            )
        )
    return periods


def _refund_summary(periods: list[m.RefundPeriod]) -> m.RefundSummary:
    complete = [p for p in periods if not p.incomplete]
    transactions = sum(p.transactions or 0 for p in complete)
    refunded = sum(p.refunded_transactions or 0 for p in complete)
    rates = [p.refund_rate_pct for p in complete if p.refund_rate_pct is not None]
    return m.RefundSummary(
        transactions=transactions,
        refunded_transactions=refunded,
        refund_rate_pct=_pct(refunded, transactions),
        average_period_refund_rate_pct=round(sum(rates) / len(rates), 2) if rates else None,
        revenue=round(sum(p.revenue or 0.0 for p in periods), 2),
        incomplete_periods=len({p.period_start for p in periods if p.incomplete}),
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _int(value: float | None) -> int | None:
    return None if value is None else round(value)


# ---------------------------------------------------------------------------------------------- timeline


def _scalar_properties(properties: dict[str, Any]) -> dict[str, str | int | float | bool | None]:
    kept: dict[str, str | int | float | bool | None] = {}
    for key, value in list(properties.items())[:20]:
        if isinstance(value, str):
            kept[str(key)[:64]] = value[:256]
        elif value is None or isinstance(value, bool | int | float):
            kept[str(key)[:64]] = value
    return kept


def _event_entry(event: ActivityEvent) -> m.TimelineEntry:
    return m.TimelineEntry(
        at=_parse_amplitude_time(event.event_time),
        source="amplitude",
        kind="event",
        title=event.event_type,
        session_id=event.session_id,
        properties=_scalar_properties(event.event_properties),
    )


def _subscription_entries(
    subscription: Subscription, transactions: list[SubscriptionTransaction]
) -> list[m.TimelineEntry]:
    common: dict[str, Any] = {
        "source": "revenuecat",
        "product_id": subscription.product_id,
        "store": subscription.store,
    }
    trial = subscription.status == "trialing"
    entries = [
        m.TimelineEntry(
            at=_from_ms_required(subscription.starts_at),
            kind="trial_started" if trial else "subscription_started",
            title="Trial started" if trial else "Subscription started",
            **common,
        )
    ]
    for transaction in sorted(transactions, key=lambda t: t.purchased_at)[1:]:
        entries.append(
            m.TimelineEntry(at=_from_ms_required(transaction.purchased_at), kind="renewal", title="Renewed", **common)
        )
    period_end = _from_ms(subscription.current_period_ends_at)
    if subscription.status in ("in_billing_retry", "in_grace_period") and period_end is not None:
        entries.append(
            m.TimelineEntry(
                at=period_end,
                kind="billing_issue",
                title="Billing issue: renewal failed",
                properties={"status": subscription.status},
                **common,
            )
        )
    ends_at = _from_ms(subscription.ends_at)
    if subscription.status == "expired" and ends_at is not None:
        entries.append(m.TimelineEntry(at=ends_at, kind="expiration", title="Subscription expired", **common))
    elif subscription.auto_renewal_status == "will_not_renew" and period_end is not None:
        entries.append(
            m.TimelineEntry(
                at=period_end,
                kind="cancellation",
                title="Cancelled: access ends",
                properties={"scheduled": True},
                **common,
            )
        )
    return entries


def _purchase_entries(purchase: Purchase) -> list[m.TimelineEntry]:
    amount = purchase.revenue_in_usd.gross if purchase.revenue_in_usd else None
    at = _from_ms_required(purchase.purchased_at)
    common: dict[str, Any] = {
        "source": "revenuecat",
        "product_id": purchase.product_id,
        "store": purchase.store,
        "amount_usd": amount,
    }
    entries = [m.TimelineEntry(at=at, kind="purchase", title="Purchase", **common)]
    if purchase.status == "refunded":
        # v2 gives no refund time: the refund is placed at the purchase it reverses.
        entries.append(
            m.TimelineEntry(at=at, kind="refund", title="Refunded", properties={"refund_time_known": False}, **common)
        )
    return entries


def _subscription_summary(subscription: Subscription) -> m.SubscriptionSummary:
    return m.SubscriptionSummary(
        id=subscription.id,
        product_id=subscription.product_id,
        status=subscription.status,
        store=subscription.store,
        starts_at=_from_ms_required(subscription.starts_at),
        current_period_ends_at=_from_ms(subscription.current_period_ends_at),
        auto_renewal_status=subscription.auto_renewal_status,
        gives_access=subscription.gives_access,
        total_revenue_usd=subscription.total_revenue_in_usd.gross if subscription.total_revenue_in_usd else None,
    )
