"""Wire models for the RevenueCat REST API v2 (docs/upstream-apis.md), validated at the client edge.

Timestamps are ms since epoch. Unknown extra fields are ignored; enums the reference lists are kept as plain
strings so that a value RevenueCat adds later does not break us.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    # Built on first use, not at import: `loop-kpi mcp` answers `initialize` before any upstream call.
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


class OverviewMetric(_Wire):
    id: str
    name: str | None = None
    unit: str | None = None
    period: str | None = None
    value: float | None = None
    last_updated_at: int | None = None


class OverviewMetrics(_Wire):
    metrics: list[OverviewMetric]
    currency: str | None = None


class ChartResolution(_Wire):
    id: str
    display_name: str


class ChartOptions(_Wire):
    resolutions: list[ChartResolution]
    segments: list[dict[str, Any]] = Field(default_factory=list[dict[str, Any]])


class ChartMeasure(_Wire):
    display_name: str = ""
    unit: str | None = None


class ChartPoint(_Wire):
    """An object-style point of a v3 realtime chart (`cohort` is the period start, unix seconds)."""

    cohort: int
    measure: int = 0
    value: float | None = None
    incomplete: bool = False
    segment: int | None = None


class ChartSegment(_Wire):
    id: str | None = None
    display_name: str | None = None
    is_total: bool = False


class ChartData(_Wire):
    """A chart's data. `values` is read by `shared.services.charts`: the vendor documents it as "array of arrays of
    numbers, or objects, varies by chart", so its items are validated there, one by one."""

    category: str | None = None
    display_name: str = ""
    resolution: str | None = None
    values: list[Any]  # required: a chart answer without it is no chart (its measures alone are not figures)
    summary: dict[str, Any] | None = None
    measures: list[ChartMeasure] = Field(default_factory=list[ChartMeasure])
    segments: list[ChartSegment] | None = None
    yaxis_currency: str | None = None
    last_computed_at: int | None = None


class MonetaryAmount(_Wire):
    currency: str = "USD"
    gross: float = 0.0
    commission: float | None = None
    tax: float | None = None
    proceeds: float | None = None


class Customer(_Wire):
    id: str
    first_seen_at: int | None = None
    last_seen_at: int | None = None
    last_seen_country: str | None = None
    last_seen_platform: str | None = None


class Subscription(_Wire):
    id: str
    product_id: str | None = None
    starts_at: int | None = None
    current_period_starts_at: int | None = None
    current_period_ends_at: int | None = None
    ends_at: int | None = None
    gives_access: bool = False
    auto_renewal_status: str | None = None
    status: str = "unknown"
    total_revenue_in_usd: MonetaryAmount | None = None
    store: str | None = None
    environment: str | None = None
    country: str | None = None


class Purchase(_Wire):
    id: str
    product_id: str | None = None
    purchased_at: int | None = None
    revenue_in_usd: MonetaryAmount | None = None
    quantity: int = 1
    status: str = "unknown"
    store: str | None = None
    environment: str | None = None
    country: str | None = None


class SubscriptionTransaction(_Wire):
    id: str
    purchased_at: int | None = None
    product_store_identifier: str | None = None
    expiration_date: int | None = None


class ListPage(_Wire):
    """The v2 list envelope: `items` plus a `next_page` path (null on the last page)."""

    items: list[dict[str, Any]]
    next_page: str | None = None


class ErrorBody(_Wire):
    type: str | None = None
    message: str | None = None
    retryable: bool | None = None
    backoff_ms: int | None = None
