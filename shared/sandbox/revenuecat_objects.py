"""RevenueCat object shapes: v2 customer, subscription, purchase, transaction; v1 subscriber (docs/upstream-apis.md)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import cast
from urllib.parse import quote

from .dataset import (
    COMMISSION_SHARE,
    ENTITLEMENT_ID,
    ENTITLEMENT_LOOKUP_KEY,
    PRODUCTS,
    Customer,
    Dataset,
    Purchase,
    Store,
    Subscription,
    Transaction,
    money_for,
)
from .revenuecat_common import iso, ms

_MANAGEMENT_URLS = {
    "app_store": "https://apps.apple.com/account/subscriptions",
    "play_store": "https://play.google.com/store/account/subscriptions",
}
_PLATFORM_VERSIONS = {"iOS": "17.4", "Android": "14", "Web": None}


def _list(items: list[dict[str, object]], url: str) -> dict[str, object]:
    return {"object": "list", "items": items, "next_page": None, "url": url}


def _money(price_usd: float, store: Store, country: str) -> dict[str, object]:
    m = money_for(price_usd, store, country)
    return {"currency": "USD", "gross": m.gross, "commission": m.commission, "tax": m.tax, "proceeds": m.proceeds}


def _gives_access(sub: Subscription) -> bool:
    return sub.status in ("trialing", "active", "in_grace_period")


def _entitlement(project_id: str, dataset: Dataset) -> dict[str, object]:
    return {
        "object": "entitlement",
        "id": ENTITLEMENT_ID,
        "project_id": project_id,
        "lookup_key": ENTITLEMENT_LOOKUP_KEY,
        "display_name": "Pro",
        "created_at": ms(datetime(dataset.start.year, dataset.start.month, 1, tzinfo=UTC)),
    }


def customer_json(
    project_id: str,
    customer_id: str,
    customer: Customer | None,
    created_at: datetime | None,
    dataset: Dataset,
    expand: bool,
) -> dict[str, object]:
    """A v2 Customer for a dataset customer or one created through v1."""
    url = f"/v2/projects/{project_id}/customers/{quote(customer_id, safe='')}"
    active = [s for s in dataset.subscriptions_for(customer_id) if _gives_access(s)] if customer else []
    entitlements: list[dict[str, object]] = []
    if active:
        expires = max(s.current_period_ends_at for s in active)
        entitlements.append(
            {"object": "customer.active_entitlement", "entitlement_id": ENTITLEMENT_ID, "expires_at": ms(expires)}
        )
    body: dict[str, object] = {
        "object": "customer",
        "id": customer_id,
        "project_id": project_id,
        "first_seen_at": ms(customer.first_seen_at if customer else created_at),
        "last_seen_at": ms(customer.last_seen_at if customer else created_at),
        "last_seen_app_version": customer.app_version if customer else None,
        "last_seen_country": customer.country if customer else None,
        "last_seen_platform": customer.platform if customer else None,
        "last_seen_platform_version": _PLATFORM_VERSIONS[customer.platform] if customer else None,
        "active_entitlements": _list(entitlements, url + "/active_entitlements"),
        "experiment": None,
    }
    if expand:
        body["attributes"] = _list([], url + "/attributes")
    return body


def _auto_renewal(sub: Subscription) -> str:
    return "will_renew" if sub.auto_renew else "will_not_renew"


def subscription_json(
    project_id: str, sub: Subscription, dataset: Dataset, store: str | None = None
) -> dict[str, object]:
    """A v2 Subscription; ``store`` overrides the dataset's store (a sandbox variant)."""
    served_store = cast("Store", store or sub.store)
    txs = [t for t in dataset.transactions_for_subscription(sub.subscription_id) if not t.refunded]
    total = sum(t.price_usd for t in txs)
    money = _money(total, served_store if served_store in COMMISSION_SHARE else sub.store, sub.country)
    return {
        "object": "subscription",
        "id": sub.subscription_id,
        "customer_id": sub.user_id,
        "original_customer_id": sub.user_id,
        "product_id": sub.product_id,
        "starts_at": ms(sub.starts_at),
        "current_period_starts_at": ms(sub.current_period_starts_at),
        "current_period_ends_at": ms(sub.current_period_ends_at),
        "ends_at": ms(sub.ends_at),
        "gives_access": _gives_access(sub),
        "pending_payment": False,
        "auto_renewal_status": _auto_renewal(sub),
        "status": sub.status,
        "total_revenue_in_usd": money,
        "presented_offering_id": "default",
        "entitlements": _list(
            [_entitlement(project_id, dataset)],
            f"/v2/projects/{project_id}/subscriptions/{sub.subscription_id}/entitlements",
        ),
        "environment": "production",
        "store": served_store,
        "store_subscription_identifier": sub.store_subscription_identifier,
        "ownership": "purchased",
        "management_url": _MANAGEMENT_URLS.get(served_store),
        "country": sub.country,
    }


