"""Everything that is not a 200 leaves as a problem+json with the right status: unconfigured sources, bad input,
unknown users and paths, and upstream faults injected in the sandbox. Also the probes and the sandbox marker."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.routes.health import Readiness
from shared.models import kpi as m
from shared.sandbox import (
    SANDBOX_AMPLITUDE_API_KEY,
    SANDBOX_AMPLITUDE_SECRET_KEY,
    SANDBOX_REVENUECAT_API_KEY,
    FaultSpec,
    SandboxServer,
    SandboxState,
)
from shared.services.kpi import KpiService
from shared.settings import Settings

from .conftest import (
    PROBLEM_TYPE,
    REFUND_BODY,
    ROUTE_IDS,
    ROUTES,
    Route,
    assert_problem,
    build_settings,
    call,
    problem_fields,
    reader,
    serve,
)

Source = Literal["amplitude", "revenuecat"]
ENV_NAMES: Mapping[Source, tuple[str, str]] = {
    "amplitude": ("AMPLITUDE_API_KEY", "AMPLITUDE_SECRET_KEY"),
    "revenuecat": ("REVENUECAT_API_KEY", "REVENUECAT_PROJECT_ID"),
}
UNCONFIGURED: Mapping[Source, dict[str, Any]] = {
    "amplitude": {"AMPLITUDE_API_KEY": None},
    "revenuecat": {"REVENUECAT_PROJECT_ID": ""},
}
NEEDS: Mapping[str, frozenset[Source]] = {
    "kpi_overview": frozenset({"amplitude", "revenuecat"}),
    "kpi_mau": frozenset({"amplitude"}),
    "kpi_conversion": frozenset({"amplitude"}),
    "kpi_user_journey": frozenset({"amplitude", "revenuecat"}),
    "kpi_refund_analysis": frozenset({"revenuecat"}),
}
UPSTREAM_TIMEOUT = 0.3
MAU = next(route for route in ROUTES if route.operation_id == "kpi_mau")
REFUNDS = next(route for route in ROUTES if route.operation_id == "kpi_refund_analysis")
OVERVIEW = next(route for route in ROUTES if route.operation_id == "kpi_overview")


@pytest.fixture(scope="module")
def without(sandbox_server: SandboxServer) -> Iterator[dict[Source, TestClient]]:
    """One app per source, in which that source is not configured."""
    with (
        serve(build_settings(sandbox_server.base_url, **UNCONFIGURED["amplitude"])) as no_amplitude,
        serve(build_settings(sandbox_server.base_url, **UNCONFIGURED["revenuecat"])) as no_revenuecat,
    ):
        yield {"amplitude": no_amplitude, "revenuecat": no_revenuecat}


@pytest.fixture(scope="module")
def sandboxed(sandbox_server: SandboxServer) -> Iterator[TestClient]:
    """An app in sandbox mode, using the session sandbox."""
    url = sandbox_server.base_url
    with serve(build_settings(url, KPI_SANDBOX=True, KPI_SANDBOX_URL=url)) as opened:
        yield opened


# ---------------------------------------------------------------------------------------------- unconfigured


@pytest.mark.parametrize("source", ["amplitude", "revenuecat"])
@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_a_route_answers_503_naming_an_unconfigured_source_it_needs_and_200_otherwise(
    without: dict[Source, TestClient], route: Route, source: Source
) -> None:
    response = call(without[source], route, headers=reader())

    if source not in NEEDS[route.operation_id]:
        assert response.status_code == 200, response.text
        return
    body = assert_problem(response, 503)
    assert body["type"] == PROBLEM_TYPE + "source-not-configured"
    assert body["source"] == source
    for name in ENV_NAMES[source]:
        assert name in body["detail"]


def test_conversion_without_revenuecat_has_no_trial_conversion(without: dict[Source, TestClient]) -> None:
    response = without["revenuecat"].get("/api/kpi/conversion", headers=reader())

    result = m.ConversionResult.model_validate(response.json())
    assert result.trial_conversion is None
    assert [s.source for s in result.sources] == ["amplitude"]
    assert result.partial is False


# ---------------------------------------------------------------------------------------------- bad input


@dataclass(frozen=True)
class BadInput:
    name: str
    path: str
    field: str
    params: tuple[tuple[str, str], ...] = ()
    body: Mapping[str, Any] | None = None


def _refund(**changes: Any) -> dict[str, Any]:
    return {**REFUND_BODY, **changes}


BAD_INPUTS: tuple[BadInput, ...] = (
    BadInput("overview as_of in the future", "/api/kpi/overview", "as_of", (("as_of", "2026-11-21"),)),
    BadInput("overview as_of not a date", "/api/kpi/overview", "as_of", (("as_of", "yesterday"),)),
    BadInput("overview unknown parameter", "/api/kpi/overview", "currency", (("currency", "EUR"),)),
    BadInput("mau end_month in the future", "/api/kpi/mau", "end_month", (("end_month", "2026-12-01"),)),
    BadInput(
        "mau start after end",
        "/api/kpi/mau",
        "start_month",
        (("start_month", "2026-10-01"), ("end_month", "2026-09-01")),
    ),
    BadInput("mau more than 36 months", "/api/kpi/mau", "start_month", (("start_month", "2023-01-01"),)),
    BadInput("mau unknown parameter", "/api/kpi/mau", "month", (("month", "2026-10"),)),
    BadInput("conversion end_date in the future", "/api/kpi/conversion", "end_date", (("end_date", "2026-11-21"),)),
    BadInput(
        "conversion start after end",
        "/api/kpi/conversion",
        "start_date",
        (("start_date", "2026-11-10"), ("end_date", "2026-11-01")),
    ),
    BadInput(
        "conversion eleven steps", "/api/kpi/conversion", "steps", tuple(("steps", f"Step {i}") for i in range(11))
    ),
    BadInput("conversion one step", "/api/kpi/conversion", "steps", (("steps", "Sign Up"),)),
    BadInput(
        "conversion window of 0 days",
        "/api/kpi/conversion",
        "conversion_window_days",
        (("conversion_window_days", "0"),),
    ),
    BadInput("conversion unknown mode", "/api/kpi/conversion", "mode", (("mode", "backwards"),)),
    BadInput("conversion unknown parameter", "/api/kpi/conversion", "step", (("step", "Sign Up"),)),
    BadInput("user id with a space", "/api/kpi/user/user%2000042", "user_id"),
    BadInput("user id of 300 characters", "/api/kpi/user/" + "u" * 300, "user_id"),
    BadInput(
        "refund end_date in the future", "/api/kpi/refund-analysis", "end_date", body=_refund(end_date="2026-11-21")
    ),
    BadInput(
        "refund start after end",
        "/api/kpi/refund-analysis",
        "start_date",
        body=_refund(start_date="2026-10-31", end_date="2026-09-01"),
    ),
    BadInput("refund without end_date", "/api/kpi/refund-analysis", "end_date", body={"start_date": "2026-09-01"}),
    BadInput(
        "refund 101 user ids",
        "/api/kpi/refund-analysis",
        "user_ids",
        body=_refund(user_ids=[f"user_{i:05d}" for i in range(101)]),
    ),
    BadInput(
        "refund user id with a space", "/api/kpi/refund-analysis", "user_ids.0", body=_refund(user_ids=["user 1"])
    ),
    BadInput("refund unknown resolution", "/api/kpi/refund-analysis", "resolution", body=_refund(resolution="year")),
    BadInput("refund segment not offered", "/api/kpi/refund-analysis", "segment", body=_refund(segment="planet")),
    BadInput("refund segment malformed", "/api/kpi/refund-analysis", "segment", body=_refund(segment="Store!")),
    BadInput("refund unknown field", "/api/kpi/refund-analysis", "currency", body=_refund(currency="EUR")),
)


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[bad.name for bad in BAD_INPUTS])
def test_bad_input_is_a_422_problem_naming_the_field(client: TestClient, bad: BadInput) -> None:
    if bad.body is not None:
        response = client.post(bad.path, json=dict(bad.body), headers=reader())
    else:
        response = client.get(bad.path, params=bad.params, headers=reader())

    body = assert_problem(response, 422)
    assert body["type"] == PROBLEM_TYPE + "invalid-input"
    assert bad.field in problem_fields(body)


def test_a_malformed_json_body_is_a_422_problem(client: TestClient) -> None:
    response = client.post(
        "/api/kpi/refund-analysis",
        content=b'{"start_date": "2026-09-01",',
        headers={**reader(), "Content-Type": "application/json"},
    )

    body = assert_problem(response, 422)
    assert body["type"] == PROBLEM_TYPE + "invalid-input"


def test_a_malformed_json_body_names_the_body_as_the_invalid_field(client: TestClient) -> None:
    response = client.post(
        "/api/kpi/refund-analysis",
        content=b'{"start_date": "2026-09-01",',
        headers={**reader(), "Content-Type": "application/json"},
    )

    body = assert_problem(response, 422)
    assert problem_fields(body) == {"body"}


def test_an_unauthenticated_malformed_body_is_refused_as_unauthenticated(client: TestClient) -> None:
    response = client.post("/api/kpi/refund-analysis", content=b"{", headers={"Content-Type": "application/json"})

    assert_problem(response, 401)


def test_an_oversized_refund_body_is_a_413_problem(client: TestClient) -> None:
    body = _refund(user_ids=["user_00001"] * 300_000)

    response = client.post("/api/kpi/refund-analysis", json=body, headers=reader())

    assert_problem(response, 413)


def test_validation_problems_come_before_any_upstream_call(client: TestClient, sandbox: SandboxState) -> None:
    response = client.get("/api/kpi/mau", params={"end_month": "2027-01-01"}, headers=reader())

    assert_problem(response, 422)
    assert sandbox.counts == {}


# ---------------------------------------------------------------------------------------------- not found


def test_an_unknown_user_is_a_404_problem(client: TestClient) -> None:
    response = client.get("/api/kpi/user/nobody_here", headers=reader())

    body = assert_problem(response, 404)
    assert body["type"] == PROBLEM_TYPE + "not-found"


def test_a_user_id_with_a_slash_reaches_the_journey_route(client: TestClient) -> None:
    response = client.get("/api/kpi/user/team%2Fnobody_here", headers=reader())

    body = assert_problem(response, 404)
    assert body["type"] == PROBLEM_TYPE + "not-found"


def test_an_unknown_path_is_a_404_problem(client: TestClient) -> None:
    response = client.get("/api/kpi/revenue", headers=reader())

    assert_problem(response, 404)


def test_a_wrong_method_is_a_405_problem_with_allow(client: TestClient) -> None:
    response = client.post("/api/kpi/overview", headers=reader())

    assert_problem(response, 405)
    assert response.headers["Allow"] == "GET"


def test_an_unexpected_error_is_a_bare_500_problem(
    sandbox_server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fail(self: KpiService, query: m.MauQuery) -> m.MauResult:
        raise RuntimeError("internal-detail-that-must-not-leak")

    monkeypatch.setattr(KpiService, "mau", fail)
    with serve(build_settings(sandbox_server.base_url), raise_server_exceptions=False) as opened:
        response = opened.get("/api/kpi/mau", headers=reader())

    body = assert_problem(response, 500)
    assert "internal-detail-that-must-not-leak" not in response.text
    assert set(body) == {"type", "title", "status", "detail"}


# ---------------------------------------------------------------------------------------------- upstream faults
# Each fault test gets a fresh app: an app caches results (partial ones for 30 s) and blocks a source's budget for
# as long as an upstream 429 said, either of which would leak into the next test. Faults persist (no `times`), so
# the client's retries meet them too; a Retry-After above KPI_RETRY_MAX_WAIT (10 s) is not waited out.


@pytest.fixture
def impatient(sandbox_url: str) -> Iterator[TestClient]:
    """A fresh app that gives each upstream request only `UPSTREAM_TIMEOUT` seconds."""
    with serve(build_settings(sandbox_url, KPI_UPSTREAM_TIMEOUT=UPSTREAM_TIMEOUT)) as opened:
        yield opened


@pytest.fixture
def fresh(sandbox_url: str) -> Iterator[TestClient]:
    """A fresh app with the default timeouts and retries."""
    with serve(build_settings(sandbox_url)) as opened:
        yield opened


@dataclass(frozen=True)
class Fault:
    name: str
    endpoint: str
    spec: FaultSpec
    route: Route
    status: int
    slug: str
    source: Source
    retry_after: int | None = None


FAULTS: tuple[Fault, ...] = (
    Fault("amplitude 500", "amplitude.users", FaultSpec(status=500), MAU, 502, "upstream-failure", "amplitude"),
    Fault("revenuecat 500", "revenuecat.chart", FaultSpec(status=500), REFUNDS, 502, "upstream-failure", "revenuecat"),
    Fault(
        "revenuecat slower than the timeout",
        "revenuecat.*",
        FaultSpec(latency=2.0),
        REFUNDS,
        504,
        "upstream-timeout",
        "revenuecat",
    ),
    Fault(
        "amplitude 429",
        "amplitude.users",
        FaultSpec(status=429, retry_after=30),
        MAU,
        503,
        "upstream-rate-limited",
        "amplitude",
        30,
    ),
    Fault(
        "revenuecat 429",
        "revenuecat.chart",
        FaultSpec(status=429, retry_after=45),
        REFUNDS,
        503,
        "upstream-rate-limited",
        "revenuecat",
        45,
    ),
    Fault(
        "amplitude 401",
        "amplitude.users",
        FaultSpec(status=401),
        MAU,
        502,
        "upstream-credentials-rejected",
        "amplitude",
    ),
    Fault(
        "revenuecat 401",
        "revenuecat.*",
        FaultSpec(status=401),
        REFUNDS,
        502,
        "upstream-credentials-rejected",
        "revenuecat",
    ),
    Fault(
        "revenuecat 403",
        "revenuecat.*",
        FaultSpec(status=403),
        REFUNDS,
        502,
        "upstream-credentials-rejected",
        "revenuecat",
    ),
    Fault(
        "amplitude malformed json",
        "amplitude.users",
        FaultSpec(malformed_json=True),
        MAU,
        502,
        "upstream-failure",
        "amplitude",
    ),
    Fault(
        "revenuecat malformed json",
        "revenuecat.chart",
        FaultSpec(malformed_json=True),
        REFUNDS,
        502,
        "upstream-failure",
        "revenuecat",
    ),
    Fault(
        "amplitude wrong shape",
        "amplitude.users",
        FaultSpec(wrong_shape=True),
        MAU,
        502,
        "upstream-failure",
        "amplitude",
    ),
    Fault(
        "revenuecat connection reset",
        "revenuecat.chart",
        FaultSpec(reset=True),
        REFUNDS,
        502,
        "upstream-failure",
        "revenuecat",
    ),
)


@pytest.mark.parametrize("fault", FAULTS, ids=[fault.name for fault in FAULTS])
def test_an_upstream_fault_becomes_the_matching_problem(
    impatient: TestClient, sandbox: SandboxState, fault: Fault
) -> None:
    sandbox.inject(fault.endpoint, fault.spec)

    with _within(4.0):  # three attempts of 0.3 s plus backoff; waiting out the upstream would take 6 s
        response = call(impatient, fault.route, headers=reader())

    body = assert_problem(response, fault.status)
    assert body["type"] == PROBLEM_TYPE + fault.slug
    assert body["source"] == fault.source
    if fault.retry_after is None:
        assert "Retry-After" not in response.headers
    else:
        assert response.headers["Retry-After"] == str(fault.retry_after)
        assert body["retry_after"] == fault.retry_after
    for secret in (SANDBOX_AMPLITUDE_API_KEY, SANDBOX_AMPLITUDE_SECRET_KEY, SANDBOX_REVENUECAT_API_KEY):
        assert secret not in response.text


@pytest.fixture
def amplitude_drained(sandbox: SandboxState) -> Iterator[None]:
    """Afterwards, wait until the sandbox has answered the requests our client gave up on: until then each holds
    one of Amplitude's five concurrency slots, and the next test could meet a 429."""
    yield
    gate = sandbox.amplitude_gate
    deadline = time.monotonic() + 5.0
    idle = threading.Event()
    while gate._in_flight:
        assert time.monotonic() < deadline, "the sandbox kept Amplitude requests in flight"
        idle.wait(0.02)


