from datetime import date, timedelta
from urllib.parse import quote

import httpx2
import pytest

from shared.sandbox import SANDBOX_REVENUECAT_API_KEY, Dataset, SandboxServer, SandboxState

from .conftest import PROJECT


def _cid(customer_id: str) -> str:
    return quote(customer_id, safe="")


def test_v2_without_a_valid_key_is_401_authentication_error(anonymous: httpx2.Client) -> None:
    response = anonymous.get(f"{PROJECT}/metrics/overview", headers={"Authorization": "Bearer sk_wrong"})
    assert response.status_code == 401
    assert response.json() == {
        "object": "error",
        "type": "authentication_error",
        "message": "Invalid API key",
        "retryable": False,
        "doc_url": "https://errors.rev.cat/authentication-error",
    }


def test_v2_with_another_project_id_is_403(revenuecat: httpx2.Client) -> None:
    response = revenuecat.get("/v2/projects/projother/metrics/overview")
    assert response.status_code == 403
    assert response.json()["type"] == "authorization_error"


def test_overview_lists_the_six_metrics_with_rate_limit_headers(revenuecat: httpx2.Client, dataset: Dataset) -> None:
    response = revenuecat.get(f"{PROJECT}/metrics/overview", params={"currency": "USD"})
    assert response.status_code == 200
    assert response.headers["RevenueCat-Rate-Limit-Current-Usage"] == "1"
    assert response.headers["RevenueCat-Rate-Limit-Current-Limit"] == "25"
    body = response.json()
    metrics = {m["id"]: m for m in body["metrics"]}
    assert body["object"] == "overview_metrics"
    assert list(metrics) == ["active_trials", "active_subscriptions", "mrr", "revenue", "new_customers", "active_users"]
    assert metrics["mrr"]["period"] == "P0D"
    assert metrics["revenue"]["period"] == "P28D"
    trialing = sum(s.status == "trialing" for s in dataset.subscriptions)
    assert metrics["active_trials"]["value"] == trialing
    assert isinstance(metrics["mrr"]["last_updated_at"], int)


def test_overview_rejects_unknown_currency(revenuecat: httpx2.Client) -> None:
    response = revenuecat.get(f"{PROJECT}/metrics/overview", params={"currency": "XYZ"})
    assert response.status_code == 400
    assert response.json()["param"] == "currency"


def test_charts_over_the_limit_get_429_with_retry_after_until_the_window_moves(
    revenuecat: httpx2.Client, state: SandboxState
) -> None:
    now = [1000.0]
    state.clock = lambda: now[0]
    state.charts_rpm = 3
    usages = [
        revenuecat.get(f"{PROJECT}/metrics/overview").headers["RevenueCat-Rate-Limit-Current-Usage"] for _ in range(3)
    ]
    assert usages == ["1", "2", "3"]
    limited = revenuecat.get(f"{PROJECT}/charts/revenue/options")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "60"
    assert limited.headers["RevenueCat-Rate-Limit-Current-Limit"] == "3"
    assert limited.json()["type"] == "rate_limit_error"
    assert limited.json()["backoff_ms"] == 60_000
    now[0] += 60.5
    assert revenuecat.get(f"{PROJECT}/metrics/overview").status_code == 200
    # Customer Information has its own budget.
    assert revenuecat.get(f"{PROJECT}/customers/nobody").headers.get("Retry-After") is None


def test_chart_options_list_resolutions_and_segments(revenuecat: httpx2.Client) -> None:
    body = revenuecat.get(f"{PROJECT}/charts/refund_rate/options").json()
    assert body["object"] == "chart_options"
    assert body["resolutions"][:3] == [
        {"id": "0", "display_name": "day"},
        {"id": "1", "display_name": "week"},
        {"id": "2", "display_name": "month"},
    ]
    assert {s["id"] for s in body["segments"]} == {"country", "store", "product"}


