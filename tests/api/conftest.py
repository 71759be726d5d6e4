"""Fixtures of the REST-face tests: apps built from explicit settings, bearer headers and problem-details checks.

Apps are module-scoped where nothing a test does can change what the next one sees (a `TestClient` lifespan costs
~0.3 s); tests that inject faults build a fresh app, because an app remembers results (its cache) and upstream
429s (its budgets). The sandbox's counters, faults and rate-limit windows are cleared around every test.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx2
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from shared.models import kpi as m
from shared.runtime import sandbox_settings
from shared.sandbox import SandboxServer, SandboxState
from shared.settings import Settings
from tests.conftest import JWT_SECRET, clock, token

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE = "https://loop-kpi.dev/problems/"
REFUND_BODY: Mapping[str, Any] = {"start_date": "2026-09-01", "end_date": "2026-10-31"}
_CHALLENGE_PARAM = re.compile(r'([A-Za-z_]+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Route:
    """One KPI operation: how to call it and the model its 200 body validates into."""

    operation_id: str
    method: Literal["GET", "POST"]
    path: str
    model: type[m.ResultMeta]
    body: Mapping[str, Any] | None = field(default=None)


ROUTES: tuple[Route, ...] = (
    Route("kpi_overview", "GET", "/api/kpi/overview", m.OverviewResult),
    Route("kpi_mau", "GET", "/api/kpi/mau", m.MauResult),
    Route("kpi_conversion", "GET", "/api/kpi/conversion", m.ConversionResult),
    Route("kpi_user_journey", "GET", "/api/kpi/user/user_00042", m.JourneyResult),
    Route("kpi_refund_analysis", "POST", "/api/kpi/refund-analysis", m.RefundAnalysisResult, REFUND_BODY),
)
ROUTE_IDS = [route.operation_id for route in ROUTES]


# The upstream budgets are real (Amplitude: 1,000 cost per 5 minutes; RevenueCat charts: 5 a minute until its
# headers say otherwise) but would make an app's later requests wait or fail on what earlier tests spent; the tests
# of the budgets themselves set their own.
ROOMY_BUDGETS: Mapping[str, int] = {
    "KPI_AMPLITUDE_COST_PER_5MIN": 1_000_000,
    "KPI_AMPLITUDE_COST_PER_HOUR": 1_000_000,
    "KPI_AMPLITUDE_USER_QUERIES_PER_HOUR": 1_000_000,
    "KPI_REVENUECAT_CHARTS_RPM": 1_000_000,
}
SANDBOX_CHARTS_RPM = 10_000


def build_settings(sandbox_url: str, **overrides: Any) -> Settings:
    """The `make_settings` settings for module-scoped apps: the session sandbox, the test secret, no environment."""
    with pytest.MonkeyPatch.context() as patch:
        for name in Settings.model_fields:
            patch.delenv(name, raising=False)
        patch.setitem(Settings.model_config, "env_file", None)
        base = Settings.model_validate({"KPI_JWT_SECRET": JWT_SECRET})
        configured = sandbox_settings(base, sandbox_url).model_dump()
        return Settings.model_validate({**configured, **ROOMY_BUDGETS, **overrides})


@contextmanager
def serve(settings: Settings, *, raise_server_exceptions: bool = True) -> Generator[TestClient]:
    """A client of `create_app(settings)` on the fixed clock, with the lifespan running."""
    app = create_app(settings, clock=clock)
    with TestClient(app, raise_server_exceptions=raise_server_exceptions) as client:
        yield client


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def reader() -> dict[str, str]:
    """Headers of a caller with `kpi:read` (for apps without issuer/audience)."""
    return bearer(token())


def call(
    client: TestClient,
    route: Route,
    *,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
) -> httpx2.Response:
    if route.method == "POST":
        return client.post(route.path, json=dict(route.body or {}), headers=headers, params=params)
    return client.get(route.path, headers=headers, params=params)


def assert_problem(response: httpx2.Response, status: int) -> dict[str, Any]:
    """Assert an RFC 9457 problem of `status` and return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    for name in ("type", "title", "detail"):
        assert isinstance(body[name], str)
        assert body[name]
    return body


def problem_fields(body: Mapping[str, Any]) -> set[str]:
    """The `field` names of a 422 problem's `errors`."""
    errors: list[dict[str, Any]] = body["errors"]
    return {str(error["field"]) for error in errors}


def parse_challenge(value: str) -> tuple[str, dict[str, str]]:
    """The scheme and auth-params of a single `WWW-Authenticate` challenge; fails on anything unparsed."""
    scheme, _, rest = value.partition(" ")
    params = {name: raw.replace('\\"', '"').replace("\\\\", "\\") for name, raw in _CHALLENGE_PARAM.findall(rest)}
    leftover = _CHALLENGE_PARAM.sub("", rest).replace(",", "").strip()
    assert leftover == "", f"unparsed challenge text: {leftover!r}"
    return scheme, params


@pytest.fixture(autouse=True)
def clean_sandbox(sandbox: SandboxState) -> Iterator[SandboxState]:
    """Every REST test starts with no faults, zero counters and fresh upstream rate-limit windows.

    The sandbox's charts limit is UNCONFIRMED upstream (5 or 25 per minute); apps adopt whatever the sandbox's
    rate-limit headers say, so a roomy one keeps a module-scoped app's budget from carrying over between tests.
    """
    charts_rpm = sandbox.charts_rpm
    sandbox.charts_rpm = SANDBOX_CHARTS_RPM
    try:
        yield sandbox
    finally:
        sandbox.charts_rpm = charts_rpm


@pytest.fixture
def sandbox_url(sandbox_server: SandboxServer) -> str:
    return sandbox_server.base_url


@pytest.fixture(scope="module")
def client(sandbox_server: SandboxServer) -> Iterator[TestClient]:
    """The default app: both sources configured against the sandbox, HS256 test secret, no issuer/audience."""
    with serve(build_settings(sandbox_server.base_url)) as opened:
        yield opened
