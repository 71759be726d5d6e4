"""RevenueCat overview metrics and charts computed from the dataset (docs/upstream-apis.md#revenuecat-charts).

Charts available in the sandbox: ``revenue``, ``refund_rate``, ``trial_conversion_rate``. Buckets are
calendar periods (day / Monday-start week / month) clipped to [start_date, end_date]; a point's ``cohort``
is the clipped bucket start in unix SECONDS. A point is ``incomplete`` when its whole period does not
lie at least ``settle`` days before the dataset end: settle = 0 for revenue (the period extends past
the dataset end), 30 for refund_rate (refunds of recent transactions can still come in) and 7 for
trial_conversion_rate (trials that started in the last 7 days have not ended yet). Refunds and
conversions are attributed to the period of the original transaction / trial start.

Long because it is one emulated endpoint family (query parsing, bucketing, measures, summaries, options) that must
agree with itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal, cast

from starlette.datastructures import QueryParams

from .dataset import COUNTRY_NAMES, PRODUCTS, Dataset, Transaction, Trial, money_for
from .periods import Bucket, Granularity, buckets
from .revenuecat_common import FX_PER_USD, RevenueCatError, currency_param, ms, parameter_error

CHART_NAMES = (
    "actives",
    "actives_movement",
    "actives_new",
    "arr",
    "churn",
    "cohort_explorer",
    "conversion_to_paying",
    "customers_new",
    "ltv_per_customer",
    "ltv_per_paying_customer",
    "mrr",
    "mrr_movement",
    "refund_rate",
    "revenue",
    "subscription_retention",
    "subscription_status",
    "trials",
    "trials_movement",
    "trials_new",
    "customers_active",
    "trial_conversion_rate",
)
AVAILABLE_CHARTS = ("revenue", "refund_rate", "trial_conversion_rate")
RESOLUTIONS: Mapping[str, Granularity] = {"0": "day", "1": "week", "2": "month"}
SEGMENTS: Mapping[str, str] = {"country": "Country", "store": "Store", "product": "Product"}
_SEGMENT_GROUPS: Mapping[str, str] = {"country": "Geography", "store": "Store", "product": "Product"}
_STORE_NAMES: Mapping[str, str] = {
    "app_store": "App Store",
    "play_store": "Play Store",
    "stripe": "Stripe",
    "rc_billing": "Web Billing",
}
REVENUE_TYPES: Mapping[str, str] = {
    "revenue": "Revenue",
    "revenue_net_of_taxes": "Revenue (net of taxes)",
    "proceeds": "Proceeds",
}
_SETTLE_DAYS: Mapping[str, int] = {"revenue": 0, "refund_rate": 30, "trial_conversion_rate": 7}


MeasureNames = Literal["public", "legacy"]


@dataclass(frozen=True, slots=True)
class Measure:
    display_name: str
    unit: str  # "$", "#" or "%"
    decimal_precision: int
    key: str  # which computed quantity the measure shows (see ``_quantities``)


# Measure names and order as public integrations of the Charts API report them (docs/upstream-apis.md#revenuecat-chart-values-and-measures), the default.
PUBLIC_MEASURES: Mapping[str, tuple[Measure, ...]] = {
    "revenue": (Measure("Revenue", "$", 2, "revenue"), Measure("Transactions", "#", 0, "transactions")),
    "refund_rate": (
        Measure("Transactions", "#", 0, "transactions"),
        Measure("Refunded Transactions", "#", 0, "refunded"),
        Measure("Refund Rate", "%", 2, "refund_rate"),
    ),
    "trial_conversion_rate": (
        Measure("Trial Starts", "#", 0, "trials"),
        Measure("Conversions", "#", 0, "conversions"),
        Measure("Expirations", "#", 0, "expirations"),
        Measure("Pending", "#", 0, "pending"),
    ),
}
# The names the sandbox served before (a variant: ``SandboxState.chart_measure_names = "legacy"``).
LEGACY_MEASURES: Mapping[str, tuple[Measure, ...]] = {
    "revenue": PUBLIC_MEASURES["revenue"],
    "refund_rate": (
        Measure("Refund Rate", "%", 2, "refund_rate"),
        Measure("Refunded Transactions", "#", 0, "refunded"),
        Measure("Transactions", "#", 0, "transactions"),
    ),
    "trial_conversion_rate": (
        Measure("Conversion Rate", "%", 2, "conversion_rate"),
        Measure("Trials", "#", 0, "trials"),
        Measure("Conversions", "#", 0, "conversions"),
    ),
}
MEASURE_SETS: Mapping[MeasureNames, Mapping[str, tuple[Measure, ...]]] = {
    "public": PUBLIC_MEASURES,
    "legacy": LEGACY_MEASURES,
}
_YAXIS: Mapping[str, str] = {"revenue": "$", "refund_rate": "%", "trial_conversion_rate": "%"}
_META: Mapping[str, tuple[str, str, str, str | None]] = {  # category, display name, description, docs link
    "revenue": (
        "revenue",
        "Revenue",
        "Revenue in the period minus refunds of transactions from that period.",
        "https://www.revenuecat.com/docs/dashboard-and-metrics/charts/revenue-chart",
    ),
    "refund_rate": (
        "revenue",
        "Refund Rate",
        "Share of paid transactions that were refunded, attributed to the original transaction's period.",
        "https://www.revenuecat.com/docs/dashboard-and-metrics/charts/refund-rate-chart",
    ),
    "trial_conversion_rate": (
        "subscriptions",
        "Trial Conversion Rate",
        "Share of trials started in the period that converted to a paid subscription.",
        None,
    ),
}


@dataclass(frozen=True, slots=True)
class ChartQuery:
    chart: str
    start: date
    end: date
    granularity: Granularity
    segment: str | None
    filters: Mapping[str, frozenset[str]]
    revenue_type: str | None
    aggregate: frozenset[str]
    currency: str
    measures: tuple[Measure, ...]


def check_chart_name(chart: str, unknown_status: int) -> None:
    if chart not in CHART_NAMES:
        # UNCONFIRMED upstream: 404 vs 400 for an unknown chart name (docs/upstream-apis.md#revenuecat-charts).
        if unknown_status == 404:
            raise RevenueCatError(404, f"Chart {chart!r} not found")
        raise parameter_error("chart_name", f"Unknown chart {chart!r}; expected one of {', '.join(CHART_NAMES)}")
    if chart not in AVAILABLE_CHARTS:
        raise parameter_error("chart_name", f"chart not available in the sandbox: {chart!r}")


def _date(params: QueryParams, name: str) -> date:
    raw = params.get(name)
    if raw is None:
        raise parameter_error(name, f"{name} is required (YYYY-MM-DD)")
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise parameter_error(name, f"{name} must be a date formatted YYYY-MM-DD, got {raw!r}") from None


def _json(params: QueryParams, name: str) -> object:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        parsed: object = json.loads(raw)
    except ValueError:
        raise parameter_error(name, f"{name} must be valid JSON") from None
    return parsed


def _filters(params: QueryParams) -> dict[str, frozenset[str]]:
    parsed = _json(params, "filters")
    if parsed is None:
        return {}
    if not isinstance(parsed, list):
        raise parameter_error("filters", 'filters must be a JSON array like [{"name": "country", "values": ["US"]}]')
    result: dict[str, frozenset[str]] = {}
    for item in cast("list[object]", parsed):
        entry = cast("dict[str, object]", item) if isinstance(item, dict) else {}
        name, values = entry.get("name"), entry.get("values")
        if not isinstance(name, str) or not isinstance(values, list):
            raise parameter_error("filters", "each filter needs a string name and a list of values")
        if name not in SEGMENTS:
            raise parameter_error("filters", f"Unknown filter {name!r}; valid ids: {', '.join(SEGMENTS)}")
        result[name] = result.get(name, frozenset()) | frozenset(str(v) for v in cast("list[object]", values))
    return result


def _revenue_type(chart: str, params: QueryParams) -> str | None:
    parsed = _json(params, "selectors")
    selectors = cast("dict[str, object]", parsed) if isinstance(parsed, dict) else None
    if parsed is not None and selectors is None:
        raise parameter_error("selectors", "selectors must be a JSON object")
    allowed = ("revenue_type",) if chart == "revenue" else ()
    for key in selectors or {}:
        if key not in allowed:
            raise parameter_error("selectors", f"Unknown selector {key!r}; valid ids: {', '.join(allowed) or 'none'}")
    if chart != "revenue":
        return None
    value = (selectors or {}).get("revenue_type", "revenue")
    if not isinstance(value, str) or value not in REVENUE_TYPES:
        raise parameter_error("selectors", f"Invalid revenue_type; valid ids: {', '.join(REVENUE_TYPES)}")
    return value


def parse_chart_query(chart: str, params: QueryParams, measure_names: MeasureNames = "public") -> ChartQuery:
    """Validate the chart data query string (each problem → 400 parameter_error naming ``param``)."""
    start, end = _date(params, "start_date"), _date(params, "end_date")
    if start > end:
        raise parameter_error("start_date", "start_date must not be after end_date")
    resolution = params.get("resolution", "0")
    if resolution not in RESOLUTIONS:
        raise parameter_error("resolution", f"Unknown resolution {resolution!r}; valid ids: {', '.join(RESOLUTIONS)}")
    segment = params.get("segment")
    if segment is not None and segment not in SEGMENTS:
        raise parameter_error("segment", f"Unknown segment {segment!r}; valid ids: {', '.join(SEGMENTS)}")
    aggregate = frozenset(a for a in params.get("aggregate", "").split(",") if a)
    if not aggregate <= {"total", "average"}:
        raise parameter_error("aggregate", "aggregate must be a comma list of: average, total")
    if params.get("realtime", "true") not in ("true", "false"):
        raise parameter_error("realtime", "realtime must be true or false")
    return ChartQuery(
        chart=chart,
        start=start,
        end=end,
        granularity=RESOLUTIONS[resolution],
        segment=segment,
        filters=_filters(params),
        revenue_type=_revenue_type(chart, params),
        aggregate=aggregate,
        currency=currency_param(params),
        measures=MEASURE_SETS[measure_names][chart],
    )


def _attribute(record: Transaction | Trial, name: str) -> str:
    return record.country if name == "country" else record.store if name == "store" else record.product_id


def _segment_name(segment: str, value: str) -> str:
    if segment == "country":
        return COUNTRY_NAMES.get(value, value)
    if segment == "store":
        return _STORE_NAMES.get(value, value)
    product = PRODUCTS.get(value)
    return product.display_name if product else value


def _amount(tx: Transaction, revenue_type: str | None, currency: str) -> float:
    money = money_for(tx.price_usd, tx.store, tx.country)
    usd = {"revenue_net_of_taxes": money.gross - money.tax, "proceeds": money.proceeds}.get(
        revenue_type or "", money.gross
    )
    return usd * FX_PER_USD[currency]


def _quantities(query: ChartQuery, records: list[Transaction] | list[Trial], end_at: datetime) -> dict[str, float]:
    """Every quantity a measure of ``query.chart`` can show, for one group of records."""
    if query.chart == "revenue":
        kept = [t for t in cast("list[Transaction]", records) if not t.refunded]
        return {
            "revenue": sum(_amount(t, query.revenue_type, query.currency) for t in kept),
            "transactions": float(len(kept)),
        }
    if query.chart == "refund_rate":
        txs = cast("list[Transaction]", records)
        refunded = sum(t.refunded for t in txs)
        return {
            "refund_rate": 100.0 * refunded / len(txs) if txs else 0.0,
            "refunded": float(refunded),
            "transactions": float(len(txs)),
        }
    trials = cast("list[Trial]", records)
    converted = sum(t.converted for t in trials)
    # A trial that did not convert has expired when it ended before the dataset end, else it is still pending.
    pending = sum(not t.converted and t.ends_at >= end_at for t in trials)
    return {
        "conversion_rate": 100.0 * converted / len(trials) if trials else 0.0,
        "trials": float(len(trials)),
        "conversions": float(converted),
        "expirations": float(len(trials) - converted - pending),
        "pending": float(pending),
    }


def _measure_values(query: ChartQuery, records: list[Transaction] | list[Trial], end_at: datetime) -> list[float]:
    quantities = _quantities(query, records, end_at)
    return [quantities[m.key] for m in query.measures]


def _records(
    dataset: Dataset, query: ChartQuery
) -> tuple[list[Transaction] | list[Trial], Callable[[Transaction | Trial], date]]:
    def keep(record: Transaction | Trial) -> bool:
        return all(_attribute(record, name) in values for name, values in query.filters.items())

    if query.chart == "trial_conversion_rate":
        trials = [t for t in dataset.trials if keep(t)]
        return trials, lambda r: cast("Trial", r).started_at.date()
    txs = [t for t in dataset.transactions if keep(t)]
    return txs, lambda r: cast("Transaction", r).purchased_at.date()


def _round(value: float, measure: Measure) -> float | int:
    return round(value) if measure.decimal_precision == 0 else round(value, measure.decimal_precision)


def _summaries(
    query: ChartQuery, per_bucket: list[list[float]], totals: list[float]
) -> tuple[dict[str, object], dict[str, object]]:
    measures = query.measures
    n = max(1, len(per_bucket))
    total = {m.display_name: _round(totals[k], m) for k, m in enumerate(measures)}
    average = {m.display_name: _round(sum(row[k] for row in per_bucket) / n, m) for k, m in enumerate(measures)}
    return dict(total), dict(average)


def chart_data(dataset: Dataset, query: ChartQuery) -> dict[str, object]:
    """ChartData for a validated query (spec keys plus ``measures`` and object-style points)."""
    measures = query.measures
    records, day_of = _records(dataset, query)
    periods = buckets(query.start, query.end, query.granularity)
    settle_limit = dataset.end - timedelta(days=_SETTLE_DAYS[query.chart])
    segment_ids: list[str | None] = [None]
    if query.segment is not None:
        seg = query.segment
        present = sorted({_attribute(r, seg) for r in records}, key=lambda v: _segment_name(seg, v))
        segment_ids = [*present]
    grouped: dict[tuple[int, str | None], list[Transaction | Trial]] = {}
    index = {b.start: j for j, b in enumerate(periods)}
    for record in records:
        day = day_of(record)
        if not query.start <= day <= query.end:
            continue
        bucket_start = max(query.start, _period_start(day, query.granularity))
        key = (index[bucket_start], None if query.segment is None else _attribute(record, query.segment))
        grouped.setdefault(key, []).append(record)

    values: list[dict[str, object]] = []
    summary_total: dict[str, object] = {}
    summary_average: dict[str, object] = {}
    for s_index, segment in enumerate(segment_ids):
        per_bucket: list[list[float]] = []
        for j, bucket in enumerate(periods):
            row = _measure_values(
                query, cast("list[Transaction] | list[Trial]", grouped.get((j, segment), [])), dataset.end_at
            )
            per_bucket.append(row)
            for k, measure in enumerate(measures):
                point: dict[str, object] = {
                    "cohort": _seconds(bucket.start),
                    "measure": k,
                    "value": _round(row[k], measure),
                    "incomplete": _incomplete(bucket, settle_limit),
                }
                if segment is not None:
                    point["segment"] = s_index
                values.append(point)
        in_range = [r for j in range(len(periods)) for r in grouped.get((j, segment), [])]
        totals = _measure_values(query, cast("list[Transaction] | list[Trial]", in_range), dataset.end_at)
        total, average = _summaries(query, per_bucket, totals)
        if segment is None:
            summary_total, summary_average = total, average
        else:
            summary_total[segment] = total
            summary_average[segment] = average

    category, display_name, description, link = _META[query.chart]
    return {
        "object": "chart_data",
        "category": category,
        "display_type": "line",
        "display_name": display_name,
        "description": description,
        "documentation_link": link,
        "last_computed_at": ms(dataset.end_at),
        "start_date": _seconds(query.start) * 1000,
        "end_date": _seconds(query.end) * 1000,
        "yaxis_currency": query.currency,
        "yaxis": _YAXIS[query.chart],
        "filtering_allowed": True,
        "segmenting_allowed": True,
        "resolution": query.granularity,
        "values": [] if query.aggregate else values,
        "summary": {"total": summary_total, "average": summary_average},
        "segments": [
            {"id": s, "display_name": _segment_name(query.segment or "", s)} for s in segment_ids if s is not None
        ],
        "segments_limit": None,
        "measures": [
            {
                "display_name": m.display_name,
                "unit": m.unit,
                "chartable": True,
                "decimal_precision": m.decimal_precision,
            }
            for m in measures
        ],
        "user_selectors": {"revenue_type": query.revenue_type} if query.revenue_type else {},
        "unsupported_params": {"filters": [], "segment": None},
    }


def _period_start(day: date, granularity: Granularity) -> date:
    if granularity == "day":
        return day
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _incomplete(bucket: Bucket, settle_limit: date) -> bool:
    return bucket.period_end > settle_limit


def _seconds(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def chart_options(dataset: Dataset, chart: str) -> dict[str, object]:
    """ChartOptions: resolutions, segments, filters (with the dataset's values) and user selectors."""
    values: dict[str, set[str]] = {name: set() for name in SEGMENTS}
    records: Iterable[Transaction | Trial] = (*dataset.transactions, *dataset.trials)
    for record in records:
        for name in SEGMENTS:
            values[name].add(_attribute(record, name))
    selectors: dict[str, object] = {}
    if chart == "revenue":
        selectors["revenue_type"] = {
            "default": "revenue",
            "display_name": "Revenue type",
            "options": [{"id": k, "display_name": v} for k, v in REVENUE_TYPES.items()],
        }
    return {
        "object": "chart_options",
        "resolutions": [{"id": k, "display_name": v} for k, v in RESOLUTIONS.items()],
        "segments": [
            {"id": k, "display_name": v, "group_display_name": _SEGMENT_GROUPS[k]} for k, v in SEGMENTS.items()
        ],
        "filters": [
            {
                "id": k,
                "display_name": v,
                "group_display_name": _SEGMENT_GROUPS[k],
                "options": [{"id": o, "display_name": _segment_name(k, o)} for o in sorted(values[k])],
            }
            for k, v in SEGMENTS.items()
        ],
        "user_selectors": selectors,
    }


def overview(dataset: Dataset, params: QueryParams, now: datetime | None = None) -> dict[str, object]:
    """Overview metrics as of the dataset end (docs/upstream-apis.md#revenuecat-overview-metrics).

    active_trials / active_subscriptions: status trialing / active or in_grace_period (cancelled but
    unexpired included); mrr: those subscriptions' monthly-normalised price (annual / 12); revenue:
    gross price of non-refunded transactions purchased in the trailing 28 days (end-27 .. end);
    new_customers / active_users: RevenueCat customers first / last seen in those 28 days.
    """
    rate = FX_PER_USD[currency_param(params)]
    window_start = dataset.end - timedelta(days=27)
    paying = [s for s in dataset.subscriptions if s.status in ("active", "in_grace_period")]
    mrr = sum(PRODUCTS[s.product_id].price_usd / PRODUCTS[s.product_id].period_months for s in paying)
    revenue = sum(t.price_usd for t in dataset.transactions if not t.refunded and t.purchased_at.date() >= window_start)
    # The figures were last computed at the newest data point, and never after `now`: the dataset runs to the end
    # of its last day, so on the day itself its newest points lie ahead of the clock (RevenueCat's never do).
    updated = max((c.last_seen_at for c in dataset.customers), default=dataset.end_at)
    if now is not None:
        updated = min(updated, now)
    metrics: list[tuple[str, str, str, str, str, float | int]] = [
        ("active_trials", "Active Trials", "Trials that have not ended yet", "#", "P0D", sum(s.status == "trialing" for s in dataset.subscriptions)),
        ("active_subscriptions", "Active Subscriptions", "Paid subscriptions giving access", "#", "P0D", len(paying)),
        ("mrr", "MRR", "Monthly recurring revenue", "$", "P0D", round(mrr * rate, 2)),
        ("revenue", "Revenue", "Revenue in the last 28 days", "$", "P28D", round(revenue * rate, 2)),
        ("new_customers", "New Customers", "Customers first seen in the last 28 days", "#", "P28D", sum(c.first_seen_at.date() >= window_start for c in dataset.customers)),
        ("active_users", "Active Users", "Customers seen in the last 28 days", "#", "P28D", sum(c.last_seen_at.date() >= window_start for c in dataset.customers)),
    ]  # fmt: skip
    return {
        "object": "overview_metrics",
        "metrics": [
            {
                "object": "overview_metric",
                "id": metric_id,
                "name": name,
                "description": description,
                "unit": unit,
                "period": period,
                "value": value,
                "last_updated_at": ms(updated),
                "last_updated_at_iso8601": updated.isoformat(sep=" ", timespec="microseconds"),
            }
            for metric_id, name, description, unit, period, value in metrics
        ],
    }