def test_refund_rate_chart_equals_refunds_over_transactions_in_raw_data(
    revenuecat: httpx2.Client, dataset: Dataset
) -> None:
    params = {"start_date": "2025-01-01", "end_date": "2025-03-31", "resolution": "2"}
    body = revenuecat.get(f"{PROJECT}/charts/refund_rate", params=params).json()
    assert body["resolution"] == "month"
    assert [m["display_name"] for m in body["measures"]] == ["Transactions", "Refunded Transactions", "Refund Rate"]
    assert [m["unit"] for m in body["measures"]] == ["#", "#", "%"]
    feb = [t for t in dataset.transactions if t.purchased_at.date().replace(day=1) == date(2025, 2, 1)]
    refunded = sum(t.refunded for t in feb)
    points = {p["measure"]: p for p in body["values"] if p["cohort"] == 1738368000}
    assert points[0]["value"] == len(feb)
    assert points[1]["value"] == refunded
    assert points[2]["value"] == pytest.approx(100 * refunded / len(feb), abs=0.01)
    assert points[2]["incomplete"] is False
    q1 = [t for t in dataset.transactions if date(2025, 1, 1) <= t.purchased_at.date() <= date(2025, 3, 31)]
    assert body["summary"]["total"]["Transactions"] == len(q1)


def test_recent_refund_rate_periods_are_incomplete(revenuecat: httpx2.Client) -> None:
    params = {"start_date": "2025-09-01", "end_date": "2025-11-20", "resolution": "2"}
    values = revenuecat.get(f"{PROJECT}/charts/refund_rate", params=params).json()["values"]
    flags = {p["cohort"]: p["incomplete"] for p in values}
    assert list(flags.values()) == [False, True, True]


def test_revenue_chart_total_is_net_of_refunds(revenuecat: httpx2.Client, dataset: Dataset) -> None:
    params = {"start_date": "2025-04-01", "end_date": "2025-04-30", "resolution": "1", "aggregate": "total"}
    body = revenuecat.get(f"{PROJECT}/charts/revenue", params=params).json()
    april = [t for t in dataset.transactions if t.purchased_at.date().replace(day=1) == date(2025, 4, 1)]
    assert body["values"] == []
    assert body["summary"]["total"]["Revenue"] == pytest.approx(
        sum(t.price_usd for t in april if not t.refunded), abs=0.01
    )
    assert body["summary"]["total"]["Transactions"] == sum(not t.refunded for t in april)


def test_segmented_chart_points_carry_a_segment_index(revenuecat: httpx2.Client) -> None:
    params = {"start_date": "2025-04-01", "end_date": "2025-04-30", "resolution": "2", "segment": "store"}
    body = revenuecat.get(f"{PROJECT}/charts/trial_conversion_rate", params=params).json()
    assert len(body["segments"]) == 4
    assert {p["segment"] for p in body["values"]} == {0, 1, 2, 3}


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"start_date": "2025-04-01", "end_date": "2025-04-30", "resolution": "9"}, "resolution"),
        ({"start_date": "2025-05-01", "end_date": "2025-04-30"}, "start_date"),
        ({"start_date": "20250401", "end_date": "2025-04-30"}, "start_date"),
        ({"start_date": "2025-04-01", "end_date": "2025-04-30", "segment": "planet"}, "segment"),
        (
            {"start_date": "2025-04-01", "end_date": "2025-04-30", "filters": '[{"name": "planet", "values": ["x"]}]'},
            "filters",
        ),
    ],
)
def test_chart_rejects_bad_parameters_with_parameter_error(
    revenuecat: httpx2.Client, params: dict[str, str], param: str
) -> None:
    response = revenuecat.get(f"{PROJECT}/charts/revenue", params=params)
    assert response.status_code == 400
    assert response.json()["type"] == "parameter_error"
    assert response.json()["param"] == param


def test_unknown_chart_is_404_and_unsupported_chart_is_400(revenuecat: httpx2.Client, state: SandboxState) -> None:
    params = {"start_date": "2025-04-01", "end_date": "2025-04-30"}
    assert revenuecat.get(f"{PROJECT}/charts/nonsense", params=params).status_code == 404
    assert revenuecat.get(f"{PROJECT}/charts/mrr", params=params).status_code == 400
    state.unknown_chart_status = 400
    assert revenuecat.get(f"{PROJECT}/charts/nonsense", params=params).status_code == 400


def test_unknown_customer_is_404_and_nothing_is_created(revenuecat: httpx2.Client, state: SandboxState) -> None:
    response = revenuecat.get(f"{PROJECT}/customers/ghost")
    assert response.status_code == 404
    assert response.json()["type"] == "resource_missing"
    assert revenuecat.get(f"{PROJECT}/customers/ghost/subscriptions").status_code == 404
    assert state.created_customers == {}