@pytest.mark.usefixtures("amplitude_drained")
def test_amplitude_slower_than_the_timeout_is_a_504_problem(impatient: TestClient, sandbox: SandboxState) -> None:
    sandbox.inject("amplitude.users", FaultSpec(latency=1.0))

    with _within(2.9):  # three attempts of 0.3 s plus backoff; waiting out the upstream would take 3 s
        response = impatient.get("/api/kpi/mau", headers=reader())

    body = assert_problem(response, 504)
    assert body["type"] == PROBLEM_TYPE + "upstream-timeout"
    assert body["source"] == "amplitude"


def test_a_slow_revenuecat_is_a_504_even_when_retries_spend_the_budget(sandbox_url: str, sandbox: SandboxState) -> None:
    sandbox.inject("revenuecat.*", FaultSpec(latency=2.0))
    # 2 a minute makes the first retry meet the spent budget; with the default 5 it is the sixth request, which
    # usually (not always, depending on the retry jitter) comes before either branch has given up.
    settings = build_settings(
        sandbox_url, KPI_UPSTREAM_TIMEOUT=UPSTREAM_TIMEOUT, KPI_REVENUECAT_CHARTS_RPM=2, KPI_CALLER_BUDGET_SHARE=1
    )

    with serve(settings) as opened:
        response = call(opened, REFUNDS, headers=reader())

    body = assert_problem(response, 504)
    assert body["type"] == PROBLEM_TYPE + "upstream-timeout"


