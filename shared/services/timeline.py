"""One user's journey as timeline entries: Amplitude events and RevenueCat subscriptions and purchases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.errors import UpstreamError
from shared.models import kpi as m
from shared.models.amplitude import ActivityEvent
from shared.models.revenuecat import Purchase, Subscription, SubscriptionTransaction


def from_ms(value: int | None) -> datetime | None:
    return None if value is None else from_ms_required(value)


def from_ms_required(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def parse_amplitude_time(value: str) -> datetime:
    """An Amplitude event time (`YYYY-MM-DD HH:MM:SS[.ffffff]`, UTC; ISO 8601 tolerated)."""
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


def _scalar_properties(properties: dict[str, Any]) -> dict[str, str | int | float | bool | None]:
    kept: dict[str, str | int | float | bool | None] = {}
    for key, value in list(properties.items())[:20]:
        if isinstance(value, str):
            kept[str(key)[:64]] = value[:256]
        elif value is None or isinstance(value, bool | int | float):
            kept[str(key)[:64]] = value
    return kept


def event_entry(event: ActivityEvent) -> m.TimelineEntry:
    """An Amplitude event (one with a time: the service leaves the others out, with a warning)."""
    assert event.event_time is not None
    return m.TimelineEntry(
        at=parse_amplitude_time(event.event_time),
        source="amplitude",
        kind="event",
        title=event.event_type,
        session_id=event.session_id,
        properties=_scalar_properties(event.event_properties),
    )


def subscription_entries(
    subscription: Subscription, transactions: list[SubscriptionTransaction]
) -> list[m.TimelineEntry]:
    common: dict[str, Any] = {
        "source": "revenuecat",
        "product_id": subscription.product_id,
        "store": subscription.store,
    }
    trial = subscription.status == "trialing"
    entries: list[m.TimelineEntry] = []
    if subscription.starts_at is not None:
        entries.append(
            m.TimelineEntry(
                at=from_ms_required(subscription.starts_at),
                kind="trial_started" if trial else "subscription_started",
                title="Trial started" if trial else "Subscription started",
                **common,
            )
        )
    dated = sorted(t.purchased_at for t in transactions if t.purchased_at is not None)
    for purchased_at in dated[1:]:
        entries.append(m.TimelineEntry(at=from_ms_required(purchased_at), kind="renewal", title="Renewed", **common))
    period_end = from_ms(subscription.current_period_ends_at)
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
    ends_at = from_ms(subscription.ends_at)
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


def purchase_entries(purchase: Purchase) -> list[m.TimelineEntry]:
    """A purchase (and its refund); nothing for a purchase without a time (the service warns about it)."""
    if purchase.purchased_at is None:
        return []
    amount = purchase.revenue_in_usd.gross if purchase.revenue_in_usd else None
    at = from_ms_required(purchase.purchased_at)
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


def subscription_summary(subscription: Subscription) -> m.SubscriptionSummary:
    return m.SubscriptionSummary(
        id=subscription.id,
        product_id=subscription.product_id,
        status=subscription.status,
        store=subscription.store,
        starts_at=from_ms(subscription.starts_at),
        current_period_ends_at=from_ms(subscription.current_period_ends_at),
        auto_renewal_status=subscription.auto_renewal_status,
        gives_access=subscription.gives_access,
        total_revenue_usd=subscription.total_revenue_in_usd.gross if subscription.total_revenue_in_usd else None,
    )
