"""Response variants (shared/sandbox/variants.py), chart measure names, store overrides and web-billing transactions."""

import json
from datetime import date
from typing import Any
from urllib.parse import quote

import httpx2
import pytest

from shared.sandbox import Dataset, FaultSpec, SandboxServer, SandboxState
from shared.sandbox.variants import (
    UNKNOWN_FIELD,
    Variant,
    append_item,
    array_values,
    drop_field,
    drop_measure,
    drop_next_page,
    empty_list,
    extra_empty_page,
    null_field,
    page_size,
    parse_path,
    rename_field,
    rename_measure,
    set_field,
    unknown_fields,
)

from .conftest import END, PROJECT

Q1 = {"start_date": "2025-01-01", "end_date": "2025-03-31", "resolution": "2"}
FEB = 1738368000  # 2025-02-01 in unix seconds


def _chart(client: httpx2.Client, name: str, params: dict[str, str] | None = None) -> Any:
    response = client.get(f"{PROJECT}/charts/{name}", params=params or Q1)
    assert response.status_code == 200, response.text
    return response.json()


def _names(body: Any) -> list[str]:
    return [m["display_name"] for m in body["measures"]]


def _feb(body: Any) -> dict[int, float]:
    return {p["measure"]: p["value"] for p in body["values"] if p["cohort"] == FEB}


def _subscription_with_store(dataset: Dataset, store: str) -> tuple[str, str]:
    sub = next(s for s in dataset.subscriptions if s.store == store and len(s.transaction_ids) >= 2)
    return sub.user_id, sub.subscription_id


def test_trial_conversion_chart_reports_public_measure_names_with_honest_counts(
    revenuecat: httpx2.Client, dataset: Dataset
) -> None:
    params = {"start_date": "2025-10-01", "end_date": str(END), "resolution": "2"}
    body = _chart(revenuecat, "trial_conversion_rate", params)
    assert _names(body) == ["Trial Starts", "Conversions", "Expirations", "Pending"]
    assert {m["unit"] for m in body["measures"]} == {"#"}
    assert body["yaxis"] == "%"
    trials = [t for t in dataset.trials if date(2025, 10, 1) <= t.started_at.date() <= END]
    total = body["summary"]["total"]
    converted = sum(t.converted for t in trials)
    pending = sum(not t.converted and t.ends_at >= dataset.end_at for t in trials)
    assert total == {
        "Trial Starts": len(trials),
        "Conversions": converted,
        "Expirations": len(trials) - converted - pending,
        "Pending": pending,
    }
    assert pending > 0  # the last week's trials have not ended: the chart shows them as pending


def test_refund_rate_and_revenue_measures_come_in_the_public_order(revenuecat: httpx2.Client) -> None:
    assert _names(_chart(revenuecat, "refund_rate")) == ["Transactions", "Refunded Transactions", "Refund Rate"]
    assert _names(_chart(revenuecat, "revenue")) == ["Revenue", "Transactions"]


def test_legacy_measure_names_remain_available_as_a_variant(revenuecat: httpx2.Client, state: SandboxState) -> None:
    state.chart_measure_names = "legacy"
    refunds = _chart(revenuecat, "refund_rate")
    assert _names(refunds) == ["Refund Rate", "Refunded Transactions", "Transactions"]
    assert _names(_chart(revenuecat, "trial_conversion_rate")) == ["Conversion Rate", "Trials", "Conversions"]
    state.chart_measure_names = "public"
    public = _feb(_chart(revenuecat, "refund_rate"))
    assert _feb(refunds) == {0: public[2], 1: public[1], 2: public[0]}


def test_dropping_measures_leaves_a_rate_only_chart_with_renumbered_points(
    revenuecat: httpx2.Client, state: SandboxState
) -> None:
    full = _chart(revenuecat, "refund_rate")
    state.add_variant("revenuecat.chart", drop_measure("refund_rate", "Transactions"))
    state.add_variant("revenuecat.chart", drop_measure("refund_rate", "Refunded Transactions"))
    body = _chart(revenuecat, "refund_rate")
    assert _names(body) == ["Refund Rate"]
    assert _feb(body) == {0: _feb(full)[2]}
    assert set(body["summary"]["total"]) == {"Refund Rate"}
    assert _names(_chart(revenuecat, "revenue")) == ["Revenue", "Transactions"]  # other charts untouched


def test_renaming_a_measure_renames_its_summary_entries(revenuecat: httpx2.Client, state: SandboxState) -> None:
    state.add_variant("revenuecat.chart", rename_measure("refund_rate", "Refunded Transactions", "Refunded"))
    body = _chart(revenuecat, "refund_rate")
    assert _names(body) == ["Transactions", "Refunded", "Refund Rate"]
    assert "Refunded" in body["summary"]["average"]
    assert "Refunded Transactions" not in body["summary"]["total"]