def test_rejected_credentials_are_not_retried(fresh: TestClient, sandbox: SandboxState) -> None:
    sandbox.inject("amplitude.users", FaultSpec(status=401))

    assert_problem(fresh.get("/api/kpi/mau", headers=reader()), 502)

    assert sandbox.counts["amplitude.users"] == 1


def test_a_transient_upstream_failure_is_retried_away(fresh: TestClient, sandbox: SandboxState) -> None:
    sandbox.inject("amplitude.users", FaultSpec(status=500, times=1))

    response = fresh.get("/api/kpi/mau", headers=reader())

    assert response.status_code == 200, response.text
    assert sandbox.counts["amplitude.users"] == 2


def test_an_operation_over_its_deadline_is_a_504_problem(sandbox_url: str, sandbox: SandboxState) -> None:
    sandbox.inject("revenuecat.*", FaultSpec(latency=2.0))
    settings = build_settings(sandbox_url, KPI_REQUEST_DEADLINE=0.5, KPI_UPSTREAM_TIMEOUT=5.0)

    with serve(settings) as opened, _within(1.9):
        response = call(opened, REFUNDS, headers=reader())

    body = assert_problem(response, 504)
    assert body["type"] == PROBLEM_TYPE + "deadline-exceeded"


def test_a_spent_upstream_budget_is_a_503_with_retry_after_and_no_upstream_call(
    sandbox_url: str, sandbox: SandboxState
) -> None:
    # A 6-month MAU costs ~183 units: the first fits the 300 a window holds, the second does not.
    settings = build_settings(
        sandbox_url, KPI_AMPLITUDE_COST_PER_5MIN=300, KPI_MAX_REQUEST_COST_SHARE=1, KPI_CALLER_BUDGET_SHARE=1
    )
    with serve(settings) as opened:
        first = opened.get("/api/kpi/mau", headers=reader())
        calls = sandbox.counts.get("amplitude.users", 0)
        second = opened.get("/api/kpi/mau", params={"end_month": "2026-10-01"}, headers=reader())

    assert first.status_code == 200, first.text
    body = assert_problem(second, 503)
    assert body["type"] == PROBLEM_TYPE + "upstream-rate-limited"
    assert body["source"] == "amplitude"
    assert int(second.headers["Retry-After"]) == body["retry_after"] > 0
    assert sandbox.counts.get("amplitude.users", 0) == calls


