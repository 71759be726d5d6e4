"""The KPI service: the five operations both faces expose.

Each method takes its query already resolved (`shared.services.inputs`, applied once per request by the operation
registry, `shared.operations`) and returns the result model of `shared.models.kpi`, or raises a `KpiError`.
Independent upstream calls run concurrently (`shared.services.fanout`), so an operation takes as long as its
slowest branch.

A little over 400 lines: one section per operation, each reading top to bottom; the parts that are not an operation
live beside it (inputs, fanout, overview, journey, charts, series, timeline, figures).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, TypedDict, TypeVar

import anyio
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
    UpstreamTimeoutError,
)
from shared.models import definitions as d
from shared.models import kpi as m
from shared.models.amplitude import FunnelElement
from shared.models.revenuecat import ChartData
from shared.provenance import recording
from shared.services import charts, journey, overview, timeline
from shared.services.fanout import both, bounded_map, gather2, raise_if_all_failed
from shared.services.figures import Fetched, Notes, fetch
from shared.services.inputs import DateRange, Inputs, month_end, months_between
from shared.services.journey import CUSTOMER_CONCURRENCY
from shared.services.rates import pct
from shared.services.series import monthly_values, ms_to_s

if TYPE_CHECKING:
    from shared.operations import Operation

QueryT = TypeVar("QueryT", bound=BaseModel)
ResultT = TypeVar("ResultT", bound=m.ResultMeta)

REFUND_ATTRIBUTION_NOTE = (
    "RevenueCat attributes a refund to the period of the original transaction, not to the day of the refund, so "
    "past periods can still change and recent periods (incomplete=true) are excluded from the summary rates. "
    "Revenue is net of refunds of that period's transactions. Per-customer details list refunded one-time "
    "purchases only: RevenueCat API v2 exposes no refund state on subscriptions."
)


EVENT_CHECK_SECONDS = 5.0
"""Longest the check of a funnel step no user reached may take (budget waits included): it only adds a warning."""
EVENT_CHECK_CONCURRENCY = 2
"""Event-segmentation checks in flight at once (of Amplitude's 5 concurrent Dashboard queries)."""


class Meta(TypedDict):
    """The fields every result starts with (`shared.models.kpi.ResultMeta`)."""

    data_source: m.DataSource
    generated_at: datetime
    partial: bool
    sources: list[m.SourceStatus]
    warnings: list[m.FigureWarning]
    provenance: list[m.Provenance]


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
        amp, rc = await both(
            overview.amplitude_overview(amplitude, as_of, today, self._clock),
            overview.revenuecat_overview(revenuecat, self._clock),
        )
        raise_if_all_failed(amp, rc)
        notes = Notes()
        for branch in (amp, rc):
            if not isinstance(branch, KpiError):
                notes.extend(branch[1])
        return m.OverviewResult(
            **self._meta(notes, ("amplitude", amp), ("revenuecat", rc)),
            as_of=as_of,
            amplitude=None if isinstance(amp, KpiError) else amp[0],
            revenuecat=None if isinstance(rc, KpiError) else rc[0],
        )

    # ------------------------------------------------------------------------------------------ MAU

    async def mau(self, query: m.MauQuery) -> m.MauResult:
        """Monthly active users per calendar month, with month-over-month change."""
        client = self._require_amplitude()
        today = self.today()
        start_month, end_month = query.start_month or today, query.end_month or today
        last_day = min(month_end(end_month), today)
        fetched = await fetch(lambda: client.users(start_month, last_day, metric="active", interval=30), self._clock)
        values = monthly_values(fetched.value)
        notes = Notes()
        rows: list[m.MauMonth] = []
        previous: int | None = None
        for month_start in months_between(start_month, end_month):
            label = f"{month_start:%Y-%m}"
            users = values.get((month_start.year, month_start.month))
            if users is None:
                notes.missing(
                    f"months[{label}].active_users", "amplitude", f"amplitude's answer has no bucket for {label}."
                )
                notes.missing(f"months[{label}].change", "amplitude", f"the active users of {label} are missing.")
                notes.missing(f"months[{label}].change_pct", "amplitude", f"the active users of {label} are missing.")
            elif previous is None and rows:
                earlier = rows[-1].month
                notes.missing(f"months[{label}].change", "amplitude", f"the active users of {earlier} are missing.")
                notes.missing(f"months[{label}].change_pct", "amplitude", f"the active users of {earlier} are missing.")
            change = None if users is None or previous is None else users - previous
            rows.append(
                m.MauMonth(
                    month=label,
                    start=month_start,
                    end=min(month_end(month_start), today),
                    active_users=users,
                    change=change,
                    change_pct=pct(change, previous),
                    partial=month_end(month_start) >= today,
                )
            )
            previous = users
        notes.cite(
            ["months[].active_users", "months[].change", "months[].change_pct"],
            "amplitude",
            fetched,
            period=(start_month, last_day),
            basis="calendar_month",
            definition=d.MAU_MONTH,
        )
        return m.MauResult(**self._meta(notes, ("amplitude", None)), months=rows)

    # ------------------------------------------------------------------------------------------ conversion

    async def conversion(self, query: m.ConversionQuery) -> m.ConversionResult:
        """An Amplitude funnel over event steps, plus RevenueCat's trial conversion when configured."""
        client = self._require_amplitude()
        steps = list(query.steps or ())
        span = DateRange(query.start_date or self.today(), query.end_date or self.today())
        window = query.conversion_window_days * 86_400

        def funnel_call() -> Awaitable[FunnelElement]:
            return client.funnel(steps, span.start, span.end, conversion_window_seconds=window, mode=query.mode)

        if self._revenuecat is None:
            funnel = await fetch(funnel_call, self._clock)
            trial: tuple[m.TrialConversion, Notes] | KpiError | None = None
        else:
            funnel_or_error, trial = await both(
                fetch(funnel_call, self._clock), self._trial_conversion(self._revenuecat, span)
            )
            if isinstance(funnel_or_error, KpiError):
                raise funnel_or_error
            funnel = funnel_or_error
            if isinstance(trial, UpstreamAuthError):
                raise trial
        element = funnel.value
        notes = Notes()
        for name, values in (
            ("median_time_to_convert_seconds", element.median_trans_times),
            ("average_time_to_convert_seconds", element.avg_trans_times),
        ):
            for index in range(max(1, len(values)), len(steps)):  # the first step has no time from a previous one
                notes.missing(
                    f"steps[{index}].{name}", "amplitude", "amplitude's funnel answer has no transition times."
                )
        counts = element.cumulative_raw  # conversions from the counts (Amplitude's own fractions are rounded)
        stages = [
            m.FunnelStep(
                event_type=event_type,
                users=round(counts[index]),
                step_conversion_pct=pct(counts[index], counts[max(index - 1, 0)]) or 0.0,
                cumulative_conversion_pct=pct(counts[index], counts[0]) or 0.0,
                median_time_to_convert_seconds=ms_to_s(element.median_trans_times, index),
                average_time_to_convert_seconds=ms_to_s(element.avg_trans_times, index),
            )
            for index, event_type in enumerate(steps)
        ]
        notes.cite(
            ["steps[]", "overall_conversion_pct"],
            "amplitude",
            funnel,
            period=(span.start, span.end),
            basis="date_range",
            definition=d.FUNNEL,
        )
        await self._check_unseen_steps(client, steps, counts, span, notes)
        sources: list[tuple[m.Source, object]] = [("amplitude", None)]
        if trial is not None:
            sources.append(("revenuecat", trial))
            if not isinstance(trial, KpiError):
                notes.extend(trial[1])
        result = m.ConversionResult(
            **self._meta(notes, *sources),
            start_date=span.start,
            end_date=span.end,
            conversion_window_days=query.conversion_window_days,
            mode=query.mode,
            steps=stages,
            overall_conversion_pct=pct(counts[-1], counts[0]) or 0.0,
            trial_conversion=None if trial is None or isinstance(trial, KpiError) else trial[0],
        )
        result.keep_briefly(notes.checks_failed)
        return result

    async def _check_unseen_steps(
        self, client: AmplitudeClient, steps: Sequence[str], counts: Sequence[float], span: DateRange, notes: Notes
    ) -> None:
        """A step no user reached: was its event tracked at all in the range? One event-segmentation request per
        such event type (so the usual funnel costs nothing extra); a total of 0 is a warning (a misspelled or
        untracked event type), a failed request only costs that warning, never the answer."""
        unseen = list(dict.fromkeys(step for step, count in zip(steps, counts, strict=True) if round(count) == 0))
        if not unseen:
            return  # someone reached every step: nothing to check, nothing asked
        totals: dict[str, int | KpiError] = {}

        async def total(event_type: str) -> None:
            try:
                with anyio.fail_after(EVENT_CHECK_SECONDS):  # an optional check: waits for no budget past this
                    totals[event_type] = await client.event_totals(event_type, span.start, span.end)
            except KpiError as exc:
                totals[event_type] = exc
            except TimeoutError:
                totals[event_type] = UpstreamTimeoutError(
                    f"the check took longer than {EVENT_CHECK_SECONDS:g} s.", source="amplitude"
                )

        with recording() as requests:
            await bounded_map([lambda e=event_type: total(e) for event_type in unseen], EVENT_CHECK_CONCURRENCY)
        checked: list[str] = []
        failed: list[str] = []
        for index, step in enumerate(steps):
            outcome = totals.get(step)
            if outcome is None or round(counts[index]) != 0:
                continue
            checked.append(f"steps[{index}].users")
            if isinstance(outcome, KpiError):
                failed.append(f"steps[{index}] ({outcome.detail})")
            elif outcome == 0:
                notes.suspect(
                    f"steps[{index}].users",
                    "amplitude",
                    f"no {step!r} events between {span.start} and {span.end}: check the event type's spelling "
                    "(event types are case-sensitive).",
                )
        definition = d.EVENT_TOTALS
        if failed:
            definition += f" The check failed for {', '.join(failed)}: no warning could be given there."
            notes.checks_failed = True
        notes.cite(
            checked,
            "amplitude",
            Fetched(None, list(requests), self._clock()),
            period=(span.start, span.end),
            basis="date_range",
            definition=definition,
        )

    async def _trial_conversion(self, client: RevenueCatClient, span: DateRange) -> tuple[m.TrialConversion, Notes]:
        days = (span.end - span.start).days + 1
        resolution = "day" if days <= 62 else "week" if days <= 366 else "month"
        fetched = await fetch(
            lambda: client.chart("trial_conversion_rate", span.start, span.end, resolution=resolution), self._clock
        )
        notes = Notes()
        result = charts.trial_conversion(fetched.value, notes)
        notes.cite(
            ["trial_conversion"],
            "revenuecat",
            fetched,
            period=(span.start, span.end),
            basis="trial_start_period",
            definition=d.TRIAL_CONVERSION,
            upstream_updated_at=timeline.from_ms(fetched.value.last_computed_at),
        )
        return result, notes

    # ------------------------------------------------------------------------------------------ user journey

    async def user_journey(self, query: m.UserJourneyQuery) -> m.JourneyResult:
        """One user's Amplitude events and RevenueCat purchases, merged into one timeline (oldest first)."""
        user_id = query.user_id
        amplitude, revenuecat = self._require_amplitude(), self._require_revenuecat()
        amp, rc = await both(
            journey.amplitude_journey(amplitude, user_id, limit=self._activity_limit, clock=self._clock),
            journey.revenuecat_journey(revenuecat, user_id, clock=self._clock),
        )
        raise_if_all_failed(amp, rc)
        amp_ok = None if isinstance(amp, KpiError) else amp
        rc_ok = None if isinstance(rc, KpiError) else rc
        if (amp_ok is None or amp_ok.profile is None) and (rc_ok is None or rc_ok.profile is None):
            failed = amp if isinstance(amp, KpiError) else rc if isinstance(rc, KpiError) else None
            if failed is not None:
                raise failed
            raise NotFoundError(f"user {user_id!r} is unknown to Amplitude and RevenueCat.")
        notes = Notes()
        entries: list[m.TimelineEntry] = []
        truncated = False
        if amp_ok is not None:
            entries += amp_ok.entries
            truncated = amp_ok.truncated
            notes.extend(amp_ok.notes)
        if rc_ok is not None:
            entries += rc_ok.entries
            notes.extend(rc_ok.notes)
        entries.sort(key=lambda entry: entry.at)
        return m.JourneyResult(
            **self._meta(notes, ("amplitude", amp), ("revenuecat", rc)),
            user_id=user_id,
            amplitude=amp_ok.profile if amp_ok is not None else None,
            revenuecat=rc_ok.profile if rc_ok is not None else None,
            timeline=entries,
            events_truncated=truncated,
        )

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

        def chart(name: str) -> Callable[[], Awaitable[Fetched[ChartData]]]:
            return lambda: fetch(
                lambda: client.chart(name, span.start, span.end, resolution=query.resolution, segment=query.segment),
                self._clock,
            )

        async def revenue_chart() -> Fetched[ChartData] | UpstreamError:
            try:
                return await chart("revenue")()
            except UpstreamAuthError:
                raise
            except UpstreamError as exc:
                return exc  # revenue figures are lost, refund figures are not

        async def customers() -> list[m.CustomerRefunds] | None:
            if not query.user_ids:
                return None
            return await bounded_map(
                [lambda u=user_id: self._customer_refunds(client, u) for user_id in query.user_ids],
                CUSTOMER_CONCURRENCY,
            )

        (refunds, revenue), looked_up = await gather2(
            lambda: gather2(chart("refund_rate"), revenue_chart), lambda: fetch(customers, self._clock)
        )
        details = looked_up.value
        notes = Notes()
        if isinstance(revenue, UpstreamError):
            notes.missing("periods[].revenue", "revenuecat", f"the revenue chart could not be read: {revenue.detail}")
        revenue_data = None if isinstance(revenue, UpstreamError) else revenue.value
        periods = charts.refund_periods(refunds.value, revenue_data, query.resolution, self.today(), notes)
        summary = charts.refund_summary(periods, notes)
        basis: m.PeriodBasis = "original_transaction_period"
        notes.cite(
            ["periods[].refund_rate_pct", "periods[].refunded_transactions", "periods[].transactions", "summary"],
            "revenuecat",
            refunds,
            period=(span.start, span.end),
            basis=basis,
            definition=d.REFUND_RATE,
            upstream_updated_at=timeline.from_ms(refunds.value.last_computed_at),
        )
        if not isinstance(revenue, UpstreamError):
            notes.cite(
                ["periods[].revenue", "summary.revenue"],
                "revenuecat",
                revenue,
                period=(span.start, span.end),
                basis=basis,
                definition=d.PERIOD_REVENUE,
                upstream_updated_at=timeline.from_ms(revenue.value.last_computed_at),
            )
        if details is not None:
            notes.cite(
                ["customers[]"],
                "revenuecat",
                looked_up,
                period=(None, None),
                basis="all_time",
                definition=d.CUSTOMER_REFUNDS,
            )
        meta = self._meta(notes, ("revenuecat", None))
        # Customers whose lookup failed are missing from the result: it is partial, though the charts answered.
        meta["partial"] = any(c.error is not None for c in details or [])
        return m.RefundAnalysisResult(
            **meta,
            start_date=span.start,
            end_date=span.end,
            resolution=query.resolution,
            segment=query.segment,
            currency=(revenue_data.yaxis_currency if revenue_data is not None else None) or "USD",
            periods=periods,
            summary=summary,
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
            if p.status == "refunded" and p.purchased_at is not None
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

    def _meta(self, notes: Notes, *sources: tuple[m.Source, object]) -> Meta:
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
            warnings=notes.warnings,
            provenance=notes.provenance,
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
