"""Reading RevenueCat charts: points in either documented `values` shape, measures matched by meaning, refund
periods and their summary, trial conversion.

The measures' display names are not documented by the vendor (public integrations report e.g. `Trial Starts`,
`Conversions` or `Transactions`, `Refunded Transactions`, `Refund Rate`), so a measure is found by its unit and by
any of several names, never by one exact name or a fixed index; a measure that is not there costs the figures
that need it (null and a warning), and a rate that can be derived from counts is derived.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import cast

from pydantic import ValidationError

from shared.models import kpi as m
from shared.models.revenuecat import ChartData, ChartPoint
from shared.services.figures import Notes
from shared.services.inputs import add_months
from shared.services.rates import exact_pct, mean_pct, pct, round_pct

PointTable = dict[tuple[int, int | None], dict[int, tuple[float | None, bool]]]


@dataclass(frozen=True)
class MeasureSpec:
    """How to recognize a measure: names (exact first, then contained), the units it may have, words it must not
    contain (so `Refunded Transactions` is not taken for `Transactions`)."""

    names: tuple[str, ...]
    units: tuple[str, ...]
    exclude: tuple[str, ...] = ()


RATE_UNITS = ("%", "percent", "percentage")
COUNT_UNITS = ("#", "", "count", "number")
MONEY_UNITS = ("$", "usd", "currency", "money")

REFUND_RATE = MeasureSpec(("refund rate", "rate"), RATE_UNITS)
REFUNDED = MeasureSpec(("refunded transactions", "refunded", "refunds"), COUNT_UNITS, exclude=("rate",))
TRANSACTIONS = MeasureSpec(("transactions", "paid transactions"), COUNT_UNITS, exclude=("refund", "rate"))
REVENUE = MeasureSpec(("revenue",), MONEY_UNITS, exclude=("transactions",))
TRIALS = MeasureSpec(("trial starts", "trials started", "trials", "started trials"), COUNT_UNITS, ("rate", "convers"))
CONVERSIONS = MeasureSpec(("conversions", "converted", "conversion"), COUNT_UNITS, exclude=("rate",))


def cohort_date(cohort: int) -> date:
    """A chart point's period start; `cohort` is unix seconds (ms tolerated: its unit is unconfirmed)."""
    seconds = cohort / 1000 if cohort > 100_000_000_000 else cohort
    return datetime.fromtimestamp(seconds, UTC).date()


def period_end(start: date, resolution: m.Resolution) -> date:
    """The last day of the period starting at `start`."""
    if resolution == "day":
        return start
    if resolution == "week":
        return start + timedelta(days=6)
    return add_months(start.replace(day=1), 1) - timedelta(days=1)


def find_measure(chart: ChartData, spec: MeasureSpec) -> int | None:
    """Index of the measure `spec` describes, or None: an exact name first, then a name contained in the display
    name, among measures whose unit (when given) fits and whose name has none of the excluded words."""
    candidates: list[tuple[int, str]] = []
    for index, measure in enumerate(chart.measures):
        name = measure.display_name.strip().lower()
        unit = (measure.unit or "").strip().lower()
        if measure.unit is not None and unit not in spec.units:
            continue
        if any(word in name for word in spec.exclude):
            continue
        candidates.append((index, name))
    for wanted in spec.names:
        for index, name in candidates:
            if name == wanted:
                return index
    for wanted in spec.names:
        for index, name in candidates:
            if wanted in name:
                return index
    if spec.units == RATE_UNITS:  # a rate renamed beyond recognition is still the chart's only percentage
        rates = [index for index, _ in candidates if (chart.measures[index].unit or "").strip().lower() in RATE_UNITS]
        if len(rates) == 1:
            return rates[0]
    return None


def read_points(chart: ChartData) -> tuple[list[ChartPoint], int]:
    """The chart's points, from object points (`cohort`, `measure`, `value`, `incomplete`, `segment`) or from
    array rows (`[cohort, value of measure 0, value of measure 1, ...]`); and how many items were unreadable."""
    found: list[ChartPoint] = []
    unreadable = 0
    for item in chart.values:
        if isinstance(item, dict):
            try:
                found.append(ChartPoint.model_validate(item))
            except ValidationError:
                unreadable += 1
        elif isinstance(item, list) and item:
            row = cast("list[object]", item)  # a JSON array
            if _number(row[0]) is None:
                unreadable += 1
                continue
            cohort = int(_number(row[0]) or 0)
            found += [ChartPoint(cohort=cohort, measure=k, value=_number(v)) for k, v in enumerate(row[1:])]
        else:
            unreadable += 1
    return found, unreadable


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def points(chart: ChartData) -> PointTable:
    """Values by (cohort, segment), then by measure index: (value, incomplete)."""
    table: PointTable = {}
    for point in read_points(chart)[0]:
        table.setdefault((point.cohort, point.segment), {})[point.measure] = (point.value, point.incomplete)
    return table


def trial_conversion(chart: ChartData, notes: Notes) -> m.TrialConversion:
    """Trials and conversions over the chart's complete periods (unsegmented), and the conversion rate."""
    trials_i = find_measure(chart, TRIALS)
    conversions_i = find_measure(chart, CONVERSIONS)
    trials = conversions = 0
    incomplete: set[int] = set()
    for point in read_points(chart)[0]:
        if point.segment not in (None, 0) or point.value is None:
            continue
        if point.incomplete:
            incomplete.add(point.cohort)
            continue
        if point.measure == trials_i:
            trials += round(point.value)
        elif point.measure == conversions_i:
            conversions += round(point.value)
    names = _names(chart)
    if trials_i is None:
        notes.missing(
            "trial_conversion.trials", "revenuecat", f"the trial_conversion_rate chart has no trials measure ({names})."
        )
    if conversions_i is None:
        notes.missing(
            "trial_conversion.conversions",
            "revenuecat",
            f"the trial_conversion_rate chart has no conversions measure ({names}).",
        )
    if trials_i is None or conversions_i is None:
        notes.missing("trial_conversion.conversion_rate_pct", "revenuecat", "it needs both trials and conversions.")
    return m.TrialConversion(
        conversion_rate_pct=pct(conversions, trials) if trials_i is not None and conversions_i is not None else None,
        trials=trials if trials_i is not None else None,
        conversions=conversions if conversions_i is not None else None,
        incomplete_periods=len(incomplete),
    )


