import json
import threading
import time
from datetime import date, datetime, timedelta

import httpx2
import pytest

from shared.sandbox import Dataset, FaultSpec, SandboxServer, SandboxState
from shared.sandbox.dataset import COUNTRY_NAMES, Event

STEPS = ("Sign Up", "View Paywall", "Start Trial", "Subscribe")


Params = tuple[tuple[str, str], ...]  # a tuple (covariant) of pairs, so repeated ``e`` type-checks as httpx params


def _funnel_params(steps: tuple[str, ...], start: str, end: str, **extra: str) -> Params:
    steps_e = tuple(("e", json.dumps({"event_type": s})) for s in steps)
    return (*steps_e, ("start", start), ("end", end), *extra.items())


def _distinct_active(dataset: Dataset, start: date, end: date) -> int:
    return len({e.amplitude_id for e in dataset.events if start <= e.event_time.date() <= end})


def _expected_funnel(dataset: Dataset, start: date, end: date, window: int) -> list[int]:
    """Independent ordered-funnel count: first step-0 event in range, later steps in order within the window."""
    by_user: dict[int, list[Event]] = {}
    for e in dataset.events:
        by_user.setdefault(e.amplitude_id, []).append(e)
    counts = [0] * len(STEPS)
    for events in by_user.values():
        events.sort(key=lambda e: e.event_time)
        entry = next((e for e in events if e.event_type == STEPS[0] and start <= e.event_time.date() <= end), None)
        if entry is None:
            continue
        counts[0] += 1
        previous: datetime = entry.event_time
        deadline = entry.event_time + timedelta(seconds=window)
        for k, step in enumerate(STEPS[1:], start=1):
            hit = next((e for e in events if e.event_type == step and previous <= e.event_time <= deadline), None)
            if hit is None:
                break
            counts[k] += 1
            previous = hit.event_time
    return counts


def test_users_requires_basic_auth(anonymous: httpx2.Client) -> None:
    response = anonymous.get("/api/2/users", params={"start": "20250101", "end": "20250102"})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/plain")


def test_wrong_secret_gets_the_configured_auth_failure_status(server: SandboxServer, state: SandboxState) -> None:
    state.amplitude_auth_failure_status = 403
    with httpx2.Client(base_url=server.base_url, auth=(state.amplitude_api_key, "wrong")) as client:
        response = client.get("/api/2/users", params={"start": "20250101", "end": "20250102"})
    assert response.status_code == 403


@pytest.mark.parametrize(
    "params",
    [
        {"start": "2025-01-01", "end": "20250102"},
        {"start": "20250105", "end": "20250102"},
        {"end": "20250102"},
        {"start": "20250101", "end": "20250102", "i": "2"},
        {"start": "20250101", "end": "20250102", "m": "uniques"},
        {"start": "20250101", "end": "20250102", "s": "[not json"},
    ],
)
def test_users_rejects_bad_parameters_with_400(amplitude: httpx2.Client, params: dict[str, str]) -> None:
    response = amplitude.get("/api/2/users", params=params)
    assert response.status_code == 400
    assert response.text


def test_monthly_active_users_equal_distinct_users_with_events(amplitude: httpx2.Client, dataset: Dataset) -> None:
    response = amplitude.get("/api/2/users", params={"start": "20250115", "end": "20250331", "m": "active", "i": "30"})
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["xValues"] == ["2025-01-15", "2025-02-01", "2025-03-01"]
    assert data["seriesMeta"] == ["All Users"]
    expected = [
        _distinct_active(dataset, date(2025, 1, 15), date(2025, 1, 31)),
        _distinct_active(dataset, date(2025, 2, 1), date(2025, 2, 28)),
        _distinct_active(dataset, date(2025, 3, 1), date(2025, 3, 31)),
    ]
    assert data["series"] == [expected]


def test_daily_and_weekly_active_users_bucket_by_day_and_monday_week(
    amplitude: httpx2.Client, dataset: Dataset
) -> None:
    daily = amplitude.get("/api/2/users", params={"start": "20250301", "end": "20250303"}).json()["data"]
    assert daily["xValues"] == ["2025-03-01", "2025-03-02", "2025-03-03"]
    assert daily["series"][0][2] == _distinct_active(dataset, date(2025, 3, 3), date(2025, 3, 3))
    weekly = amplitude.get("/api/2/users", params={"start": "20250301", "end": "20250312", "i": "7"}).json()["data"]
    assert weekly["xValues"] == ["2025-03-01", "2025-03-03", "2025-03-10"]
    assert weekly["series"][0][1] == _distinct_active(dataset, date(2025, 3, 3), date(2025, 3, 9))


