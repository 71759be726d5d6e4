"""The public contract of both faces: the inputs and outputs of the five KPI operations.

REST returns these as JSON bodies and MCP as `structuredContent`, so the two faces cannot drift apart.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Source = Literal["amplitude", "revenuecat"]
DataSource = Literal["live", "sandbox"]
Resolution = Literal["day", "week", "month"]
FunnelMode = Literal["ordered", "unordered", "sequential"]

USER_ID_MAX_LENGTH = 256
USER_ID_PATTERN = r"^[A-Za-z0-9_.:@$+\-=|/#~!*]+$"
EVENT_TYPE_MAX_LENGTH = 128
MAX_FUNNEL_STEPS = 10
MAX_REFUND_USER_IDS = 100

UserId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=USER_ID_MAX_LENGTH, pattern=USER_ID_PATTERN),
    Field(
        description="The app user id, identical in Amplitude (user_id) and RevenueCat (customer id), "
        "e.g. `user_00042` or `$RCAnonymousID:0123abcd`. Letters, digits and `_.:@$+-=|/#~!*`.",
        examples=["user_00042"],
    ),
]
EventType = Annotated[
    str,
    StringConstraints(min_length=1, max_length=EVENT_TYPE_MAX_LENGTH, strip_whitespace=True),
    Field(description="An Amplitude event type, exactly as tracked.", examples=["Sign Up"]),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------- shared pieces


class SourceProblem(_Model):
    """Why a source did not contribute: the same fields as the REST problem details."""

    type: str
    title: str
    status: int
    detail: str
    retry_after: int | None = None


class SourceStatus(_Model):
    """Whether one upstream contributed to a result."""

    source: Source
    status: Literal["ok", "error"]
    error: SourceProblem | None = None


class ResultMeta(_Model):
    """Provenance common to every result."""

    data_source: DataSource = Field(description="`sandbox` when served from the bundled synthetic dataset.")
    generated_at: datetime = Field(description="When the service computed this result (UTC).")
    partial: bool = Field(default=False, description="True when a source failed and its part of the result is missing.")
    sources: list[SourceStatus] = Field(default_factory=list[SourceStatus])


# ---------------------------------------------------------------------------------------------- overview


class OverviewQuery(_Model):
    as_of: date | None = Field(default=None, description="Day the overview is for (YYYY-MM-DD, UTC); default today.")


class AmplitudeOverview(_Model):
    dau: int = Field(description="Distinct active users on `dau_date`, the last complete day (Amplitude).")
    dau_date: date
    mau: int = Field(description="Distinct active users from `month_start` to `as_of` (month to date).")
    new_users: int = Field(description="Users first seen from `month_start` to `as_of`.")
    month_start: date
    month_partial: bool = Field(description="True when the month is not over.")


class RevenueCatOverview(_Model):
    currency: str
    mrr: float | None = Field(description="Monthly recurring revenue now.")
    revenue_28d: float | None = Field(description="Gross revenue of the last 28 days (before store fees and taxes).")
    active_subscriptions: int | None = Field(description="Including cancelled-but-unexpired and grace period.")
    active_trials: int | None
    new_customers_28d: int | None
    active_users_28d: int | None = Field(
        description="App user ids seen by the RevenueCat SDK in 28 days; not comparable with Amplitude MAU."
    )
    last_updated_at: datetime | None = Field(description="When RevenueCat last computed these (may lag 1-2 h).")


class OverviewResult(ResultMeta):
    as_of: date
    amplitude: AmplitudeOverview | None
    revenuecat: RevenueCatOverview | None


# ---------------------------------------------------------------------------------------------- MAU


class MauQuery(_Model):
    start_month: date | None = Field(
        default=None, description="First month, as any day in it (YYYY-MM-DD); default five months before `end_month`."
    )
    end_month: date | None = Field(
        default=None, description="Last month, as any day in it (YYYY-MM-DD); default the current month."
    )


class MauMonth(_Model):
    month: str = Field(description="`YYYY-MM`.", examples=["2026-10"])
    start: date
    end: date = Field(description="Last day counted (today for the current month).")
    active_users: int
    change: int | None = Field(description="Difference from the previous month; null for the first month.")
    change_pct: float | None = Field(description="Percent change from the previous month; null when undefined.")
    partial: bool = Field(description="True for a month not over yet.")


class MauResult(ResultMeta):
    months: list[MauMonth]


# ---------------------------------------------------------------------------------------------- conversion


class ConversionQuery(_Model):
    steps: list[EventType] | None = Field(
        default=None,
        description="Funnel steps in order (2-10 event types); default the configured KPI_CONVERSION_STEPS.",
        max_length=MAX_FUNNEL_STEPS,
    )
    start_date: date | None = Field(
        default=None, description="First day (YYYY-MM-DD, inclusive); default 29 days before end_date."
    )
    end_date: date | None = Field(default=None, description="Last day (YYYY-MM-DD, inclusive); default today.")
    conversion_window_days: int = Field(default=30, ge=1, le=90, description="Days a user has to finish the funnel.")
    mode: FunnelMode = Field(default="ordered", description="Amplitude funnel mode.")


class FunnelStep(_Model):
    event_type: str
    users: int = Field(description="Users who reached this step.")
    step_conversion: float = Field(description="Share of the previous step's users who reached this step (0-1).")
    cumulative_conversion: float = Field(description="Share of first-step users who reached this step (0-1).")
    median_time_to_convert_seconds: float | None = Field(description="Median time from the previous step.")
    average_time_to_convert_seconds: float | None


class TrialConversion(_Model):
    """RevenueCat's `trial_conversion_rate` chart over the same range."""

    conversion_rate_pct: float | None = Field(description="Conversions / trials over complete periods, in percent.")
    trials: int | None
    conversions: int | None
    incomplete_periods: int = Field(description="Recent periods whose trials may still convert (excluded above).")


