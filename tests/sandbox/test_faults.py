import httpx2
import pytest

from shared.sandbox import FaultSpec, SandboxServer, SandboxState

from .conftest import PROJECT

USERS = {"start": "20250101", "end": "20250101"}


def test_latency_longer_than_the_client_timeout_times_out(server: SandboxServer, state: SandboxState) -> None:
    state.inject("revenuecat.overview", FaultSpec(latency=0.3, times=1))
    headers = {"Authorization": f"Bearer {state.revenuecat_api_key}"}
    with (
        httpx2.Client(base_url=server.base_url, headers=headers, timeout=0.05) as client,
        pytest.raises(httpx2.TimeoutException),
    ):
        client.get(f"{PROJECT}/metrics/overview")


def test_reset_drops_the_connection(amplitude: httpx2.Client, state: SandboxState) -> None:
    state.inject("amplitude.users", FaultSpec(reset=True, times=1))
    with pytest.raises((httpx2.RemoteProtocolError, httpx2.ReadError)):
        amplitude.get("/api/2/users", params=USERS)
    assert amplitude.get("/api/2/users", params=USERS).status_code == 200


def test_malformed_json_and_wrong_shape_answer_200(revenuecat: httpx2.Client, state: SandboxState) -> None:
    state.inject("revenuecat.customer", FaultSpec(malformed_json=True, times=1))
    broken = revenuecat.get(f"{PROJECT}/customers/anyone")
    assert broken.status_code == 200
    with pytest.raises(ValueError, match="Expecting"):
        broken.json()
    state.inject("revenuecat.customer", FaultSpec(wrong_shape=True, times=1))
    assert revenuecat.get(f"{PROJECT}/customers/anyone").json() == {"unexpected": True}


def test_injected_429_carries_retry_after_only_when_asked(revenuecat: httpx2.Client, state: SandboxState) -> None:
    state.inject("revenuecat.chart_options", FaultSpec(status=429, retry_after=7, times=1))
    with_header = revenuecat.get(f"{PROJECT}/charts/revenue/options")
    assert with_header.status_code == 429
    assert with_header.headers["Retry-After"] == "7"
    assert with_header.json()["type"] == "rate_limit_error"
    assert with_header.json()["backoff_ms"] == 7000
    state.inject("revenuecat.chart_options", FaultSpec(status=429, times=1))
    without = revenuecat.get(f"{PROJECT}/charts/revenue/options")
    assert without.status_code == 429
    assert "Retry-After" not in without.headers


def test_injected_5xx_uses_each_vendors_error_shape(
    amplitude: httpx2.Client, revenuecat: httpx2.Client, state: SandboxState
) -> None:
    state.inject("*", FaultSpec(status=503))
    amp = amplitude.get("/api/2/users", params=USERS)
    assert amp.status_code == 503
    assert amp.headers["content-type"].startswith("text/plain")
    rc = revenuecat.get(f"{PROJECT}/metrics/overview")
    assert rc.status_code == 503
    assert rc.json()["type"] == "server_error"
    assert rc.json()["retryable"] is True
    v1 = revenuecat.get("/v1/subscribers/someone")
    assert set(v1.json()) == {"code", "message"}


def test_times_n_applies_to_the_next_n_requests_then_clears(amplitude: httpx2.Client, state: SandboxState) -> None:
    state.inject("amplitude.*", FaultSpec(status=500, times=2))
    statuses = [amplitude.get("/api/2/users", params=USERS).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]


def test_specific_fault_wins_over_wildcard_and_clear_removes_all(amplitude: httpx2.Client, state: SandboxState) -> None:
    state.inject("*", FaultSpec(status=500))
    state.inject("amplitude.users", FaultSpec(status=502))
    assert amplitude.get("/api/2/users", params=USERS).status_code == 502
    state.clear_faults()
    assert amplitude.get("/api/2/users", params=USERS).status_code == 200


def test_slow_body_still_delivers_the_full_body(amplitude: httpx2.Client, state: SandboxState) -> None:
    state.inject("amplitude.usersearch", FaultSpec(slow_body=0.2, times=1))
    response = amplitude.get("/api/2/usersearch", params={"user": "user_00001"})
    assert response.json()["type"] == "match_user_or_device_id"
    assert response.elapsed.total_seconds() >= 0.15


def test_counters_count_every_request_including_faulted_ones(amplitude: httpx2.Client, state: SandboxState) -> None:
    state.inject("amplitude.users", FaultSpec(status=500, times=1))
    amplitude.get("/api/2/users", params=USERS)
    amplitude.get("/api/2/users", params=USERS)
    amplitude.get("/api/2/usersearch", params={"user": "x"})
    assert state.counts == {"amplitude.users": 2, "amplitude.usersearch": 1}
    state.reset_counts()
    assert state.counts == {}


def test_unknown_fault_endpoint_is_rejected(state: SandboxState) -> None:
    with pytest.raises(ValueError, match="unknown endpoint"):
        state.inject("amplitude.nope", FaultSpec(status=500))


def test_control_endpoints_inject_report_and_reset(anonymous: httpx2.Client, amplitude: httpx2.Client) -> None:
    assert anonymous.get("/_sandbox/health").status_code == 200
    injected = anonymous.post("/_sandbox/faults", json={"endpoint": "amplitude.users", "status": 500, "times": 1})
    assert injected.status_code == 201
    assert amplitude.get("/api/2/users", params=USERS).status_code == 500
    assert anonymous.get("/_sandbox/stats").json() == {"counts": {"amplitude.users": 1}}
    assert (
        anonymous.post("/_sandbox/faults", json={"endpoint": "amplitude.users", "latency": "slow"}).status_code == 400
    )
    anonymous.post("/_sandbox/faults", json={"endpoint": "*", "status": 500})
    assert anonymous.delete("/_sandbox/faults").status_code == 200
    assert amplitude.get("/api/2/users", params=USERS).status_code == 200
    assert anonymous.post("/_sandbox/reset").status_code == 200
    assert anonymous.get("/_sandbox/stats").json() == {"counts": {}}
