"""What the hardening tests share: apps with roomy budgets and no cache, both faces in-process, secret and log checks.

Every app here runs in-process: REST and MCP over streamable HTTP go through `httpx2.ASGITransport` into the app
whose lifespan the test (or a module fixture) holds open, so a test can put `anyio.fail_after` around a whole call.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx2
import pytest
import uvicorn
from fastapi import FastAPI
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult
from starlette.types import ASGIApp

from api.main import create_app
from shared.sandbox import (
    SANDBOX_AMPLITUDE_API_KEY,
    SANDBOX_AMPLITUDE_SECRET_KEY,
    SANDBOX_REVENUECAT_API_KEY,
    SandboxState,
)
from shared.settings import Settings
from tests.api.conftest import ROOMY_BUDGETS, build_settings
from tests.conftest import JWT_SECRET, clock

BASE_URL = "http://127.0.0.1:8000"
MCP_URL = f"{BASE_URL}/mcp"
PROBLEM_JSON = "application/problem+json"
LOGGERS = ("loop_kpi", "httpx2", "httpcore2", "mcp", "uvicorn")

# Every result kind uncached: a module-wide app then answers each call afresh, so faults cleared between tests
# cannot leave a cached (partial) answer behind.
NO_CACHE: Mapping[str, float] = {
    "KPI_CACHE_TTL_OVERVIEW": 0,
    "KPI_CACHE_TTL_MAU_CURRENT": 0,
    "KPI_CACHE_TTL_CLOSED": 0,
    "KPI_CACHE_TTL_CONVERSION": 0,
    "KPI_CACHE_TTL_JOURNEY": 0,
    "KPI_CACHE_TTL_REFUNDS": 0,
    "KPI_CACHE_TTL_PARTIAL": 0,
}
ROOMIER_BUDGETS: Mapping[str, int] = {**ROOMY_BUDGETS, "KPI_REVENUECAT_CUSTOMERS_RPM": 1_000_000}
SANDBOX_RPM = 100_000

UPSTREAM_SECRETS: tuple[str, ...] = (
    SANDBOX_AMPLITUDE_API_KEY,
    SANDBOX_AMPLITUDE_SECRET_KEY,
    SANDBOX_REVENUECAT_API_KEY,
    base64.b64encode(f"{SANDBOX_AMPLITUDE_API_KEY}:{SANDBOX_AMPLITUDE_SECRET_KEY}".encode()).decode(),
    JWT_SECRET,
)


def hardened_settings(sandbox_url: str, **overrides: Any) -> Settings:
    """Settings against the session sandbox with budgets that never bind and (unless overridden) no cache."""
    return build_settings(sandbox_url, **{**ROOMIER_BUDGETS, **NO_CACHE, **overrides})


def roomy_sandbox(state: SandboxState) -> dict[str, Any]:
    """Lift the sandbox's own limits (requests our client abandoned may still hold its slots); returns the old ones."""
    saved: dict[str, Any] = {
        "amplitude_concurrency_limit": state.amplitude_concurrency_limit,
        "amplitude_user_concurrency_limit": state.amplitude_user_concurrency_limit,
        "charts_rpm": state.charts_rpm,
        "customer_rpm": state.customer_rpm,
    }
    state.amplitude_concurrency_limit = None
    state.amplitude_user_concurrency_limit = None
    state.charts_rpm = SANDBOX_RPM
    state.customer_rpm = SANDBOX_RPM
    return saved


def restore_sandbox(state: SandboxState, saved: Mapping[str, Any]) -> None:
    for name, value in saved.items():
        setattr(state, name, value)


@asynccontextmanager
async def running(settings: Settings) -> AsyncGenerator[FastAPI]:
    """`create_app(settings)` on the fixed clock, with its lifespan (runtime and MCP session manager) running."""
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        yield app


def http_client(app: ASGIApp, bearer: str | None = None) -> httpx2.AsyncClient:
    """An in-process client of `app`; an unexpected app exception becomes the app's own 500, as a server would."""
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx2.AsyncClient(transport=transport, base_url=BASE_URL, headers=headers)


async def call_tool(http: httpx2.AsyncClient, name: str, arguments: Mapping[str, Any]) -> CallToolResult:
    """One MCP tool call over streamable HTTP with the SDK client, through `http` (which carries the bearer)."""
    async with Client(streamable_http_client(MCP_URL, http_client=http)) as client:
        return await client.call_tool(name, dict(arguments))


def tool_text(result: CallToolResult) -> str:
    """The text of a tool result (all text blocks joined)."""
    return "\n".join(str(getattr(block, "text", "")) for block in result.content)


def assert_problem(response: httpx2.Response, status: int) -> dict[str, Any]:
    """An RFC 9457 problem of `status`; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == PROBLEM_JSON, response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def assert_tool_error_like(result: CallToolResult, problem: Mapping[str, Any]) -> str:
    """An `isError` tool result carrying the REST problem's title; returns its text."""
    text = tool_text(result)
    assert result.is_error, text
    assert f"{problem['title']}: " in text, (text, problem)
    return text


def capture_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Record everything our loggers, the HTTP stack, the MCP SDK and uvicorn say, down to DEBUG."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)


def logged_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record: its message, its arguments and any traceback, as one string."""
    parts = [caplog.text]
    for record in caplog.records:
        parts.append(record.getMessage())
        parts.append(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(repr(record.exc_info[1]))
    return "\n".join(parts)


def assert_no_secrets(texts: Iterable[str], *extra: str) -> None:
    """None of the service's credentials (nor `extra`, e.g. the caller's bearer token) appears in `texts`."""
    secrets = [secret for secret in (*UPSTREAM_SECRETS, *extra) if secret]
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"a secret leaked: {secret[:6]}..."


@dataclass
class ThreadServer:
    """An ASGI app served by uvicorn on 127.0.0.1 (any free port) in a daemon thread, for subprocess clients."""

    app: ASGIApp
    port: int = 0

    def __post_init__(self) -> None:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="hardening-server", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + 10
        ready = threading.Event()
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "server failed to start"
            ready.wait(0.01)
        sockets: Sequence[Any] = [s for server in self._server.servers for s in server.sockets]
        self.port = int(sockets[0].getsockname()[1])
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.should_exit = True
        self._thread.join(5)