def test_array_values_serve_one_row_per_period_cohort_first(revenuecat: httpx2.Client, state: SandboxState) -> None:
    points = _feb(_chart(revenuecat, "refund_rate"))
    state.add_variant("revenuecat.chart", array_values("refund_rate"))
    rows: list[Any] = _chart(revenuecat, "refund_rate")["values"]
    assert len(rows) == 3
    assert rows[1] == [FEB, points[0], points[1], points[2]]
    state.clear_variants()
    state.add_variant("revenuecat.chart", array_values(cohort_ms=True))
    assert _chart(revenuecat, "revenue")["values"][0][0] == 1735689600000


def test_array_values_leave_segmented_charts_as_object_points(revenuecat: httpx2.Client, state: SandboxState) -> None:
    state.add_variant("revenuecat.chart", array_values())
    body = _chart(revenuecat, "revenue", {**Q1, "segment": "store"})
    assert all(isinstance(p, dict) and "segment" in p for p in body["values"])


def test_path_variants_drop_null_rename_set_and_empty(revenuecat: httpx2.Client, state: SandboxState) -> None:
    state.add_variant("revenuecat.overview", drop_field("metrics[id=mrr]"))
    state.add_variant("revenuecat.overview", null_field("metrics[id=revenue].value"))
    state.add_variant("revenuecat.overview", rename_field("metrics[id=active_users].value", "amount"))
    state.add_variant("revenuecat.overview", set_field("metrics[id=active_trials].period", "P1W"))
    state.add_variant("revenuecat.overview", set_field("currency", "USD"))
    state.add_variant("revenuecat.overview", append_item("metrics", {"object": "overview_metric", "id": "arpu"}))
    body = revenuecat.get(f"{PROJECT}/metrics/overview").json()
    metrics = {m["id"]: m for m in body["metrics"]}
    assert "mrr" not in metrics
    assert metrics["revenue"]["value"] is None
    assert "value" not in metrics["active_users"] and isinstance(metrics["active_users"]["amount"], int)
    assert list(metrics["active_users"])[:7] == ["object", "id", "name", "description", "unit", "period", "amount"]
    assert metrics["active_trials"]["period"] == "P1W"
    assert body["currency"] == "USD"
    assert body["metrics"][-1]["id"] == "arpu"
    state.add_variant("revenuecat.overview", empty_list("metrics"))
    assert revenuecat.get(f"{PROJECT}/metrics/overview").json()["metrics"] == []


def test_unknown_fields_are_added_to_every_object(amplitude: httpx2.Client, state: SandboxState) -> None:
    state.add_variant("amplitude.users", unknown_fields())
    body = amplitude.get("/api/2/users", params={"start": "20250101", "end": "20250102"}).json()
    assert UNKNOWN_FIELD in body and UNKNOWN_FIELD in body["data"]
    assert body["data"]["series"] and body["data"]["xValues"] == ["2025-01-01", "2025-01-02"]


def test_amplitude_funnel_variant_drops_an_optional_array(amplitude: httpx2.Client, state: SandboxState) -> None:
    state.add_variant("amplitude.funnels", drop_field("data[0].medianTransTimes"))
    steps = [("e", json.dumps({"event_type": t})) for t in ("Sign Up", "View Paywall")]
    body = amplitude.get("/api/2/funnels", params=[*steps, ("start", "20250101"), ("end", "20250131")]).json()
    assert "medianTransTimes" not in body["data"][0]
    assert "avgTransTimes" in body["data"][0]


def test_page_size_and_extra_empty_page_shape_list_paging(
    revenuecat: httpx2.Client, state: SandboxState, dataset: Dataset
) -> None:
    user_id, sub_id = _subscription_with_store(dataset, "app_store")
    path = f"{PROJECT}/subscriptions/{sub_id}/transactions"
    sub = dataset.subscription_by_id(sub_id)
    assert sub is not None
    expected = list(sub.transaction_ids)
    state.add_variant("revenuecat.transactions", page_size(1))
    state.add_variant("revenuecat.transactions", extra_empty_page())
    seen: list[str] = []
    url: str | None = path + "?limit=100"
    pages = 0
    body: Any = None
    while url:
        body = revenuecat.get(url).json()
        seen += [t["id"] for t in body["items"]]
        url, pages = body.get("next_page"), pages + 1
    assert seen == expected
    assert pages == len(expected) + 1  # one item a page, then the extra empty one
    assert body["items"] == []
    assert user_id


def test_drop_next_page_hides_the_later_pages(revenuecat: httpx2.Client, state: SandboxState, dataset: Dataset) -> None:
    _, sub_id = _subscription_with_store(dataset, "play_store")
    state.add_variant("revenuecat.transactions", page_size(1))
    state.add_variant("revenuecat.transactions", drop_next_page())
    body = revenuecat.get(f"{PROJECT}/subscriptions/{sub_id}/transactions").json()
    assert len(body["items"]) == 1 and "next_page" not in body