def test_overview_with_only_revenuecat_failing_is_partial(fresh: TestClient, sandbox: SandboxState) -> None:
    sandbox.inject("revenuecat.*", FaultSpec(status=500))

    response = call(fresh, OVERVIEW, headers=reader())

    assert response.status_code == 200, response.text
    result = m.OverviewResult.model_validate(response.json())
    assert result.partial is True
    assert result.amplitude is not None
    assert result.revenuecat is None
    statuses = {s.source: s for s in result.sources}
    assert statuses["amplitude"].status == "ok"
    assert statuses["revenuecat"].status == "error"
    error = statuses["revenuecat"].error
    assert error is not None
    assert (error.status, error.type) == (502, PROBLEM_TYPE + "upstream-failure")


def test_overview_with_revenuecat_rate_limited_is_partial_with_retry_after(
    fresh: TestClient, sandbox: SandboxState
) -> None:
    sandbox.inject("revenuecat.overview", FaultSpec(status=429, retry_after=40))

    result = m.OverviewResult.model_validate(call(fresh, OVERVIEW, headers=reader()).json())

    assert result.partial is True
    error = {s.source: s for s in result.sources}["revenuecat"].error
    assert error is not None
    assert (error.status, error.retry_after) == (503, 40)


def test_overview_with_only_amplitude_failing_is_partial(fresh: TestClient, sandbox: SandboxState) -> None:
    sandbox.inject("amplitude.*", FaultSpec(status=500))

    response = call(fresh, OVERVIEW, headers=reader())

    result = m.OverviewResult.model_validate(response.json())
    assert result.partial is True
    assert result.amplitude is None
    assert result.revenuecat is not None