def refund_periods(
    refunds: ChartData, revenue: ChartData | None, resolution: m.Resolution, today: date, notes: Notes
) -> list[m.RefundPeriod]:
    """One row per period (and segment value), from the refund_rate chart joined with the revenue chart (None when
    it could not be read). A period that contains today is incomplete whatever the chart says."""
    rate_i = find_measure(refunds, REFUND_RATE)
    refunded_i = find_measure(refunds, REFUNDED)
    transactions_i = find_measure(refunds, TRANSACTIONS)
    revenue_i = find_measure(revenue, REVENUE) if revenue is not None else None
    revenue_points = points(revenue) if revenue is not None else {}
    segments = refunds.segments or []
    names = _names(refunds)
    if refunded_i is None:
        notes.missing(
            "periods[].refunded_transactions", "revenuecat", f"the refund_rate chart has no refunded measure ({names})."
        )
    if transactions_i is None:
        notes.missing(
            "periods[].transactions", "revenuecat", f"the refund_rate chart has no transactions measure ({names})."
        )
    derive_rate = rate_i is None and refunded_i is not None and transactions_i is not None
    if derive_rate:
        notes.missing(
            "periods[].refund_rate_pct",
            "revenuecat",
            f"the refund_rate chart has no rate measure ({names}); derived as refunded / transactions.",
        )
    elif rate_i is None:
        notes.missing(
            "periods[].refund_rate_pct", "revenuecat", f"the refund_rate chart has no rate measure ({names})."
        )
    if revenue is not None and revenue_i is None:
        notes.missing(
            "periods[].revenue", "revenuecat", f"the revenue chart has no revenue measure ({_names(revenue)})."
        )
    periods: list[m.RefundPeriod] = []
    for (cohort, segment), measures in sorted(points(refunds).items(), key=lambda kv: (kv[0][0], kv[0][1] or -1)):
        label = None
        if segment is not None and 0 <= segment < len(segments):
            if segments[segment].is_total:
                continue
            label = segments[segment].display_name or segments[segment].id
        start = cohort_date(cohort)
        incomplete = any(flag for _, flag in measures.values()) or period_end(start, resolution) >= today
        refunded = _int(_value(measures, refunded_i))
        transactions = _int(_value(measures, transactions_i))
        rate = pct(refunded, transactions) if derive_rate else round_pct(_value(measures, rate_i))
        revenue_value = (
            revenue_points.get((cohort, segment), {}).get(revenue_i, (None, False))[0]
            if revenue_i is not None
            else None
        )
        periods.append(
            m.RefundPeriod(
                period_start=start,
                segment=label,
                refund_rate_pct=rate,
                refunded_transactions=refunded,
                transactions=transactions,
                revenue=_round(revenue_value),
                incomplete=incomplete,
            )
        )
    return periods


def refund_summary(periods: Sequence[m.RefundPeriod], notes: Notes) -> m.RefundSummary:
    """Totals over complete periods (counts and rates) and all periods (revenue); a total whose parts are missing
    is null, with a warning."""
    complete = [p for p in periods if not p.incomplete]
    counted = [p for p in complete if p.transactions is not None and p.refunded_transactions is not None]
    counts_known = len(counted) == len(complete)
    transactions = sum(p.transactions or 0 for p in counted) if counts_known else None
    refunded = sum(p.refunded_transactions or 0 for p in counted) if counts_known else None
    if not counts_known:
        for figure in ("summary.transactions", "summary.refunded_transactions", "summary.refund_rate_pct"):
            notes.missing(figure, "revenuecat", "the transaction counts of some complete periods are missing.")
    revenues = [p.revenue for p in periods]
    revenue_known = all(value is not None for value in revenues)
    if not revenue_known:
        notes.missing("summary.revenue", "revenuecat", "the revenue of some periods is missing.")
    # Each period's rate from its unrounded counts when known (else its published rate), averaged, rounded once.
    exact_rates = [exact_pct(p.refunded_transactions, p.transactions) for p in complete]
    rates = [
        rate
        for exact, p in zip(exact_rates, complete, strict=True)
        if (rate := p.refund_rate_pct if exact is None else exact) is not None
    ]
    return m.RefundSummary(
        transactions=transactions,
        refunded_transactions=refunded,
        refund_rate_pct=pct(refunded, transactions),
        average_period_refund_rate_pct=mean_pct(rates),
        revenue=round(sum(value or 0.0 for value in revenues), 2) if revenue_known else None,
        incomplete_periods=len({p.period_start for p in periods if p.incomplete}),
    )


def _names(chart: ChartData) -> str:
    shown = ", ".join(repr(measure.display_name[:40]) for measure in chart.measures[:8])
    return f"measures: {shown}" if shown else "no measures"


def _value(measures: dict[int, tuple[float | None, bool]], index: int | None) -> float | None:
    return None if index is None else measures.get(index, (None, False))[0]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _int(value: float | None) -> int | None:
    return None if value is None else round(value)