class ConversionResult(ResultMeta):
    start_date: date
    end_date: date
    conversion_window_days: int
    mode: FunnelMode
    steps: list[FunnelStep]
    overall_conversion: float = Field(description="Share of first-step users who reached the last step (0-1).")
    trial_conversion: TrialConversion | None = Field(description="Present when RevenueCat is configured.")


# ---------------------------------------------------------------------------------------------- user journey


class UserJourneyQuery(_Model):
    user_id: UserId


TimelineKind = Literal[
    "event",
    "trial_started",
    "subscription_started",
    "renewal",
    "cancellation",
    "billing_issue",
    "expiration",
    "purchase",
    "refund",
]


class TimelineEntry(_Model):
    at: datetime
    source: Source
    kind: TimelineKind
    title: str
    session_id: int | None = None
    product_id: str | None = None
    amount_usd: float | None = None
    store: str | None = None
    properties: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class AmplitudeProfile(_Model):
    amplitude_id: int
    first_used: str | None
    last_used: str | None
    num_events: int | None
    num_sessions: int | None
    country: str | None
    platform: str | None


class SubscriptionSummary(_Model):
    id: str
    product_id: str | None
    status: str
    store: str | None
    starts_at: datetime
    current_period_ends_at: datetime | None
    auto_renewal_status: str | None
    gives_access: bool
    total_revenue_usd: float | None


class CustomerProfile(_Model):
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    country: str | None
    subscriptions: list[SubscriptionSummary]
    total_revenue_usd: float


class JourneyResult(ResultMeta):
    user_id: str
    amplitude: AmplitudeProfile | None = Field(description="Null when Amplitude does not know the user.")
    revenuecat: CustomerProfile | None = Field(description="Null when RevenueCat does not know the user.")
    timeline: list[TimelineEntry] = Field(description="Oldest first.")
    events_truncated: bool = Field(description="True when older Amplitude events were left out (event limit).")


# ---------------------------------------------------------------------------------------------- refund analysis


class RefundAnalysisQuery(_Model):
    start_date: date = Field(description="First day (YYYY-MM-DD, inclusive).")
    end_date: date = Field(description="Last day (YYYY-MM-DD, inclusive); not in the future.")
    resolution: Resolution = Field(default="month", description="Period size.")
    segment: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[a-z0-9_]+$",
        description="Optional RevenueCat chart segment id, e.g. `store` or `country`.",
    )
    user_ids: list[UserId] | None = Field(
        default=None, max_length=MAX_REFUND_USER_IDS, description="Up to 100 app user ids to detail refunds for."
    )


class RefundPeriod(_Model):
    period_start: date
    segment: str | None = Field(description="Segment value when segmented, else null.")
    refund_rate_pct: float | None = Field(description="Refunded / paid transactions of this period, in percent.")
    refunded_transactions: int | None
    transactions: int | None
    revenue: float | None = Field(description="Revenue net of refunds of this period's transactions.")
    incomplete: bool = Field(description="Recent period whose figures may still change.")


class RefundSummary(_Model):
    transactions: int
    refunded_transactions: int
    refund_rate_pct: float | None = Field(description="Over complete periods: refunded / transactions, in percent.")
    average_period_refund_rate_pct: float | None
    revenue: float
    incomplete_periods: int


class RefundedItem(_Model):
    kind: Literal["purchase"]
    id: str
    product_id: str | None
    purchased_at: datetime
    amount_usd: float | None
    store: str | None


class CustomerRefunds(_Model):
    user_id: str
    found: bool | None = Field(
        description="False when RevenueCat does not know this customer; null when the lookup failed (see error)."
    )
    refunded: list[RefundedItem]
    refunded_amount_usd: float
    purchases: int
    subscriptions: int
    error: SourceProblem | None = None


class RefundAnalysisResult(ResultMeta):
    start_date: date
    end_date: date
    resolution: Resolution
    segment: str | None
    currency: str
    periods: list[RefundPeriod]
    summary: RefundSummary
    attribution_note: str
    customers: list[CustomerRefunds] | None
