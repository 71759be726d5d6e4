"""The KPI service: the five operations both faces expose.

Each method takes its query already resolved (`shared.services.inputs`, applied once per request by the operation
registry, `shared.operations`) and returns the result model of `shared.models.kpi`, or raises a `KpiError`.
Independent upstream calls run concurrently (`shared.services.fanout`), so an operation takes as long as its
slowest branch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, TypedDict, TypeVar

from pydantic import BaseModel

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
from shared.models.revenuecat import ChartData
from shared.services import charts, timeline
from shared.services.fanout import both, bounded_map, gather2, gather3, raise_if_all_failed
from shared.services.inputs import DateRange, Inputs, month_end, months_between
from shared.services.series import bucket, monthly_values, ms_to_s

if TYPE_CHECKING:
    from shared.operations import Operation

QueryT = TypeVar("QueryT", bound=BaseModel)
ResultT = TypeVar("ResultT", bound=m.ResultMeta)

CUSTOMER_CONCURRENCY = 8
REFUND_ATTRIBUTION_NOTE = (
    "RevenueCat attributes a refund to the period of the original transaction, not to the day of the refund, so "
    "past periods can still change and recent periods (incomplete=true) are excluded from the summary rates. "
    "Revenue is net of refunds of that period's transactions. Per-customer details list refunded one-time "
    "purchases only: RevenueCat API v2 exposes no refund state on subscriptions."
)


class Meta(TypedDict):
    """The fields every result starts with (`shared.models.kpi.ResultMeta`)."""

    data_source: m.DataSource
    generated_at: datetime
    partial: bool
    sources: list[m.SourceStatus]


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

    def today(self) -> date:
        """Today (UTC) by the service's clock."""
        return self._clock().astimezone(UTC).date()

    def inputs(self) -> Inputs:
        """What resolving a query depends on besides the query: today and the default funnel."""
        return Inputs(today=self.today(), conversion_steps=self._conversion_steps)

    async def answer(self, operation: Operation[QueryT, ResultT], query: QueryT) -> ResultT:
        """Resolve `query` and compute `operation` (uncached; the faces go through `CachedKpiService`)."""
        return await operation.compute(self, operation.resolve(query, self.inputs()))

    # ------------------------------------------------------------------------------------------ overview

    async def overview(self, query: m.OverviewQuery) -> m.OverviewResult:
        """Amplitude DAU/MAU/new users and RevenueCat's overview metrics, fetched concurrently."""
        amplitude, revenuecat = self._require_amplitude(), self._require_revenuecat()
        today = self.today()
        as_of = query.as_of or today
        amp, rc = await both(self._amplitude_overview(amplitude, as_of, today), self._revenuecat_overview(revenuecat))
        raise_if_all_failed(amp, rc)
        return m.OverviewResult(
            **self._meta(("amplitude", amp), ("revenuecat", rc)),
            as_of=as_of,
            amplitude=None if isinstance(amp, KpiError) else amp,
            revenuecat=None if isinstance(rc, KpiError) else rc,
        )

    async def _amplitude_overview(self, client: AmplitudeClient, as_of: date, today: date) -> m.AmplitudeOverview:
        dau_date = as_of - timedelta(days=1) if as_of == today else as_of
        month_start = as_of.replace(day=1)
        dau, active, new = await gather3(
            lambda: client.users(dau_date, dau_date, metric="active", interval=1),
            lambda: client.users(month_start, as_of, metric="active", interval=30),
            lambda: client.users(month_start, as_of, metric="new", interval=30),
        )
        return m.AmplitudeOverview(
            dau=bucket(dau, dau_date, daily=True),
            dau_date=dau_date,
            mau=bucket(active, month_start, daily=False),
            new_users=bucket(new, month_start, daily=False),
            month_start=month_start,
            month_partial=as_of < month_end(as_of),
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
            last_updated_at=timeline.from_ms(max(updated)) if updated else None,
        )

    # ------------------------------------------------------------------------------------------ MAU

    async def mau(self, query: m.MauQuery) -> m.MauResult:
        """Monthly active users per calendar month, with month-over-month change."""
        client = self._require_amplitude()
        today = self.today()
        start_month, end_month = query.start_month or today, query.end_month or today
        last_day = min(month_end(end_month), today)
        data = await client.users(start_month, last_day, metric="active", interval=30)
        values = monthly_values(data)
        rows: list[m.MauMonth] = []
        previous: int | None = None
        for month_start in months_between(start_month, end_month):
            key = (month_start.year, month_start.month)
            if key not in values:
                raise UpstreamError(f"amplitude returned no bucket for {month_start:%Y-%m}.", source="amplitude")
            users = values[key]
            end = min(month_end(month_start), today)
            change = None if previous is None else users - previous
            rows.append(
                m.MauMonth(
                    month=f"{month_start:%Y-%m}",
                    start=month_start,
                    end=end,
                    active_users=users,
                    change=change,
                    change_pct=charts.pct(change, previous),
                    partial=end < month_end(month_start),
                )
            )
            previous = users
        return m.MauResult(**self._meta(("amplitude", None)), months=rows)

    # ------------------------------------------------------------------------------------------ conversion

    async def conversion(self, query: m.ConversionQuery) -> m.ConversionResult:
        """An Amplitude funnel over event steps, plus RevenueCat's trial conversion when configured."""
        client = self._require_amplitude()
        steps = list(query.steps or ())
        span = DateRange(query.start_date or self.today(), query.end_date or self.today())
        window = query.conversion_window_days * 86_400

        funnel_call = client.funnel(steps, span.start, span.end, conversion_window_seconds=window, mode=query.mode)
        if self._revenuecat is None:
            funnel = await funnel_call
            trial: m.TrialConversion | KpiError | None = None
        else:
            funnel, trial = await both(funnel_call, self._trial_conversion(self._revenuecat, span))
            if isinstance(funnel, KpiError):
                raise funnel
            if isinstance(trial, UpstreamAuthError):
                raise trial
        stages = [
            m.FunnelStep(
                event_type=event_type,
                users=round(funnel.cumulative_raw[index]),
                step_conversion=funnel.step_by_step[index],
                cumulative_conversion=funnel.cumulative[index],
                median_time_to_convert_seconds=ms_to_s(funnel.median_trans_times, index),
                average_time_to_convert_seconds=ms_to_s(funnel.avg_trans_times, index),
            )
            for index, event_type in enumerate(steps)
        ]
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

    async def _trial_conversion(self, client: RevenueCatClient, span: DateRange) -> m.TrialConversion:
        days = (span.end - span.start).days + 1
        resolution = "day" if days <= 62 else "week" if days <= 366 else "month"
        chart = await client.chart("trial_conversion_rate", span.start, span.end, resolution=resolution)
        return charts.trial_conversion(chart)

    # ------------------------------------------------------------------------------------------ user journey

    async def user_journey(self, query: m.UserJourneyQuery) -> m.JourneyResult:
        """One user's Amplitude events and RevenueCat purchases, merged into one timeline (oldest first)."""
        user_id = query.user_id
        amplitude, revenuecat = self._require_amplitude(), self._require_revenuecat()
        amp, rc = await both(self._amplitude_journey(amplitude, user_id), self._revenuecat_journey(revenuecat, user_id))
        raise_if_all_failed(amp, rc)
        amp_ok = None if isinstance(amp, KpiError) else amp
        rc_ok = None if isinstance(rc, KpiError) else rc
        if (amp_ok is None or amp_ok[0] is None) and (rc_ok is None or rc_ok[0] is None):
            failed = amp if isinstance(amp, KpiError) else rc if isinstance(rc, KpiError) else None
            if failed is not None:
                raise failed
            raise NotFoundError(f"user {user_id!r} is unknown to Amplitude and RevenueCat.")
        entries: list[m.TimelineEntry] = []
        profile, truncated = None, False
        if amp_ok is not None:
            profile, events, truncated = amp_ok
            entries += events
        customer = None
        if rc_ok is not None:
            customer, purchases = rc_ok
            entries += purchases
        entries.sort(key=lambda entry: entry.at)
        return m.JourneyResult(
            **self._meta(("amplitude", amp), ("revenuecat", rc)),
            user_id=user_id,
            amplitude=profile,
            revenuecat=customer,
            timeline=entries,
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
        return profile, [timeline.event_entry(event) for event in activity.events], truncated

    async def _revenuecat_journey(
        self, client: RevenueCatClient, user_id: str
    ) -> tuple[m.CustomerProfile | None, list[m.TimelineEntry]]:
        customer = await client.customer(user_id)
        if customer is None:
            return None, []
        subscriptions, purchases = await gather2(
            lambda: client.subscriptions(user_id), lambda: client.purchases(user_id)
        )
        transactions = await bounded_map(
            [lambda s=sub: client.subscription_transactions(s.id) for sub in subscriptions], CUSTOMER_CONCURRENCY
        )
        entries: list[m.TimelineEntry] = []
        for subscription, sub_transactions in zip(subscriptions, transactions, strict=True):
            entries += timeline.subscription_entries(subscription, sub_transactions)
        for purchase in purchases:
            entries += timeline.purchase_entries(purchase)
        total = sum((s.total_revenue_in_usd.gross for s in subscriptions if s.total_revenue_in_usd), 0.0)
        total += sum((p.revenue_in_usd.gross for p in purchases if p.revenue_in_usd and p.status != "refunded"), 0.0)
        profile = m.CustomerProfile(
            first_seen_at=timeline.from_ms(customer.first_seen_at),
            last_seen_at=timeline.from_ms(customer.last_seen_at),
            country=customer.last_seen_country,
            subscriptions=[timeline.subscription_summary(s) for s in subscriptions],
            total_revenue_usd=round(total, 2),
        )
        return profile, entries

    # ------------------------------------------------------------------------------------------ refund analysis

    async def refund_analysis(self, query: m.RefundAnalysisQuery) -> m.RefundAnalysisResult:
        """RevenueCat refund rate and revenue per period, with optional per-customer refund details."""
        client = self._require_revenuecat()
        span = DateRange(query.start_date, query.end_date)
        if query.segment is not None:
            options = await client.chart_options("refund_rate")
            valid = sorted(str(s.get("id")) for s in options.segments if s.get("id") is not None)
            if query.segment not in valid:
                raise InvalidInputError(
                    f"segment must be one of {', '.join(valid) or 'nothing (no segments offered)'}.", field="segment"
                )

        async def refund_charts() -> tuple[ChartData, ChartData]:
            return await gather2(
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
            return await bounded_map(
                [lambda u=user_id: self._customer_refunds(client, u) for user_id in query.user_ids],
                CUSTOMER_CONCURRENCY,
            )

        (refund_chart, revenue_chart), details = await gather2(refund_charts, customers)
        periods = charts.refund_periods(refund_chart, revenue_chart)
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
            summary=charts.refund_summary(periods),
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
            purchases, subscriptions = await gather2(
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
                purchased_at=timeline.from_ms_required(p.purchased_at),
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

    # ------------------------------------------------------------------------------------------ helpers

    def _require_amplitude(self) -> AmplitudeClient:
        if self._amplitude is None:
            raise SourceNotConfiguredError("amplitude", variables=("AMPLITUDE_API_KEY", "AMPLITUDE_SECRET_KEY"))
        return self._amplitude

    def _require_revenuecat(self) -> RevenueCatClient:
        if self._revenuecat is None:
            raise SourceNotConfiguredError("revenuecat", variables=("REVENUECAT_API_KEY", "REVENUECAT_PROJECT_ID"))
        return self._revenuecat

    def _meta(self, *sources: tuple[m.Source, object]) -> Meta:
        statuses = [
            m.SourceStatus(source=name, status="error", error=problem_of(outcome))
            if isinstance(outcome, KpiError)
            else m.SourceStatus(source=name, status="ok")
            for name, outcome in sources
        ]
        return Meta(
            data_source=self.data_source,
            generated_at=self._clock().astimezone(UTC),
            partial=any(s.status == "error" for s in statuses),
            sources=statuses,
        )


def problem_of(error: KpiError) -> m.SourceProblem:
    """The problem-details fields of an error, for per-source statuses."""
    return m.SourceProblem(
        type=error.type_uri,
        title=error.title,
        status=error.status,
        detail=error.detail,
        retry_after=getattr(error, "retry_after", None),
    )
