"""One user's journey, source by source: Amplitude's profile and events, RevenueCat's customer, subscriptions (with
their renewals, asked only where RevenueCat can list them) and purchases, each with its notes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from shared.clients.amplitude import AmplitudeClient
from shared.clients.revenuecat import RevenueCatClient
from shared.errors import UpstreamAuthError, UpstreamError
from shared.models import definitions as d
from shared.models import kpi as m
from shared.models.amplitude import UserActivityResponse, UserMatch
from shared.models.revenuecat import Customer, Purchase, Subscription, SubscriptionTransaction
from shared.services import timeline
from shared.services.fanout import bounded_map, gather2
from shared.services.figures import Notes, fetch

CUSTOMER_CONCURRENCY = 8

TRANSACTION_STORES = frozenset({"app_store", "play_store"})
"""Stores whose subscriptions RevenueCat lists transactions of (its operation serves these two only)."""
KNOWN_SUBSCRIPTION_STATUSES = frozenset(
    {"trialing", "active", "expired", "in_grace_period", "in_billing_retry", "paused", "unknown", "incomplete"}
)
Transactions = list[SubscriptionTransaction] | str
"""A subscription's transactions, or why they are unknown."""

ProfileT = TypeVar("ProfileT")


@dataclass(frozen=True)
class Branch(Generic[ProfileT]):
    """One source's part of a journey: its profile (None when it does not know the user), timeline entries, notes."""

    profile: ProfileT | None
    entries: list[m.TimelineEntry]
    notes: Notes
    truncated: bool = False


async def amplitude_journey(
    client: AmplitudeClient, user_id: str, *, limit: int, clock: Callable[[], datetime]
) -> Branch[m.AmplitudeProfile]:
    """Amplitude's part of a journey: the exact user id match, its profile and events (newest first, up to `limit`)."""
    notes = Notes()

    async def read() -> tuple[UserMatch | None, tuple[UserActivityResponse, bool] | None]:
        match = await client.find_user(user_id)
        if match is None:
            return None, None
        return match, await client.user_activity(match.amplitude_id, limit=limit)

    fetched = await fetch(read, clock)
    match, activity = fetched.value
    notes.cite(
        ["amplitude", "timeline[source=amplitude]"],
        "amplitude",
        fetched,
        period=(None, None),
        basis="all_time",
        definition=d.JOURNEY_AMPLITUDE,
    )
    if match is None or activity is None:
        return Branch(None, [], notes)
    response, truncated = activity
    data = response.user_data
    profile = m.AmplitudeProfile(
        amplitude_id=data.canonical_amplitude_id or match.amplitude_id,
        first_used=data.first_used,
        last_used=data.last_used,
        num_events=data.num_events,
        num_sessions=data.num_sessions,
        country=data.country,
        platform=data.platform,
    )
    timed = [event for event in response.events if event.event_time is not None]
    if len(timed) < len(response.events):
        notes.missing(
            "timeline[source=amplitude]",
            "amplitude",
            f"{len(response.events) - len(timed)} amplitude events came without a time and are left out.",
        )
    return Branch(profile, [timeline.event_entry(event) for event in timed], notes, truncated)


async def revenuecat_journey(
    client: RevenueCatClient, user_id: str, *, clock: Callable[[], datetime]
) -> Branch[m.CustomerProfile]:
    """RevenueCat's part of a journey: the customer (v2, nothing is created), subscriptions with their renewals,
    purchases."""
    notes = Notes()

    async def read() -> tuple[Customer | None, list[Subscription], list[Purchase], list[Transactions]]:
        customer = await client.customer(user_id)
        if customer is None:
            return None, [], [], []
        subscriptions, purchases = await gather2(
            lambda: client.subscriptions(user_id), lambda: client.purchases(user_id)
        )
        transactions = await bounded_map(
            [lambda s=sub: transactions_of(client, s) for sub in subscriptions], CUSTOMER_CONCURRENCY
        )
        return customer, subscriptions, purchases, transactions

    fetched = await fetch(read, clock)
    customer, subscriptions, purchases, transactions = fetched.value
    notes.cite(
        ["revenuecat", "timeline[source=revenuecat]"],
        "revenuecat",
        fetched,
        period=(None, None),
        basis="all_time",
        definition=d.JOURNEY_REVENUECAT,
    )
    if customer is None:
        return Branch(None, [], notes)
    entries: list[m.TimelineEntry] = []
    for subscription, found in zip(subscriptions, transactions, strict=True):
        figure = f"revenuecat.subscriptions[{subscription.id}]"
        if isinstance(found, str):
            notes.missing(f"{figure}.renewals", "revenuecat", found)
        if subscription.status not in KNOWN_SUBSCRIPTION_STATUSES:
            notes.missing(
                f"{figure}.status",
                "revenuecat",
                f"RevenueCat reports a subscription status this service does not know ({subscription.status[:40]!r}).",
            )
        if subscription.starts_at is None:
            notes.missing(f"{figure}.starts_at", "revenuecat", "RevenueCat gave no start time for this subscription.")
        entries += timeline.subscription_entries(subscription, found if isinstance(found, list) else [])
    undated = [purchase for purchase in purchases if purchase.purchased_at is None]
    for purchase in undated:
        notes.missing(
            f"revenuecat.purchases[{purchase.id}]", "revenuecat", "RevenueCat gave no purchase time: left out."
        )
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
    return Branch(profile, entries, notes)


async def transactions_of(client: RevenueCatClient, subscription: Subscription) -> Transactions:
    """A store subscription's transactions (its renewals); for any other subscription, or when RevenueCat
    cannot list them, why they are unknown (a journey keeps everything else)."""
    if subscription.store not in TRANSACTION_STORES:
        return (
            f"RevenueCat lists transactions of App Store and Play Store subscriptions only (this one is "
            f"{(subscription.store or 'of an unknown store')[:40]}): its renewals are not shown."
        )
    try:
        return await client.subscription_transactions(subscription.id)
    except UpstreamAuthError:
        raise
    except UpstreamError as exc:
        return f"RevenueCat did not list this subscription's transactions ({exc.detail}): its renewals are not shown."
