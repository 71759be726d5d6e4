"""Retries as documented (idempotent GETs retried on timeouts, 5xx, resets and short 429s within the deadline; other
4xx never), on both faces, counted by the sandbox; and `/readyz` naming rejected upstream credentials."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import pytest
from fastapi import FastAPI

from shared.errors import Source
from shared.sandbox import FaultSpec, SandboxServer, SandboxState
from tests.conftest import token
from tests.server.support import rest_request

from .support import (
    assert_no_secrets,
    assert_problem,
    assert_tool_error_like,
    call_tool,
    capture_logs,
    hardened_settings,
    http_client,
    logged_text,
    running,
    tool_text,
)

UPSTREAM_TIMEOUT = 0.3
Face = Literal["rest", "mcp"]
FACES: tuple[Face, ...] = ("rest", "mcp")


@pytest.fixture(scope="module")
async def retrying_app(sandbox_server: SandboxServer) -> AsyncIterator[FastAPI]:
    """The default retries (2) and deadline, a short upstream timeout, no cache."""
    async with running(hardened_settings(sandbox_server.base_url, KPI_UPSTREAM_TIMEOUT=UPSTREAM_TIMEOUT)) as app:
        yield app


@dataclass(frozen=True)
class Probe:
    """An operation that sends exactly one request to `endpoint` when nothing fails."""

    tool: str
    arguments: Mapping[str, Any]
    endpoint: str
    source: Source


MAU = Probe("kpi_mau", {"start_month": "2026-06-01", "end_month": "2026-11-01"}, "amplitude.users", "amplitude")
OVERVIEW = Probe("kpi_overview", {"as_of": "2026-11-18"}, "revenuecat.overview", "revenuecat")
PROBES = (MAU, OVERVIEW)


async def ask(app: FastAPI, face: Face, probe: Probe) -> tuple[int, dict[str, Any], str]:
    """(status, body, text): the REST answer, or the MCP result as 200 + structured content or 0 + error text."""
    async with http_client(app, token()) as http:
        with anyio.fail_after(10):
            if face == "rest":
                method, path, kwargs = rest_request(probe.tool, probe.arguments)
                response = await http.request(method, path, **kwargs)
                return response.status_code, response.json(), response.text
            result = await call_tool(http, probe.tool, probe.arguments)
    if result.is_error:
        return 0, {}, tool_text(result)
    assert result.structured_content is not None
    return 200, result.structured_content, tool_text(result)


TRANSIENT: tuple[tuple[str, FaultSpec], ...] = (
    ("http-500", FaultSpec(status=500, times=1)),
    ("http-502", FaultSpec(status=502, times=1)),
    ("http-503", FaultSpec(status=503, times=1)),
    ("timeout", FaultSpec(latency=UPSTREAM_TIMEOUT + 0.4, times=1)),
    ("connection-reset", FaultSpec(reset=True, times=1)),
    ("429-retry-after-1", FaultSpec(status=429, retry_after=1, times=1)),
)


@pytest.mark.anyio
@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("probe", PROBES, ids=[probe.endpoint for probe in PROBES])
@pytest.mark.parametrize(("name", "spec"), TRANSIENT, ids=[name for name, _ in TRANSIENT])
async def test_a_single_transient_upstream_failure_is_retried_into_a_full_answer(
    retrying_app: FastAPI, sandbox: SandboxState, face: Face, probe: Probe, name: str, spec: FaultSpec
) -> None:
    sandbox.inject(probe.endpoint, spec)

    status, body, text = await ask(retrying_app, face, probe)

    assert status == 200, text
    assert body["partial"] is False
    assert sandbox.counts[probe.endpoint] == 2


NEVER_RETRIED = (400, 404, 401, 403, 422)


@pytest.mark.anyio
@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("status", NEVER_RETRIED)
async def test_an_upstream_client_error_is_never_retried(
    retrying_app: FastAPI, sandbox: SandboxState, face: Face, status: int
) -> None:
    sandbox.inject(MAU.endpoint, FaultSpec(status=status))

    code, _, text = await ask(retrying_app, face, MAU)

    assert code in (0, 502), text
    assert sandbox.counts[MAU.endpoint] == 1


@pytest.mark.anyio
async def test_a_client_error_from_one_overview_source_is_not_retried_and_leaves_a_partial_answer(
    retrying_app: FastAPI, sandbox: SandboxState
) -> None:
    sandbox.inject(OVERVIEW.endpoint, FaultSpec(status=400))

    status, body, text = await ask(retrying_app, "rest", OVERVIEW)

    assert status == 200, text
    assert body["partial"] is True
    assert sandbox.counts[OVERVIEW.endpoint] == 1


@pytest.mark.anyio
@pytest.mark.parametrize("face", FACES)
async def test_a_persistent_5xx_is_tried_three_times_then_reported(
    retrying_app: FastAPI, sandbox: SandboxState, face: Face
) -> None:
    sandbox.inject(MAU.endpoint, FaultSpec(status=503))
    async with http_client(retrying_app, token()) as http:
        method, path, kwargs = rest_request(MAU.tool, MAU.arguments)
        with anyio.fail_after(10):
            if face == "rest":
                assert_problem(await http.request(method, path, **kwargs), 502)
            else:
                result = await call_tool(http, MAU.tool, MAU.arguments)
                assert_tool_error_like(result, {"title": "Upstream failure"})
    assert sandbox.counts[MAU.endpoint] == 3


# ---------------------------------------------------------------------------------------------- readiness


@pytest.mark.anyio
@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("source", ["amplitude", "revenuecat"])
async def test_readyz_reports_rejected_upstream_credentials_as_unreachable(
    sandbox_server: SandboxServer,
    sandbox: SandboxState,
    caplog: pytest.LogCaptureFixture,
    source: Source,
    status: int,
) -> None:
    capture_logs(caplog)
    sandbox.inject(f"{source}.*", FaultSpec(status=status))
    # Readiness probes are cached for 30 s per runtime: a fresh app probes afresh.
    async with running(hardened_settings(sandbox_server.base_url)) as app, http_client(app) as http:
        with anyio.fail_after(10):
            response = await http.get("/readyz")

    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "degraded"
    states = {state["source"]: state for state in body["sources"]}
    assert states[source]["configured"] is True
    assert states[source]["reachable"] is False
    assert "rejected the service's credentials" in states[source]["detail"]
    assert f"HTTP {status}" in states[source]["detail"]
    other = "revenuecat" if source == "amplitude" else "amplitude"
    assert states[other]["reachable"] is True
    assert_no_secrets([response.text, logged_text(caplog)])


@pytest.mark.anyio
async def test_readyz_is_ready_again_once_the_upstream_accepts_the_credentials(
    sandbox_server: SandboxServer, sandbox: SandboxState
) -> None:
    sandbox.inject("*", FaultSpec(status=401))
    async with running(hardened_settings(sandbox_server.base_url)) as app, http_client(app) as http:
        with anyio.fail_after(10):
            down = await http.get("/readyz")
    sandbox.clear_faults()
    async with running(hardened_settings(sandbox_server.base_url)) as app, http_client(app) as http:
        with anyio.fail_after(10):
            up = await http.get("/readyz")

    assert down.status_code == 503 and down.json()["status"] == "down"
    assert up.status_code == 200 and up.json()["status"] == "ready"
