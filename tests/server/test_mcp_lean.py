"""The lean MCP path (`api/mcp_lean.py`) answers byte for byte what the SDK's own stateless path answers.

Two apps on the same settings, allowlist and fixed clock, one with the lean path (the default) and one without
(`KPI_MCP_LEAN=false`), get the same matrix of requests over the same in-process HTTP; status, headers and body bytes
must be equal, and the lean app must have answered the requests it is meant for itself.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from mcp.server.connection import Connection
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.routing import Route

from api.guard import McpGuard
from api.main import create_app
from api.mcp_lean import LeanMcp, born_ready
from shared.settings import Settings
from tests.conftest import clock, token

from .support import BASE_URL, SAMPLE_ARGUMENTS, jsonrpc

pytestmark = pytest.mark.anyio

ALLOWED = ("kpi_overview", "kpi_mau", "kpi_conversion", "kpi_user_journey")
NOT_ALLOWED = "kpi_refund_analysis"
HANDSHAKE = "2025-11-25"
POST_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}

INVALID_ARGUMENTS: dict[str, dict[str, Any]] = {
    "kpi_overview": {"as_of": "yesterday"},
    "kpi_mau": {"start_month": "2026-13-01"},
    "kpi_conversion": {"steps": "Sign Up", "conversion_window_days": -3},
    "kpi_user_journey": {"user_id": ["user_00042"]},
}


@dataclass(frozen=True)
class Case:
    """One request of the matrix; `lean` says whether the lean path answers it (else it goes to the SDK)."""

    name: str
    body: bytes
    headers: dict[str, str]
    lean: bool
    method: str = "POST"
    base_url: str = BASE_URL


def call(
    method: str, params: dict[str, Any] | None = None, *, id: int | str = 1, version: str | None = HANDSHAKE
) -> Case:
    body = jsonrpc(method, params)
    body["id"] = id
    headers = dict(POST_HEADERS) | ({"MCP-Protocol-Version": version} if version is not None else {})
    return Case(f"{method} {json.dumps(params)} id={id!r} version={version}", json.dumps(body).encode(), headers, True)


def cases() -> list[Case]:
    matrix: list[Case] = []
    for name in ALLOWED:
        matrix.append(call("tools/call", {"name": name, "arguments": SAMPLE_ARGUMENTS[name]}))
        matrix.append(call("tools/call", {"name": name, "arguments": INVALID_ARGUMENTS[name]}, id=f"bad-{name}"))
        matrix.append(call("tools/call", {"name": name}, version=None))
    matrix += [
        call("tools/call", {"name": "kpi_user_journey", "arguments": {}}, version="2025-06-18"),  # missing argument
        call("tools/call", {"name": "kpi_user_journey", "arguments": {"user_id": "nobody_at_all"}}),  # 404 as a tool
        call("tools/call", {"name": "kpi_mau", "arguments": {"start_month": "2026-09-01", "end_month": "2026-05-01"}}),
        call("tools/call", {"name": "kpi_nonexistent", "arguments": {}}),
        call("tools/call", {"name": NOT_ALLOWED, "arguments": SAMPLE_ARGUMENTS[NOT_ALLOWED]}),
        call("tools/call", {"arguments": {}}),  # no tool name: invalid params
        call("tools/call", {"name": "kpi_mau", "arguments": "not an object"}),
        call("tools/call", {"name": "kpi_mau", "arguments": {}, "_meta": {"progressToken": "p-1"}}),
        call("tools/call", None),
        call("tools/list"),
        call("tools/list", id="list-again"),  # from the cached bytes
        call("tools/list", version=None),
        call("tools/list", version="2025-03-26"),
        call("tools/list", {}),
        call("tools/list", {"cursor": "nowhere"}),
        call("tools/list", {"_meta": 5}),  # malformed params: the kernel's error
    ]
    valid = call("tools/call", {"name": "kpi_mau", "arguments": {}}).body
    sdk_only = [
        ("wrong Accept", valid, {**POST_HEADERS, "Accept": "text/event-stream"}),
        ("wrong content type", valid, {**POST_HEADERS, "Content-Type": "text/plain"}),
        ("content type with a comma", valid, {**POST_HEADERS, "Content-Type": "application/jsonx, text/plain"}),
        ("bad protocol version", valid, {**POST_HEADERS, "MCP-Protocol-Version": "1999-01-01"}),
        ("modern protocol version, no envelope", valid, {**POST_HEADERS, "MCP-Protocol-Version": "2026-07-28"}),
        ("bad origin", valid, {**POST_HEADERS, "Origin": "http://evil.example"}),
        ("bad JSON", b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call"', POST_HEADERS),
        ("batch", b"[" + valid + b"]", POST_HEADERS),
        ("notification", json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode(), POST_HEADERS),
        ("response", json.dumps({"jsonrpc": "2.0", "id": 3, "result": {}}).encode(), POST_HEADERS),
        ("bad envelope", json.dumps({"jsonrpc": "1.0", "id": 1, "method": "tools/list"}).encode(), POST_HEADERS),
        ("ping", json.dumps(jsonrpc("ping")).encode(), POST_HEADERS),
        ("resources/list", json.dumps(jsonrpc("resources/list")).encode(), POST_HEADERS),
        ("prompts/list", json.dumps(jsonrpc("prompts/list")).encode(), POST_HEADERS),
        ("unknown method", json.dumps(jsonrpc("tools/frobnicate")).encode(), POST_HEADERS),
    ]
    matrix += [Case(name, body, headers, False) for name, body, headers in sdk_only]
    matrix.append(Case("Accept */* (the client's default)", valid, {"Content-Type": "application/json"}, True))
    matrix.append(
        Case(
            "Content-Type with a charset",
            valid,
            {**POST_HEADERS, "Content-Type": "application/json; charset=utf-8"},
            True,
        )
    )
    initialize = jsonrpc(
        "initialize",
        {"protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": {"name": "matrix", "version": "1"}},
    )
    matrix.append(Case("initialize", json.dumps(initialize).encode(), POST_HEADERS, False))
    matrix.append(Case("bad host", valid, POST_HEADERS, False, base_url="http://evil.example"))
    matrix.append(Case("GET", b"", {"Accept": "text/event-stream"}, False, method="GET"))
    matrix.append(Case("DELETE", b"", {}, False, method="DELETE"))
    return matrix


def lean_app_of(app: FastAPI) -> LeanMcp:
    """The lean path inside the app's `/mcp` route (behind the guard)."""
    for route in app.router.routes:
        if isinstance(route, Route) and route.path == "/mcp" and isinstance(route.app, McpGuard):
            assert isinstance(route.app.app, LeanMcp)
            return route.app.app
    raise AssertionError("no lean MCP path mounted")