def test_anonymous_customer_ids_work_url_encoded(revenuecat: httpx2.Client, dataset: Dataset) -> None:
    customer = next(c for c in dataset.customers if c.customer_id.startswith("$RCAnonymousID:"))
    body = revenuecat.get(f"{PROJECT}/customers/{_cid(customer.customer_id)}").json()
    assert body["object"] == "customer"
    assert body["id"] == customer.customer_id


def test_subscriptions_and_transactions_paginate_with_next_page(revenuecat: httpx2.Client, dataset: Dataset) -> None:
    sub = max(dataset.subscriptions, key=lambda s: len(s.transaction_ids))
    seen: list[str] = []
    path: str | None = f"{PROJECT}/subscriptions/{sub.subscription_id}/transactions?limit=2"
    while path is not None:
        page = revenuecat.get(path).json()
        assert page["object"] == "list"
        seen += [item["id"] for item in page["items"]]
        path = page["next_page"]
    assert seen == list(sub.transaction_ids)
    subs = revenuecat.get(f"{PROJECT}/customers/{_cid(sub.user_id)}/subscriptions").json()
    item = subs["items"][0]
    assert item["object"] == "subscription"
    assert item["total_revenue_in_usd"]["currency"] == "USD"
    assert item["status"] in ("trialing", "active", "expired", "in_grace_period", "in_billing_retry")
    assert isinstance(item["starts_at"], int)


def test_purchases_report_refunded_status(revenuecat: httpx2.Client, dataset: Dataset) -> None:
    purchase = next(p for p in dataset.purchases if p.refunded)
    items = revenuecat.get(f"{PROJECT}/customers/{_cid(purchase.user_id)}/purchases").json()["items"]
    by_id = {i["id"]: i for i in items}
    assert by_id[purchase.purchase_id]["status"] == "refunded"
    assert revenuecat.get(f"{PROJECT}/customers/{_cid(purchase.user_id)}/purchases?limit=0").status_code == 400


def test_v1_get_creates_unknown_customers_who_then_exist_in_v2(revenuecat: httpx2.Client, state: SandboxState) -> None:
    created = revenuecat.get("/v1/subscribers/brand-new-user")
    assert created.status_code == 201
    assert created.json()["subscriber"]["subscriptions"] == {}
    assert revenuecat.get("/v1/subscribers/brand-new-user").status_code == 200
    assert revenuecat.get(f"{PROJECT}/customers/brand-new-user").status_code == 200
    assert state.counts["revenuecat.v1_subscribers"] == 2


def test_v1_known_subscriber_and_bad_key(server: SandboxServer, revenuecat: httpx2.Client, dataset: Dataset) -> None:
    sub = dataset.subscriptions[0]
    body = revenuecat.get(f"/v1/subscribers/{_cid(sub.user_id)}").json()
    assert sub.product_id in body["subscriber"]["subscriptions"]
    with httpx2.Client(base_url=server.base_url, headers={"Authorization": "Bearer nope"}) as client:
        response = client.get("/v1/subscribers/x")
    assert response.status_code == 401
    assert set(response.json()) == {"code", "message"}
    assert SANDBOX_REVENUECAT_API_KEY.startswith("sk_")


def test_overview_is_never_updated_after_the_sandbox_clock(revenuecat: httpx2.Client, state: SandboxState) -> None:
    # The dataset runs to the end of its last day; on that day its newest points lie ahead of the clock.
    newest = max(c.last_seen_at for c in state.dataset.customers)
    now = newest - timedelta(hours=5)
    state.wall_clock = lambda: now
    metrics = revenuecat.get(f"{PROJECT}/metrics/overview").json()["metrics"]
    assert {m["last_updated_at"] for m in metrics} == {round(now.timestamp() * 1000)}
    assert metrics[0]["last_updated_at_iso8601"] == now.isoformat(sep=" ", timespec="microseconds")
    later = newest + timedelta(days=3)  # a dataset built days ago: its newest point, as before
    state.wall_clock = lambda: later
    metrics = revenuecat.get(f"{PROJECT}/metrics/overview").json()["metrics"]
    assert metrics[0]["last_updated_at"] == round(newest.timestamp() * 1000)
