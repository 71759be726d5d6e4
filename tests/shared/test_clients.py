"""Client edge cases against small MockTransport handlers: what the sandbox does not do on its own."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from datetime import UTC, date, datetime

import httpx2
import pytest

from shared.clients._http import UpstreamHttp, new_async_client, parse_retry_after, tls_context
from shared.clients.amplitude import AmplitudeClient
from shared.clients.revenuecat import RevenueCatClient
from shared.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamRateLimitedError,
    UpstreamTimeoutError,
)

pytestmark = pytest.mark.anyio

Handler = Callable[[httpx2.Request], httpx2.Response]
SECRET = "sk_super_secret_key_value"


def _http(handler: Handler, *, source: str = "revenuecat", deadline: float = 5.0) -> UpstreamHttp:
    client = new_async_client(
        "https://upstream.test",
        timeout=deadline,
        connect_timeout=deadline,
        headers={"Authorization": f"Bearer {SECRET}"},
        transport=httpx2.MockTransport(handler),
    )
    return UpstreamHttp(client, source=source, deadline=deadline, retries=0)  # type: ignore[arg-type]


def _rc(handler: Handler) -> RevenueCatClient:
    return RevenueCatClient(_http(handler), "proj1")


def _amp(handler: Handler) -> AmplitudeClient:
    return AmplitudeClient(_http(handler, source="amplitude"))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("30", 30),
        ("0", 0),
        ("1.2", 2),
        ("Thu, 26 Nov 2026 12:00:30 GMT", 30),
        ("garbage", None),
        ("", None),
        ("nan", None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(header: str, expected: int | None) -> None:
    now = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == expected


async def test_a_429_without_retry_after_falls_back_to_backoff_ms() -> None:
    def handler(_: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(429, json={"type": "rate_limit_error", "backoff_ms": 2500})

    with pytest.raises(UpstreamRateLimitedError) as caught:
        await _rc(handler).overview()
    assert caught.value.retry_after == 3
    assert caught.value.status == 503


async def test_upstream_401_and_403_say_our_credentials_were_rejected_without_echoing_them() -> None:
    for status in (401, 403):

        def handler(_: httpx2.Request, status: int = status) -> httpx2.Response:
            return httpx2.Response(status, json={"type": "authentication_error", "message": f"bad key {SECRET}"})

        with pytest.raises(UpstreamAuthError) as caught:
            await _rc(handler).overview()
        assert caught.value.status == 502
        assert "credentials" in caught.value.detail
        assert SECRET not in caught.value.detail


async def test_a_body_that_is_not_json_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError) as caught:
        await _rc(lambda _: httpx2.Response(200, content=b"<html>oops")).overview()
    assert type(caught.value) is UpstreamError
    assert caught.value.status == 502


async def test_json_of_the_wrong_shape_is_an_upstream_error_naming_the_model() -> None:
    with pytest.raises(UpstreamError) as caught:
        await _rc(lambda _: httpx2.Response(200, json={"unexpected": True})).overview()
    assert "OverviewMetrics" in caught.value.detail


async def test_unknown_extra_fields_are_tolerated() -> None:
    body = {
        "object": "overview_metrics",
        "currency": "EUR",
        "new_top_level": 1,
        "metrics": [{"id": "mrr", "value": 12.5, "brand_new_field": [1, 2], "period": "P0D"}],
    }
    overview = await _rc(lambda _: httpx2.Response(200, json=body)).overview()
    assert overview.metrics[0].value == 12.5
    assert overview.currency == "EUR"


async def test_a_transport_failure_is_an_upstream_error_and_a_timeout_is_504() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)

    def slow(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("slow", request=request)

    with pytest.raises(UpstreamError) as refused:
        await _rc(refuse).overview()
    assert refused.value.status == 502
    with pytest.raises(UpstreamTimeoutError):
        await _rc(slow).overview()


async def test_customer_lookup_uses_v2_url_encodes_the_id_and_maps_404_to_none() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(404, json={"object": "error", "type": "resource_missing"})

    assert await _rc(handler).customer("$RCAnonymousID:abc/def") is None
    assert seen[0].url.raw_path.decode() == "/v2/projects/proj1/customers/%24RCAnonymousID%3Aabc%2Fdef"
    assert seen[0].headers["Authorization"] == f"Bearer {SECRET}"


async def test_lists_follow_next_page_and_record_rate_limit_headers() -> None:
    pages = {
        "/v2/projects/proj1/customers/u1/purchases": {
            "items": [_purchase("p1")],
            "next_page": "/v2/projects/proj1/customers/u1/purchases?starting_after=p1",
        },
        "/v2/projects/proj1/customers/u1/purchases?starting_after=p1": {"items": [_purchase("p2")], "next_page": None},
    }

    def handler(request: httpx2.Request) -> httpx2.Response:
        after = request.url.params.get("starting_after")
        key = request.url.path + (f"?starting_after={after}" if after else "")
        headers = {"RevenueCat-Rate-Limit-Current-Usage": "7", "RevenueCat-Rate-Limit-Current-Limit": "480"}
        return httpx2.Response(200, json={"object": "list", **pages[key]}, headers=headers)

    client = _rc(handler)
    purchases = await client.purchases("u1")
    assert [p.id for p in purchases] == ["p1", "p2"]
    reading = client.rate_limits["customer_information"]
    assert (reading.usage, reading.limit) == (7, 480)


async def test_a_next_page_outside_the_project_is_refused() -> None:
    def handler(_: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={"items": [], "next_page": "/v2/projects/other/customers/u1/purchases"})

    with pytest.raises(UpstreamError):
        await _rc(handler).purchases("u1")


async def test_user_search_keeps_only_the_exact_match_among_prefix_matches() -> None:
    def handler(_: httpx2.Request) -> httpx2.Response:
        matches = [{"user_id": "user_1", "amplitude_id": 1}, {"user_id": "user_10", "amplitude_id": 10}]
        return httpx2.Response(200, json={"type": "match_user_prefix", "matches": matches})

    amp = _amp(handler)
    found = await amp.find_user("user_10")
    assert found is not None and found.amplitude_id == 10
    assert await amp.find_user("user_1000") is None


async def test_user_activity_pages_by_offset_and_stops_at_the_limit() -> None:
    offsets: list[int] = []
    total = 2500

    def handler(request: httpx2.Request) -> httpx2.Response:
        offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
        offsets.append(offset)
        count = max(0, min(limit, total - offset))
        events = [{"event_type": "x", "event_time": "2026-01-01 00:00:00.000000"} for _ in range(count)]
        return httpx2.Response(200, json={"userData": {"num_events": total}, "events": events})

    activity, truncated = await _amp(handler).user_activity(5, limit=1500)
    assert len(activity.events) == 1500 and truncated
    assert offsets == [0, 1000]
    activity, truncated = await _amp(handler).user_activity(5, limit=5000)
    assert len(activity.events) == total and not truncated


async def test_funnel_sends_one_e_per_step_in_order_with_amplitude_dates() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        element = {
            "events": ["a", "b"],
            "cumulativeRaw": [10, 5],
            "cumulative": [1.0, 0.5],
            "stepByStep": [1.0, 0.5],
        }
        return httpx2.Response(200, json={"data": [element]})

    await _amp(handler).funnel(["a", "b"], date(2026, 1, 1), date(2026, 1, 31), conversion_window_seconds=86400)
    params = seen[0].url.params
    assert [json.loads(v)["event_type"] for v in params.get_list("e")] == ["a", "b"]
    assert (params["start"], params["end"], params["cs"]) == ("20260101", "20260131", "86400")


async def test_a_funnel_whose_arrays_do_not_match_the_steps_is_an_upstream_error() -> None:
    def handler(_: httpx2.Request) -> httpx2.Response:
        element = {"events": ["a"], "cumulativeRaw": [10], "cumulative": [1.0], "stepByStep": [1.0]}
        return httpx2.Response(200, json={"data": [element]})

    with pytest.raises(UpstreamError):
        await _amp(handler).funnel(["a", "b"], date(2026, 1, 1), date(2026, 1, 2), conversion_window_seconds=60)


async def test_event_totals_sum_the_ungrouped_series_daily_up_to_365_days_and_weekly_beyond() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        data = {"series": [[3, 0, 4]], "seriesLabels": [0], "xValues": ["2026-01-01", "2026-01-02", "2026-01-03"]}
        return httpx2.Response(200, json={"data": data})

    client = _amp(handler)
    assert await client.event_totals("Sign Up", date(2026, 1, 1), date(2026, 1, 3)) == 7
    await client.event_totals("Sign Up", date(2025, 1, 1), date(2025, 12, 31))
    await client.event_totals("Sign Up", date(2024, 1, 1), date(2024, 12, 31))  # 366 days
    assert seen[0].url.path == "/api/2/events/segmentation"
    params = seen[0].url.params
    assert json.loads(params["e"]) == {"event_type": "Sign Up"}
    assert (params["m"], params["start"], params["end"], params["i"]) == ("totals", "20260101", "20260103", "1")
    assert [request.url.params["i"] for request in seen[1:]] == ["1", "7"]


async def test_event_totals_without_a_series_is_an_upstream_error() -> None:
    def handler(_: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={"data": {"series": [], "xValues": []}})

    with pytest.raises(UpstreamError, match="no series"):
        await _amp(handler).event_totals("Sign Up", date(2026, 1, 1), date(2026, 1, 2))


async def test_chart_resolution_names_are_mapped_to_option_ids_once() -> None:
    calls: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(request.url.path)
        if request.url.path.endswith("/options"):
            return httpx2.Response(200, json={"resolutions": [{"id": "7", "display_name": "month"}]})
        assert request.url.params["resolution"] == "7"
        return httpx2.Response(200, json={"display_name": "Revenue", "resolution": "month", "values": []})

    client = _rc(handler)
    for _ in range(2):
        await client.chart("revenue", date(2026, 1, 1), date(2026, 2, 1), resolution="month")
    assert calls.count("/v2/projects/proj1/charts/revenue/options") == 1
    with pytest.raises(UpstreamError):
        await client.chart("revenue", date(2026, 1, 1), date(2026, 2, 1), resolution="day")


def _purchase(purchase_id: str) -> dict[str, object]:
    return {
        "object": "purchase",
        "id": purchase_id,
        "purchased_at": 1_700_000_000_000,
        "status": "owned",
        "revenue_in_usd": {"currency": "USD", "gross": 4.99},
    }


HOSTILE_IDS: tuple[tuple[str, str], ...] = (
    ("..", "%2E%2E"),
    (".", "%2E"),
    ("...", "%2E%2E%2E"),
    ("a/../b", "a%2F..%2Fb"),
    ("../x", "..%2Fx"),
    ("a?b#c", "a%3Fb%23c"),
    ("%2e%2e", "%252e%252e"),
    ("u 1", "u%201"),
)


@pytest.mark.parametrize(("raw", "segment"), HOSTILE_IDS)
async def test_every_id_placed_in_an_upstream_path_stays_exactly_one_segment(raw: str, segment: str) -> None:
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.url.raw_path.decode())
        if request.url.path.endswith("/options"):
            return httpx2.Response(200, json={"resolutions": [{"id": "0", "display_name": "day"}]})
        return httpx2.Response(404, json={"object": "error", "type": "resource_missing"})

    client = RevenueCatClient(_http(handler), raw)
    project = f"/v2/projects/{segment}"
    with pytest.raises(UpstreamError):
        await client.overview()
    assert await client.customer(raw) is None
    for call in (client.subscriptions, client.purchases, client.subscription_transactions):
        with pytest.raises(UpstreamError):
            await call(raw)
    await client.chart_options(raw)
    with pytest.raises(UpstreamError):
        await client.chart(raw, date(2026, 1, 1), date(2026, 1, 2), resolution="day")
    assert seen == [
        f"{project}/metrics/overview?currency=USD",
        f"{project}/customers/{segment}",
        f"{project}/customers/{segment}/subscriptions?limit=100",
        f"{project}/customers/{segment}/purchases?limit=100",
        f"{project}/subscriptions/{segment}/transactions?limit=100",
        f"{project}/charts/{segment}/options?realtime=true",
        f"{project}/charts/{segment}?start_date=2026-01-01&end_date=2026-01-02&resolution=0&currency=USD&realtime=true",
    ]


async def test_amplitude_sends_user_ids_as_query_values_never_in_the_path() -> None:
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.url.raw_path.decode())
        return httpx2.Response(200, json={"matches": [], "type": "match_user_or_device_id"})

    assert await AmplitudeClient(_http(handler, source="amplitude")).find_user("../..") is None
    assert seen == ["/api/2/usersearch?user=..%2F.."]


def test_every_upstream_client_shares_one_tls_context_that_still_verifies_certificates() -> None:
    context = tls_context()
    assert tls_context() is context  # built once: the CA store is loaded once per process
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
