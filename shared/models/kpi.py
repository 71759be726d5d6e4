"""The public contract of both faces: the inputs and outputs of the five KPI operations.

REST returns these as JSON bodies and MCP as `structuredContent`, so the two faces cannot drift apart.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints

from shared.errors import Source  # the one Source type, used by the models' users as `m.Source` too
from shared.models import definitions as d

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


PeriodBasis = Literal[
    "utc_day",
    "last_complete_day",
    "month_to_date",
    "calendar_month",
    "date_range",
    "trailing_28_days",
    "snapshot",
    "original_transaction_period",
    "trial_start_period",
    "all_time",
]


class FigureWarning(_Model):
    """A figure this result could not give (null), had to derive, or that looks wrong, and why."""

    figure: str = Field(
        description="The figure's field path in this result, e.g. `revenuecat.mrr` or `periods[].transactions`."
    )
    source: Source
    reason: str = Field(description="Why, in plain words (which part of the upstream answer was missing or odd).")


class Provenance(_Model):
    """Where a group of figures came from: enough to cite them, or reproduce them in the vendor's own tools."""

    figures: list[str] = Field(description="Field paths of the figures this entry explains.")
    source: Source
    requests: list[str] = Field(
        description="The upstream requests that produced them: method, path and non-secret parameters."
    )
    period_start: date | None = Field(description="First day covered (UTC), when the figures cover a period.")
    period_end: date | None = Field(description="Last day covered (UTC, inclusive).")
    period_basis: PeriodBasis = Field(
        description="How the period is counted: one UTC day, the last complete day, month to date, calendar months, "
        "a date range, the trailing 28 days, a snapshot now, the period of the original transaction or of the "
        "trial start, or the user's whole history."
    )
    definition: str = Field(description="What the figures mean.")
    fetched_at: datetime = Field(
        description="When the service read the upstream answer (UTC); a figure's age when served is now minus this."
    )
    upstream_updated_at: datetime | None = Field(
        default=None, description="When the vendor says it last computed these figures, when it says so."
    )


class ResultMeta(_Model):
    """Provenance common to every result."""

    # A result model's validator is built by its first use (a REST app's start-up, or the first tool call over
    # stdio, which starts from stored schemas: server/schemas.py), not by importing the registry.
    model_config = ConfigDict(defer_build=True)

    data_source: DataSource = Field(description="`sandbox` when served from the bundled synthetic dataset.")
    generated_at: datetime = Field(description="When the service computed this result (UTC).")
    partial: bool = Field(default=False, description="True when a source failed and its part of the result is missing.")
    sources: list[SourceStatus] = Field(default_factory=list[SourceStatus])
    warnings: list[FigureWarning] = Field(
        default_factory=list[FigureWarning],
        description="One entry per figure that is null (or derived) because part of an upstream answer was missing, "
        "renamed or unusable, or that is likely a mistake in the question (a funnel step whose event was never "
        "tracked in the range); `partial` stays about whole sources.",
    )
    provenance: list[Provenance] = Field(
        default_factory=list[Provenance], description="Where each group of figures came from and what it means."
    )
    _short_lived: bool = PrivateAttr(default=False)

    @property
    def short_lived(self) -> bool:
        """Whether this answer should be cached only briefly although no source failed (an optional check that
        could have added a warning did not run); not part of the wire format."""
        return self._short_lived

    def keep_briefly(self, brief: bool = True) -> None:
        """Mark this answer as `short_lived` (see there)."""
        self._short_lived = brief


# ---------------------------------------------------------------------------------------------- overview


class OverviewQuery(_Model):
    as_of: date | None = Field(default=None, description="Day the overview is for (YYYY-MM-DD, UTC); default today.")


class AmplitudeOverview(_Model):
    dau: int | None = Field(description=d.DAU + " On `dau_date`, the last complete day.")
    dau_date: date
    mau: int | None = Field(description=d.MAU_TO_DATE)
    new_users: int | None = Field(description=d.NEW_USERS + " From `month_start` to `as_of`.")
    month_start: date
    month_partial: bool = Field(
        description="True when the figures do not cover the whole month: counted to a day before its end, or to "
        "today, which is not over."
    )


class RevenueCatOverview(_Model):
    currency: str
    mrr: float | None = Field(description=d.MRR)
    revenue_28d: float | None = Field(description=d.REVENUE_28D)
    active_subscriptions: int | None = Field(description=d.ACTIVE_SUBSCRIPTIONS)
    active_trials: int | None = Field(description=d.ACTIVE_TRIALS)
    new_customers_28d: int | None = Field(description=d.NEW_CUSTOMERS_28D)
    active_users_28d: int | None = Field(description=d.ACTIVE_USERS_28D)
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
    active_users: int | None = Field(description=d.MAU_MONTH)
    change: int | None = Field(description="Difference from the previous month; null for the first month.")
    change_pct: float | None = Field(description=d.MAU_CHANGE_PCT)
    partial: bool = Field(description="True for a month not over yet (the current month, its last day included).")


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
    step_conversion_pct: float = Field(description=d.STEP_CONVERSION)
    cumulative_conversion_pct: float = Field(description=d.CUMULATIVE_CONVERSION)
    median_time_to_convert_seconds: float | None = Field(description="Median time from the previous step.")
    average_time_to_convert_seconds: float | None


class TrialConversion(_Model):
    """RevenueCat's `trial_conversion_rate` chart over the same range."""

    conversion_rate_pct: float | None = Field(description=d.TRIAL_CONVERSION_RATE)
    trials: int | None = Field(description=d.TRIAL_CONVERSION)
    conversions: int | None
    incomplete_periods: int = Field(description="Recent periods whose trials may still convert (excluded above).")


class ConversionResult(ResultMeta):
    start_date: date
    end_date: date
    conversion_window_days: int
    mode: FunnelMode
    steps: list[FunnelStep]
    overall_conversion_pct: float = Field(description=d.OVERALL_CONVERSION)
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
    starts_at: datetime | None
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
    refund_rate_pct: float | None = Field(description=d.REFUND_RATE)
    refunded_transactions: int | None
    transactions: int | None
    revenue: float | None = Field(description=d.PERIOD_REVENUE)
    incomplete: bool = Field(description="Recent or current period whose figures may still change.")


class RefundSummary(_Model):
    transactions: int | None = Field(description="Paid transactions of the complete periods.")
    refunded_transactions: int | None
    refund_rate_pct: float | None = Field(description=d.SUMMARY_REFUND_RATE)
    average_period_refund_rate_pct: float | None = Field(description=d.AVERAGE_PERIOD_REFUND_RATE)
    revenue: float | None = Field(description="Revenue net of refunds over all periods, in USD.")
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