@pytest.fixture
async def apps(make_settings: Callable[..., Settings]) -> AsyncGenerator[tuple[FastAPI, FastAPI]]:
    allowlist = ",".join(ALLOWED)
    lean = create_app(make_settings(MCP_ALLOWED_OPERATIONS=allowlist), clock=clock)
    plain = create_app(make_settings(MCP_ALLOWED_OPERATIONS=allowlist, KPI_MCP_LEAN=False), clock=clock)
    async with AsyncExitStack() as stack:
        for app in (lean, plain):
            await stack.enter_async_context(app.router.lifespan_context(app))
        yield lean, plain


async def send(app: FastAPI, case: Case) -> httpx2.Response:
    transport = httpx2.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {token()}", **case.headers}
    async with httpx2.AsyncClient(transport=transport, base_url=case.base_url, headers=headers) as client:
        return await client.request(case.method, "/mcp", content=case.body)


async def test_the_lean_path_answers_every_request_of_the_matrix_byte_for_byte_as_the_sdk_does(
    apps: tuple[FastAPI, FastAPI],
) -> None:
    lean, plain = apps
    lean_path = lean_app_of(lean)
    for case in cases():
        before = lean_path.answered
        ours, theirs = await send(lean, case), await send(plain, case)
        assert ours.status_code == theirs.status_code, case.name
        assert ours.headers.multi_items() == theirs.headers.multi_items(), case.name
        assert ours.content == theirs.content, case.name
        assert lean_path.answered - before == (1 if case.lean else 0), case.name


async def test_tool_results_errors_and_listings_come_out_as_the_sdk_shapes_them(apps: tuple[FastAPI, FastAPI]) -> None:
    lean, _ = apps
    ok = (await send(lean, call("tools/call", {"name": "kpi_mau", "arguments": SAMPLE_ARGUMENTS["kpi_mau"]}))).json()
    result = ok["result"]
    assert result["isError"] is False
    assert json.loads(result["content"][0]["text"]) == result["structuredContent"]
    assert result["content"][0]["text"] == json.dumps(result["structuredContent"], separators=(",", ":"))

    invalid = await send(lean, call("tools/call", {"name": "kpi_mau", "arguments": INVALID_ARGUMENTS["kpi_mau"]}))
    assert invalid.json()["result"]["isError"] is True
    assert "start_month" in invalid.json()["result"]["content"][0]["text"]

    for name in (NOT_ALLOWED, "kpi_nonexistent"):
        unknown = (await send(lean, call("tools/call", {"name": name, "arguments": {}}))).json()
        assert unknown["error"]["code"] == -32602
        assert unknown["error"]["message"] == f"Unknown tool: {name}"

    listed = (await send(lean, call("tools/list", id="x"))).json()
    assert listed["id"] == "x"
    assert [tool["name"] for tool in listed["result"]["tools"]] == list(ALLOWED)
    assert set(lean_app_of(lean).listings) == {HANDSHAKE}


async def test_without_a_token_the_guard_answers_before_either_path(apps: tuple[FastAPI, FastAPI]) -> None:
    lean, plain = apps
    case = call("tools/call", {"name": "kpi_mau", "arguments": {}})
    answers: list[httpx2.Response] = []
    for app in (lean, plain):
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE_URL) as client:
            answers.append(await client.post("/mcp", content=case.body, headers=case.headers))
    assert [answer.status_code for answer in answers] == [401, 401]
    assert answers[0].content == answers[1].content
    assert lean_app_of(lean).answered == 0


@pytest.mark.parametrize("version", sorted(HANDSHAKE_PROTOCOL_VERSIONS))
def test_the_lean_paths_connection_is_the_one_the_stateless_transport_builds(version: str) -> None:
    theirs = Connection.from_envelope(version, None, None)
    ours = born_ready(theirs.outbound, version)
    assert ours.outbound is theirs.outbound and not ours.has_standalone_channel
    assert ours.initialized.is_set() and theirs.initialized.is_set()
    assert ours.initialize_accepted == theirs.initialize_accepted
    plain = ("protocol_version", "session_id", "client_capabilities", "client_params", "state")
    assert {name: getattr(ours, name) for name in plain} == {name: getattr(theirs, name) for name in plain}
    assert vars(ours).keys() == vars(theirs).keys()
    assert type(ours.exit_stack) is type(theirs.exit_stack)