def test_new_users_grouped_by_country_add_up_to_users_first_seen(amplitude: httpx2.Client, dataset: Dataset) -> None:
    params = {"start": "20250201", "end": "20250228", "m": "new", "i": "30", "g": "country"}
    data = amplitude.get("/api/2/users", params=params).json()["data"]
    assert set(data["seriesMeta"]) <= set(COUNTRY_NAMES.values())
    expected = sum(1 for u in dataset.users if date(2025, 2, 1) <= u.first_seen <= date(2025, 2, 28))
    assert sum(row[0] for row in data["series"]) == expected


def test_funnel_counts_match_an_independent_computation(amplitude: httpx2.Client, dataset: Dataset) -> None:
    response = amplitude.get("/api/2/funnels", params=_funnel_params(STEPS, "20250301", "20250314", cs="864000"))
    assert response.status_code == 200
    element = response.json()["data"][0]
    expected = _expected_funnel(dataset, date(2025, 3, 1), date(2025, 3, 14), 864000)
    assert element["cumulativeRaw"] == expected
    assert element["events"] == list(STEPS)
    assert element["cumulative"][0] == 1.0
    assert element["cumulative"][-1] == pytest.approx(expected[-1] / expected[0])
    assert element["stepByStep"][2] == pytest.approx(expected[2] / expected[1])
    assert element["medianTransTimes"][0] == 0
    assert all(t > 0 for t in element["medianTransTimes"][1:])
    assert len(element["dayFunnels"]["series"]) == 14
    assert [sum(col) for col in zip(*element["dayFunnels"]["series"], strict=True)] == expected


def test_funnel_with_unknown_event_reaches_nobody(amplitude: httpx2.Client) -> None:
    params = _funnel_params(("Sign Up", "Teleport"), "20250301", "20250331")
    element = amplitude.get("/api/2/funnels", params=params).json()["data"][0]
    assert element["cumulativeRaw"][1] == 0
    assert element["cumulative"][1] == 0


@pytest.mark.parametrize(
    "params",
    [
        _funnel_params(("Sign Up",), "20250301", "20250331"),
        (("e", "{bad"), ("e", '{"event_type": "Sign Up"}'), ("start", "20250301"), ("end", "20250331")),
        _funnel_params(STEPS, "20250301", "20250331", mode="random"),
    ],
)
def test_funnel_rejects_bad_parameters_with_400(amplitude: httpx2.Client, params: Params) -> None:
    assert amplitude.get("/api/2/funnels", params=params).status_code == 400


def test_usersearch_matches_user_id_amplitude_id_prefix_or_nothing(amplitude: httpx2.Client, dataset: Dataset) -> None:
    user = dataset.users[42]
    exact = amplitude.get("/api/2/usersearch", params={"user": user.user_id}).json()
    assert exact == {
        "matches": [{"user_id": user.user_id, "amplitude_id": user.amplitude_id}],
        "type": "match_user_or_device_id",
    }
    by_id = amplitude.get("/api/2/usersearch", params={"user": str(user.amplitude_id)}).json()
    assert by_id["type"] == "match_amplitude_id"
    assert by_id["matches"][0]["user_id"] == user.user_id
    prefix = amplitude.get("/api/2/usersearch", params={"user": "user_0004"}).json()
    assert prefix["type"] == "match_user_prefix"
    assert 1 < len(prefix["matches"]) <= 25
    assert all(m["user_id"].startswith("user_0004") for m in prefix["matches"])
    none = amplitude.get("/api/2/usersearch", params={"user": "nobody-here"})
    assert none.status_code == 200
    assert none.json() == {"type": "nomatch", "matches": []}


def test_useractivity_pages_events_newest_first(amplitude: httpx2.Client, dataset: Dataset) -> None:
    user = max(dataset.users[:50], key=lambda u: len(dataset.events_for(u.amplitude_id)))
    events = dataset.events_for(user.amplitude_id)
    first = amplitude.get("/api/2/useractivity", params={"user": user.amplitude_id, "limit": 5}).json()
    second = amplitude.get("/api/2/useractivity", params={"user": user.amplitude_id, "limit": 5, "offset": 5}).json()
    assert first["userData"]["user_id"] == user.user_id
    assert first["userData"]["num_events"] == len(events)
    assert first["userData"]["canonical_amplitude_id"] == user.amplitude_id
    expected = [e.event_time.strftime("%Y-%m-%d %H:%M:%S.%f") for e in reversed(events)][:10]
    assert [e["event_time"] for e in first["events"] + second["events"]] == expected
    assert {"event_type", "event_properties", "session_id", "uuid", "amplitude_id"} <= set(first["events"][0])
    earliest = amplitude.get(
        "/api/2/useractivity", params={"user": user.amplitude_id, "limit": 1, "direction": "earliest"}
    ).json()
    assert earliest["events"][0]["event_id"] == 1