def test_transactions_of_web_subscriptions_answer_400_parameter_error(
    revenuecat: httpx2.Client, dataset: Dataset
) -> None:
    for store in ("rc_billing", "stripe"):
        _, sub_id = _subscription_with_store(dataset, store)
        response = revenuecat.get(f"{PROJECT}/subscriptions/{sub_id}/transactions")
        assert response.status_code == 400
        body = response.json()
        assert body["type"] == "parameter_error" and body["object"] == "error" and body["retryable"] is False
        assert "App Store and Play Store" in body["message"]
    _, store_sub = _subscription_with_store(dataset, "app_store")
    assert revenuecat.get(f"{PROJECT}/subscriptions/{store_sub}/transactions").status_code == 200


def test_overriding_a_store_makes_a_subscription_web_billing(
    revenuecat: httpx2.Client, state: SandboxState, dataset: Dataset
) -> None:
    user_id, sub_id = _subscription_with_store(dataset, "app_store")
    state.override_store([sub_id], "rc_billing")
    items = revenuecat.get(f"{PROJECT}/customers/{quote(user_id, safe='')}/subscriptions").json()["items"]
    served = next(i for i in items if i["id"] == sub_id)
    assert served["store"] == "rc_billing" and served["management_url"] is None
    assert revenuecat.get(f"{PROJECT}/subscriptions/{sub_id}/transactions").status_code == 400
    state.reset()
    assert revenuecat.get(f"{PROJECT}/subscriptions/{sub_id}/transactions").status_code == 200


def test_the_dataset_sells_through_all_four_stores_and_names_a_web_billing_user(dataset: Dataset) -> None:
    assert {s.store for s in dataset.subscriptions} == {"app_store", "play_store", "stripe", "rc_billing"}
    user_id = dataset.web_billing_user()
    assert user_id == dataset.web_billing_user()
    subs = [s for s in dataset.subscriptions_for(user_id) if s.store == "rc_billing"]
    assert subs and len(subs[0].transaction_ids) >= 2
    assert dataset.user_by_id(user_id) is not None and dataset.customer_by_id(user_id) is not None
    assert dataset.user_with_store("stripe") != user_id


def test_faults_take_precedence_over_variants(revenuecat: httpx2.Client, state: SandboxState) -> None:
    state.add_variant("revenuecat.overview", empty_list("metrics"))
    state.inject("revenuecat.overview", FaultSpec(status=503, times=1))
    assert revenuecat.get(f"{PROJECT}/metrics/overview").status_code == 503
    assert revenuecat.get(f"{PROJECT}/metrics/overview").json()["metrics"] == []


def test_control_api_adds_lists_and_clears_variants(server: SandboxServer, state: SandboxState) -> None:
    with httpx2.Client(base_url=server.base_url, timeout=10) as control:
        added = control.post(
            "/_sandbox/variants",
            json={
                "endpoint": "revenuecat.chart",
                "kind": "drop_measure",
                "measure": "Transactions",
                "chart": "revenue",
            },
        )
        assert added.status_code == 201
        assert control.post("/_sandbox/measure-names", json={"chart_measure_names": "legacy"}).status_code == 200
        assert (
            control.post("/_sandbox/stores", json={"subscription_ids": ["sub1"], "store": "stripe"}).status_code == 200
        )
        listed = control.get("/_sandbox/variants").json()
        assert listed["chart_measure_names"] == "legacy"
        assert listed["variants"][0]["kind"] == "drop_measure"
        assert state.store_of("sub1", "app_store") == "stripe"
        assert control.delete("/_sandbox/variants").status_code == 200
        assert control.get("/_sandbox/variants").json() == {"variants": [], "chart_measure_names": "public"}
        assert state.store_of("sub1", "app_store") == "app_store"


@pytest.mark.parametrize(
    "body",
    [
        {"endpoint": "revenuecat.chart", "kind": "explode"},
        {"endpoint": "nowhere", "kind": "drop", "path": "a"},
        {"endpoint": "revenuecat.overview", "kind": "drop", "path": ""},
        {"endpoint": "revenuecat.overview", "kind": "rename", "path": "a"},
        {"endpoint": "revenuecat.overview", "kind": "page_size", "value": 0},
        {"endpoint": "revenuecat.overview", "kind": "drop", "path": "a", "surprise": 1},
    ],
)
def test_control_api_rejects_malformed_variants(server: SandboxServer, state: SandboxState, body: object) -> None:
    with httpx2.Client(base_url=server.base_url, timeout=10) as control:
        response = control.post("/_sandbox/variants", json=body)
    assert response.status_code == 400
    assert state.variants.active() == []


def test_paths_parse_keys_indexes_wildcards_and_filters() -> None:
    assert parse_path("data[0].series[*]") == [("key", "data"), ("index", 0), ("key", "series"), ("all", None)]
    assert parse_path("metrics[id=mrr].value") == [("key", "metrics"), ("where", ("id", "mrr")), ("key", "value")]
    with pytest.raises(ValueError, match="malformed"):
        parse_path("a[b")
    with pytest.raises(ValueError, match="needs"):
        Variant("rename_measure", measure="Revenue")