def test_overview_with_both_sources_failing_is_an_error(fresh: TestClient, sandbox: SandboxState) -> None:
    sandbox.inject("*", FaultSpec(status=500))

    response = call(fresh, OVERVIEW, headers=reader())

    body = assert_problem(response, 502)
    assert body["type"] == PROBLEM_TYPE + "upstream-failure"


def test_overview_does_not_hide_rejected_credentials_behind_partial(fresh: TestClient, sandbox: SandboxState) -> None:
    sandbox.inject("revenuecat.*", FaultSpec(status=401))

    response = call(fresh, OVERVIEW, headers=reader())

    body = assert_problem(response, 502)
    assert body["type"] == PROBLEM_TYPE + "upstream-credentials-rejected"
    assert body["source"] == "revenuecat"


def test_journey_with_revenuecat_failing_keeps_the_amplitude_part(fresh: TestClient, sandbox: SandboxState) -> None:
    sandbox.inject("revenuecat.*", FaultSpec(status=500))

    response = fresh.get("/api/kpi/user/user_00042", headers=reader())

    result = m.JourneyResult.model_validate(response.json())
    assert result.partial is True
    assert result.amplitude is not None
    assert {s.source: s.status for s in result.sources} == {"amplitude": "ok", "revenuecat": "error"}