def test_useractivity_for_unknown_id_is_empty_and_non_numeric_is_400(amplitude: httpx2.Client) -> None:
    unknown = amplitude.get("/api/2/useractivity", params={"user": "999"})
    assert unknown.status_code == 200
    assert unknown.json()["events"] == []
    assert unknown.json()["userData"]["num_events"] == 0
    assert amplitude.get("/api/2/useractivity", params={"user": "user_00001"}).status_code == 400
    assert amplitude.get("/api/2/useractivity", params={"user": "100000001", "limit": "1001"}).status_code == 400


def test_too_many_concurrent_dashboard_requests_get_429(amplitude: httpx2.Client, state: SandboxState) -> None:
    state.amplitude_concurrency_limit = 1
    state.inject("amplitude.users", FaultSpec(latency=0.5, times=1))
    params = {"start": "20250101", "end": "20250101"}
    results: list[int] = []
    slow = threading.Thread(target=lambda: results.append(amplitude.get("/api/2/users", params=params).status_code))
    slow.start()
    deadline = time.monotonic() + 5
    waiter = threading.Event()
    while state.counts.get("amplitude.users", 0) < 1 and time.monotonic() < deadline:
        waiter.wait(0.005)
    assert amplitude.get("/api/2/users", params=params).status_code == 429
    slow.join(5)
    assert results == [200]


def _segmentation(amplitude: httpx2.Client, event_type: str, **params: str) -> httpx2.Response:
    query = {"e": json.dumps({"event_type": event_type}), "start": "20251001", "end": "20251031", **params}
    return amplitude.get("/api/2/events/segmentation", params=query)


def test_event_segmentation_totals_and_uniques_match_the_dataset_per_bucket(
    amplitude: httpx2.Client, dataset: Dataset
) -> None:
    start, end = date(2025, 10, 1), date(2025, 10, 31)
    events = [e for e in dataset.events if e.event_type == "View Paywall" and start <= e.event_time.date() <= end]
    totals = _segmentation(amplitude, "View Paywall", m="totals", i="7")
    assert totals.status_code == 200, totals.text
    data = totals.json()["data"]
    assert data["xValues"][0] == "2025-10-01" and data["xValues"][1] == "2025-10-06"  # Monday weeks, clipped
    assert sum(data["series"][0]) == len(events) > 0
    assert data["seriesCollapsed"][0][0]["value"] == len(events)
    first_week = [e for e in events if e.event_time.date() < date(2025, 10, 6)]
    assert data["series"][0][0] == len(first_week)
    uniques = _segmentation(amplitude, "View Paywall", i="30").json()["data"]  # m=uniques is the default
    assert uniques["series"] == [[len({e.amplitude_id for e in events})]]


def test_event_segmentation_of_an_event_never_tracked_is_all_zeros(amplitude: httpx2.Client) -> None:
    response = _segmentation(amplitude, "Sign Upp", m="totals", i="1")
    assert response.status_code == 200
    series = response.json()["data"]["series"]
    assert len(series) == 1 and len(series[0]) == 31 and set(series[0]) == {0}


@pytest.mark.parametrize(
    "params",
    [
        {"m": "pct_dau"},
        {"start": "2025-10-01"},
        {"start": "20251101"},
        {"i": "2"},
        {"s": "{"},
        {"g": "country"},
        {"e": "not json"},
        {"e": json.dumps({"filters": []})},
    ],
)
def test_event_segmentation_rejects_what_it_does_not_emulate_or_cannot_read_with_400(
    amplitude: httpx2.Client, params: dict[str, str]
) -> None:
    response = _segmentation(amplitude, "Sign Up", **params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/plain")


def test_event_segmentation_requires_auth_and_takes_injected_faults(
    amplitude: httpx2.Client, anonymous: httpx2.Client, state: SandboxState
) -> None:
    query = {"e": json.dumps({"event_type": "Sign Up"}), "start": "20251001", "end": "20251031"}
    assert anonymous.get("/api/2/events/segmentation", params=query).status_code == 401
    state.inject("amplitude.segmentation", FaultSpec(status=503, times=1))
    assert _segmentation(amplitude, "Sign Up").status_code == 503
    assert _segmentation(amplitude, "Sign Up").status_code == 200
    assert state.counts["amplitude.segmentation"] == 3