def purchase_json(project_id: str, purchase: Purchase) -> dict[str, object]:
    return {
        "object": "purchase",
        "id": purchase.purchase_id,
        "customer_id": purchase.user_id,
        "original_customer_id": purchase.user_id,
        "product_id": purchase.product_id,
        "purchased_at": ms(purchase.purchased_at),
        "revenue_in_usd": _money(purchase.price_usd, purchase.store, purchase.country),
        "quantity": 1,
        "status": "refunded" if purchase.refunded else "owned",
        "presented_offering_id": None,
        "entitlements": _list([], f"/v2/projects/{project_id}/purchases/{purchase.purchase_id}/entitlements"),
        "environment": "production",
        "store": purchase.store,
        "store_purchase_identifier": purchase.transaction_id,
        "ownership": "purchased",
        "country": purchase.country,
    }


def transaction_json(tx: Transaction) -> dict[str, object]:
    effective = tx.refunded_at if tx.refunded else tx.expires_at
    return {
        "object": "subscription_transaction",
        "id": tx.transaction_id,
        "purchased_at": ms(tx.purchased_at),
        "product_store_identifier": tx.product_id,
        "expiration_date": ms(tx.expires_at),
        "effective_expiration_date": ms(effective),
    }


def _price(amount: float) -> dict[str, object]:
    return {"amount": amount, "currency": "USD"}


def _v1_subscription(sub: Subscription, dataset: Dataset) -> dict[str, object]:
    txs = dataset.transactions_for_subscription(sub.subscription_id)
    expires = (
        sub.ends_at
        if sub.ends_at is not None and sub.ends_at < sub.current_period_ends_at
        else sub.current_period_ends_at
    )
    return {
        "purchase_date": iso(sub.current_period_starts_at),
        "original_purchase_date": iso(sub.starts_at),
        "expires_date": iso(expires),
        "grace_period_expires_date": iso(sub.current_period_ends_at) if sub.status == "in_grace_period" else None,
        "period_type": "trial" if sub.status == "trialing" else "normal",
        "store": sub.store,
        "is_sandbox": False,
        "unsubscribe_detected_at": iso(sub.unsubscribe_detected_at),
        "billing_issues_detected_at": iso(sub.billing_issue_detected_at),
        "refunded_at": iso(sub.refunded_at),
        "auto_resume_date": None,
        "ownership_type": "PURCHASED",
        "store_transaction_id": txs[-1].transaction_id if txs else sub.store_subscription_identifier,
        "display_name": PRODUCTS[sub.product_id].display_name,
        "price": _price(PRODUCTS[sub.product_id].price_usd),
    }


def v1_subscriber_json(
    customer_id: str, customer: Customer | None, created_at: datetime | None, dataset: Dataset, now: datetime
) -> dict[str, object]:
    """The v1 ``GET /subscribers/{id}`` body; an empty subscriber for customers created through v1."""
    subscriptions: dict[str, object] = {}
    entitlements: dict[str, object] = {}
    non_subscriptions: dict[str, list[dict[str, object]]] = {}
    subs: Sequence[Subscription] = (
        sorted(dataset.subscriptions_for(customer_id), key=lambda s: s.starts_at) if customer else ()
    )
    for sub in subs:
        subscriptions[sub.product_id] = _v1_subscription(sub, dataset)
    if subs:
        latest = subs[-1]
        entry = _v1_subscription(latest, dataset)
        entitlements[ENTITLEMENT_LOOKUP_KEY] = {
            "expires_date": entry["expires_date"],
            "grace_period_expires_date": entry["grace_period_expires_date"],
            "product_identifier": latest.product_id,
            "purchase_date": entry["purchase_date"],
        }
    for purchase in dataset.purchases_for(customer_id) if customer else ():
        non_subscriptions.setdefault(purchase.product_id, []).append(
            {
                "id": purchase.purchase_id,
                "purchase_date": iso(purchase.purchased_at),
                "store": purchase.store,
                "is_sandbox": False,
                "store_transaction_id": purchase.transaction_id,
                "display_name": PRODUCTS[purchase.product_id].display_name,
                "price": _price(purchase.price_usd),
            }
        )
    first_seen = customer.first_seen_at if customer else created_at
    last_seen = customer.last_seen_at if customer else created_at
    return {
        "request_date": iso(now),
        "request_date_ms": ms(now),
        "subscriber": {
            "original_app_user_id": customer_id,
            "first_seen": iso(first_seen),
            "last_seen": iso(last_seen),
            "management_url": _MANAGEMENT_URLS.get(subs[-1].store) if subs else None,
            "original_application_version": None,
            "original_purchase_date": None,
            "other_purchases": {},
            "entitlements": entitlements,
            "subscriptions": subscriptions,
            "non_subscriptions": non_subscriptions,
            "subscriber_attributes": {},
        },
    }