def test_conversion_with_revenuecat_failing_keeps_the_funnel(fresh: TestClient, sandbox: SandboxState) -> None:
    sandbox.inject("revenuecat.*", FaultSpec(status=500))

    response = fresh.get("/api/kpi/conversion", headers=reader())

    result = m.ConversionResult.model_validate(response.json())
    assert result.partial is True
    assert result.trial_conversion is None
    assert len(result.steps) == 4


def test_refunds_with_a_failed_customer_lookup_are_marked_partial(fresh: TestClient, sandbox: SandboxState) -> None:
    sandbox.inject("revenuecat.customer", FaultSpec(status=500))

    response = fresh.post("/api/kpi/refund-analysis", json=_refund(user_ids=["user_00601"]), headers=reader())

    result = m.RefundAnalysisResult.model_validate(response.json())
    assert result.customers is not None
    assert result.customers[0].error is not None
    assert result.partial is True


# ---------------------------------------------------------------------------------------------- probes and sandbox


def test_healthz_answers_without_auth(client: TestClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_shows_both_sources_configured_and_reachable(client: TestClient) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200
    readiness = Readiness.model_validate(response.json())
    assert readiness.status == "ready"
    assert [(s.source, s.configured, s.reachable) for s in readiness.sources] == [
        ("amplitude", True, True),
        ("revenuecat", True, True),
    ]


def test_readyz_shows_an_unconfigured_source(without: dict[Source, TestClient]) -> None:
    response = without["revenuecat"].get("/readyz")

    assert response.status_code == 200
    readiness = Readiness.model_validate(response.json())
    assert readiness.status == "degraded"
    states = {s.source: (s.configured, s.reachable) for s in readiness.sources}
    assert states == {"amplitude": (True, True), "revenuecat": (False, None)}
    (unconfigured,) = [s for s in readiness.sources if not s.configured]
    assert unconfigured.detail is not None and unconfigured.detail.startswith("not configured: set REVENUECAT_")


def test_readyz_shows_an_unreachable_source(fresh: TestClient, sandbox: SandboxState) -> None:
    sandbox.inject("amplitude.*", FaultSpec(status=401))

    response = fresh.get("/readyz")

    readiness = Readiness.model_validate(response.json())
    assert readiness.status == "degraded"
    states = {s.source: (s.configured, s.reachable) for s in readiness.sources}
    assert states == {"amplitude": (True, False), "revenuecat": (True, True)}


def test_readyz_is_down_with_no_source_configured(sandbox_server: SandboxServer) -> None:
    settings = build_settings(sandbox_server.base_url, **UNCONFIGURED["amplitude"], **UNCONFIGURED["revenuecat"])
    with serve(settings) as fresh:
        response = fresh.get("/readyz")

    assert response.status_code == 503
    assert Readiness.model_validate(response.json()).status == "down"


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_sandbox_mode_marks_every_result_as_sandbox_data(sandboxed: TestClient, route: Route) -> None:
    response = call(sandboxed, route, headers=reader())

    assert response.status_code == 200, response.text
    assert response.headers["X-KPI-Data-Source"] == "sandbox"
    assert route.model.model_validate(response.json()).data_source == "sandbox"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/api/kpi/overview", 401), ("GET", "/nope", 404), ("GET", "/healthz", 200), ("GET", "/readyz", 200)],
)
def test_sandbox_mode_marks_every_response(sandboxed: TestClient, method: str, path: str, status: int) -> None:
    response = sandboxed.request(method, path)

    assert response.status_code == status
    assert response.headers["X-KPI-Data-Source"] == "sandbox"


