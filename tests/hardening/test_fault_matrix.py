"""The fault matrix: every operation, every upstream it reads, every kind of upstream failure, on both faces.

For each (operation, source, fault) the sandbox breaks every endpoint of that source, then the test asks REST and
MCP over streamable HTTP the same question and checks: the documented status (the REST problem, and an MCP
`isError` result with the same title), or a `partial: true` answer naming the failed source where the service
degrades; an answer within the request deadline; no credential in any body or log record; and a service that answers
normally once the fault is cleared.

The module-wide app caches nothing and never retries, so one app serves every case whose fault leaves no state
behind. An upstream 429 blocks that source's budget for its Retry-After (the service honours it), so those cases
get an app of their own.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import pytest
from fastapi import FastAPI
from mcp.types import CallToolResult

from shared.errors import Source
from shared.sandbox import FaultSpec, SandboxServer, SandboxState
from shared.settings import Settings
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
DEADLINE = 1.5
MARGIN = 1.0  # scheduling slack on a busy 2-core runner; every answer here is due after ~0.3 s

BOTH: frozenset[Source] = frozenset({"amplitude", "revenuecat"})


@dataclass(frozen=True)
class Operation:
    """One KPI operation: its tool name and arguments, the sources it reads, those whose failure it survives."""

    tool: str
    arguments: Mapping[str, Any]
    sources: tuple[Source, ...]
    degrades: frozenset[Source] = field(default_factory=frozenset[Source])


OPERATIONS: tuple[Operation, ...] = (
    Operation("kpi_overview", {"as_of": "2026-11-15"}, ("amplitude", "revenuecat"), BOTH),
    Operation("kpi_mau", {"start_month": "2026-05-01", "end_month": "2026-11-01"}, ("amplitude",)),
    Operation(
        "kpi_conversion",
        {"steps": ["Sign Up", "View Paywall", "Start Trial"], "start_date": "2026-10-01", "end_date": "2026-10-31"},
        ("amplitude", "revenuecat"),
        frozenset({"revenuecat"}),
    ),
    # A user both sources know, so either half of the journey can stand alone.
    Operation("kpi_user_journey", {"user_id": "user_00116"}, ("amplitude", "revenuecat"), BOTH),
    Operation(
        "kpi_refund_analysis",
        {"start_date": "2026-08-01", "end_date": "2026-11-20", "user_ids": ["user_00116", "user_00131"]},
        ("revenuecat",),
    ),
)


@dataclass(frozen=True)
class Fault:
    """An upstream failure and the answer documented for it when it decides the outcome."""

    name: str
    spec: FaultSpec
    status: int
    title: str
    transient: bool = True  # a source failing this way leaves a partial result where the operation degrades
    retry_after: Mapping[Source, int] | None = None
    blocks_budget: bool = False  # the service honours the upstream's Retry-After: the source's budget is blocked


FAILURE = "Upstream failure"
RATE_LIMIT = "Upstream rate limit"
REJECTED = "Upstream rejected credentials"
TIMED_OUT = "Upstream timed out"

FAULTS: tuple[Fault, ...] = (
    Fault("timeout", FaultSpec(latency=UPSTREAM_TIMEOUT + 0.5), 504, TIMED_OUT),
    Fault("slow-body", FaultSpec(slow_body=UPSTREAM_TIMEOUT + 0.7), 504, TIMED_OUT),
    Fault("http-500", FaultSpec(status=500), 502, FAILURE),
    Fault("http-502", FaultSpec(status=502), 502, FAILURE),
    Fault("http-503", FaultSpec(status=503), 502, FAILURE),
    Fault(
        "429-retry-after-120",
        FaultSpec(status=429, retry_after=120),
        503,
        RATE_LIMIT,
        retry_after={"amplitude": 120, "revenuecat": 120},
        blocks_budget=True,
    ),
    # Without Retry-After: the first blind block (5 s, doubling for 429s in a row), RevenueCat's `backoff_ms` body
    # field (1 s in the sandbox).
    Fault(
        "429-no-retry-after",
        FaultSpec(status=429),
        503,
        RATE_LIMIT,
        retry_after={"amplitude": 5, "revenuecat": 1},
        blocks_budget=True,
    ),
    Fault("malformed-json", FaultSpec(malformed_json=True), 502, FAILURE),
    Fault("wrong-shape", FaultSpec(wrong_shape=True), 502, FAILURE),
    Fault("connection-reset", FaultSpec(reset=True), 502, FAILURE),
    Fault("http-401", FaultSpec(status=401), 502, REJECTED, transient=False),
    Fault("http-403", FaultSpec(status=403), 502, REJECTED, transient=False),
)


MATRIX = [
    pytest.param(operation, source, fault, id=f"{operation.tool}-{source}-{fault.name}")
    for operation in OPERATIONS
    for source in operation.sources
    for fault in FAULTS
]


def matrix_settings(sandbox_url: str, **overrides: Any) -> Settings:
    return hardened_settings(
        sandbox_url,
        KPI_UPSTREAM_TIMEOUT=UPSTREAM_TIMEOUT,
        KPI_REQUEST_DEADLINE=DEADLINE,
        KPI_UPSTREAM_RETRIES=0,
        **overrides,
    )


@pytest.fixture(scope="module")
async def shared_app(sandbox_server: SandboxServer) -> AsyncIterator[FastAPI]:
    async with running(matrix_settings(sandbox_server.base_url)) as app:
        yield app


async def rest_call(http: httpx2.AsyncClient, operation: Operation) -> httpx2.Response:
    method, path, kwargs = rest_request(operation.tool, operation.arguments)
    return await http.request(method, path, **kwargs)


async def both_faces(app: FastAPI, operation: Operation, bearer: str) -> tuple[httpx2.Response, CallToolResult]:
    """The REST answer and the MCP tool result for the same question, each within the deadline."""
    async with http_client(app, bearer) as http:
        with anyio.fail_after(DEADLINE + MARGIN):
            rest = await rest_call(http, operation)
        with anyio.fail_after(DEADLINE + MARGIN):
            tool = await call_tool(http, operation.tool, operation.arguments)
    return rest, tool


def source_status(body: Mapping[str, Any], source: Source) -> dict[str, Any]:
    statuses: list[dict[str, Any]] = body["sources"]
    return next(status for status in statuses if status["source"] == source)


def assert_partial(body: Mapping[str, Any], operation: Operation, source: Source, fault: Fault) -> None:
    assert body["partial"] is True
    failed = source_status(body, source)
    assert failed["status"] == "error"
    assert failed["error"]["status"] == fault.status
    assert failed["error"]["title"] == fault.title
    if fault.retry_after is not None:
        assert failed["error"]["retry_after"] == fault.retry_after[source]
    for other in operation.sources:
        if other != source:
            assert source_status(body, other)["status"] == "ok"
    if operation.tool in ("kpi_overview", "kpi_user_journey"):
        assert body[source] is None
        assert all(body[other] is not None for other in operation.sources if other != source)
    else:
        assert body["trial_conversion"] is None and body["steps"]


@pytest.mark.anyio
@pytest.mark.parametrize(("operation", "source", "fault"), MATRIX)
async def test_an_upstream_fault_gets_the_documented_answer_on_both_faces_in_time_without_leaking_secrets(
    shared_app: FastAPI,
    sandbox_server: SandboxServer,
    sandbox: SandboxState,
    caplog: pytest.LogCaptureFixture,
    operation: Operation,
    source: Source,
    fault: Fault,
) -> None:
    capture_logs(caplog)
    bearer = token()
    async with AsyncExitStack() as stack:
        app = shared_app
        if fault.blocks_budget:
            app = await stack.enter_async_context(running(matrix_settings(sandbox_server.base_url)))
        sandbox.inject(f"{source}.*", fault.spec)

        rest, tool = await both_faces(app, operation, bearer)

        if fault.transient and source in operation.degrades:
            assert rest.status_code == 200, rest.text
            body: dict[str, Any] = rest.json()
            assert_partial(body, operation, source, fault)
            assert not tool.is_error, tool_text(tool)
            assert tool.structured_content is not None
            assert_partial(tool.structured_content, operation, source, fault)
            if not fault.blocks_budget:  # a blocked budget answers the second call with its own words
                assert tool.structured_content == body
        else:
            problem = assert_problem(rest, fault.status)
            assert problem["title"] == fault.title
            assert problem["source"] == source
            if fault.retry_after is not None:
                assert rest.headers["Retry-After"] == str(fault.retry_after[source])
                assert problem["retry_after"] == fault.retry_after[source]
            else:
                assert "Retry-After" not in rest.headers
            text = assert_tool_error_like(tool, problem)
            if not fault.blocks_budget:
                assert problem["detail"] in text

        assert_no_secrets(
            [rest.text, tool_text(tool), json.dumps(tool.structured_content), logged_text(caplog)], bearer
        )

        sandbox.clear_faults()
        if fault.blocks_budget:
            if fault.retry_after is not None and fault.retry_after[source] > 10:
                # Until the upstream's Retry-After has passed the service does not call that source again ...
                async with http_client(app, bearer) as http:
                    before = sum(n for name, n in sandbox.counts.items() if name.startswith(source))
                    with anyio.fail_after(DEADLINE + MARGIN):
                        await rest_call(http, operation)
                    after = sum(n for name, n in sandbox.counts.items() if name.startswith(source))
                assert after == before
            app = await stack.enter_async_context(running(matrix_settings(sandbox_server.base_url)))
        # ... and once the fault is gone (and, for a 429, its Retry-After), the same question is answered in full.
        async with http_client(app, bearer) as http:
            with anyio.fail_after(DEADLINE + MARGIN):
                recovered = await rest_call(http, operation)
        assert recovered.status_code == 200, recovered.text
        assert recovered.json()["partial"] is False, recovered.text


# ---------------------------------------------------------------------------------------------- the whole deadline


@pytest.fixture(scope="module")
async def patient_app(sandbox_server: SandboxServer) -> AsyncIterator[FastAPI]:
    """Upstream requests may take 5 s each, but an operation only 0.5 s in all."""
    settings = hardened_settings(
        sandbox_server.base_url, KPI_UPSTREAM_TIMEOUT=5.0, KPI_REQUEST_DEADLINE=0.5, KPI_UPSTREAM_RETRIES=0
    )
    async with running(settings) as app:
        yield app


@pytest.mark.anyio
@pytest.mark.parametrize("operation", OPERATIONS, ids=[operation.tool for operation in OPERATIONS])
async def test_an_operation_slower_than_its_deadline_is_cut_off_on_both_faces(
    patient_app: FastAPI, sandbox: SandboxState, caplog: pytest.LogCaptureFixture, operation: Operation
) -> None:
    capture_logs(caplog)
    sandbox.inject("*", FaultSpec(latency=2.0))
    bearer = token()
    async with http_client(patient_app, bearer) as http:
        with anyio.fail_after(0.5 + MARGIN):
            rest = await rest_call(http, operation)
        with anyio.fail_after(0.5 + MARGIN):
            tool = await call_tool(http, operation.tool, operation.arguments)

    problem = assert_problem(rest, 504)
    assert problem["title"] == "Deadline exceeded"
    assert_tool_error_like(tool, problem)
    assert_no_secrets([rest.text, tool_text(tool), logged_text(caplog)], bearer)
