"""Reading RevenueCat charts: measures by name, points by period and segment, refund periods and their summary."""

from __future__ import annotations

from datetime import UTC, date, datetime

from shared.errors import UpstreamError
from shared.models import kpi as m
from shared.models.revenuecat import ChartData

PointTable = dict[tuple[int, int | None], dict[int, tuple[float | None, bool]]]


def cohort_date(cohort: int) -> date:
    """A chart point's period start; `cohort` is unix seconds (ms tolerated: its unit is unconfirmed)."""
    seconds = cohort / 1000 if cohort > 100_000_000_000 else cohort
    return datetime.fromtimestamp(seconds, UTC).date()


def measure(chart: ChartData, *names: str) -> int:
    """Index of the measure whose display name matches one of `names` (case-insensitive, exact then partial)."""
    wanted = [name.lower() for name in names]
    lowered = [item.display_name.lower() for item in chart.measures]
    for name in wanted:
        if name in lowered:
            return lowered.index(name)
    for index, display in enumerate(lowered):
        if any(name in display for name in wanted):
            return index
    raise UpstreamError(f"revenuecat's {chart.display_name} chart has no {names[0]!r} measure.", source="revenuecat")


def points(chart: ChartData) -> PointTable:
    """Values by (cohort, segment), then by measure index: (value, incomplete)."""
    table: PointTable = {}
    for point in chart.values:
        table.setdefault((point.cohort, point.segment), {})[point.measure] = (point.value, point.incomplete)
    return table


def trial_conversion(chart: ChartData) -> m.TrialConversion:
    """Trials and conversions over the chart's complete periods (unsegmented), and the conversion rate."""
    trials_i = measure(chart, "trials")
    conversions_i = measure(chart, "conversions")
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
        conversion_rate_pct=pct(conversions, trials),
        trials=trials,
        conversions=conversions,
        incomplete_periods=len(incomplete),
    )


def refund_periods(refunds: ChartData, revenue: ChartData) -> list[m.RefundPeriod]:
    """One row per period (and segment value), from the refund_rate chart joined with the revenue chart."""
    rate_i = measure(refunds, "refund rate", "rate")
    refunded_i = measure(refunds, "refunded transactions", "refunds", "refunded")
    transactions_i = measure(refunds, "transactions")
    revenue_i = measure(revenue, "revenue")
    revenue_points = points(revenue)
    segments = refunds.segments or []
    periods: list[m.RefundPeriod] = []
    for (cohort, segment), measures in sorted(points(refunds).items(), key=lambda kv: (kv[0][0], kv[0][1] or -1)):
        label = None
        if segment is not None and 0 <= segment < len(segments):
            if segments[segment].is_total:
                continue
            label = segments[segment].display_name or segments[segment].id
        incomplete = any(flag for _, flag in measures.values())
        revenue_value = revenue_points.get((cohort, segment), {}).get(revenue_i, (None, False))[0]
        periods.append(
            m.RefundPeriod(
                period_start=cohort_date(cohort),
                segment=label,
                refund_rate_pct=_round(measures.get(rate_i, (None, False))[0]),
                refunded_transactions=_int(measures.get(refunded_i, (None, False))[0]),
                transactions=_int(measures.get(transactions_i, (None, False))[0]),
                revenue=_round(revenue_value),
                incomplete=incomplete,
            )
        )
    return periods


def refund_summary(periods: list[m.RefundPeriod]) -> m.RefundSummary:
    """Totals over complete periods (rates) and all periods (revenue)."""
    complete = [p for p in periods if not p.incomplete]
    transactions = sum(p.transactions or 0 for p in complete)
    refunded = sum(p.refunded_transactions or 0 for p in complete)
    rates = [p.refund_rate_pct for p in complete if p.refund_rate_pct is not None]
    return m.RefundSummary(
        transactions=transactions,
        refunded_transactions=refunded,
        refund_rate_pct=pct(refunded, transactions),
        average_period_refund_rate_pct=round(sum(rates) / len(rates), 2) if rates else None,
        revenue=round(sum(p.revenue or 0.0 for p in periods), 2),
        incomplete_periods=len({p.period_start for p in periods if p.incomplete}),
    )


def pct(part: float | None, whole: float | None) -> float | None:
    """`part / whole` in percent, two decimals; None when undefined."""
    if part is None or not whole:
        return None
    return round(part / whole * 100, 2)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _int(value: float | None) -> int | None:
    return None if value is None else round(value)