def test_live_mode_does_not_claim_sandbox_data(client: TestClient) -> None:
    response = call(client, OVERVIEW, headers=reader())

    assert "X-KPI-Data-Source" not in response.headers
    assert m.OverviewResult.model_validate(response.json()).data_source == "live"


def test_sandbox_mode_marks_an_unexpected_error(sandbox_server: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> None:
    async def fail(self: KpiService, query: m.MauQuery) -> m.MauResult:
        raise RuntimeError("boom")

    monkeypatch.setattr(KpiService, "mau", fail)
    url = sandbox_server.base_url
    settings = build_settings(url, KPI_SANDBOX=True, KPI_SANDBOX_URL=url)
    with serve(settings, raise_server_exceptions=False) as opened:
        response = opened.get("/api/kpi/mau", headers=reader())

    assert response.status_code == 500
    assert response.headers.get("X-KPI-Data-Source") == "sandbox"


# ---------------------------------------------------------------------------------------------- helpers


@contextmanager
def _within(seconds: float) -> Generator[None]:
    """Fail if the block took `seconds` or more (the TestClient is synchronous: no `anyio.fail_after` here)."""
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    assert elapsed < seconds, f"took {elapsed:.2f} s, more than {seconds} s"


def test_readyz_names_every_missing_upstream_variable() -> None:
    settings = Settings.model_validate({"KPI_JWT_SECRET": "x" * 40, "AMPLITUDE_API_KEY": "set"})

    with TestClient(create_app(settings)) as bare:
        response = bare.get("/readyz")

    assert response.status_code == 503
    details = {s["source"]: s["detail"] for s in response.json()["sources"]}
    assert details == {
        "amplitude": "not configured: set AMPLITUDE_SECRET_KEY",
        "revenuecat": "not configured: set REVENUECAT_API_KEY and REVENUECAT_PROJECT_ID",
    }
