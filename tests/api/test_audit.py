"""The audit trail: one JSON line per KPI call, on every face, without secrets."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from mcp import Client

from server.context import current_principal
from server.tools import build_mcp
from shared.auth.scopes import KPI_READ, Principal
from shared.runtime import Runtime
from shared.settings import Settings
from tests.api.conftest import bearer, serve
from tests.conftest import JWT_SECRET, token


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(record.getMessage()) for record in caplog.records if record.name == "loop_kpi.audit"]


def test_each_rest_call_writes_one_audit_line_with_cache_state(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="loop_kpi.audit")
    reader = token()
    with serve(make_settings()) as client:
        assert client.get("/api/kpi/mau", headers=bearer(reader)).status_code == 200
        assert client.get("/api/kpi/mau", headers=bearer(reader)).status_code == 200
        assert client.get("/api/kpi/user/nobody_here", headers=bearer(reader)).status_code == 404
        assert client.get("/api/kpi/overview").status_code == 401
        assert client.get("/api/kpi/overview", headers=bearer(token(scopes=("other",)))).status_code == 403
    lines = _lines(caplog)
    assert [(x["operation"], x["status"], x["outcome"], x["cache"]) for x in lines] == [
        ("kpi_mau", 200, "ok", "miss"),
        ("kpi_mau", 200, "ok", "hit"),
        ("kpi_user_journey", 404, "error", None),
        ("kpi_overview", 401, "denied", None),
        ("kpi_overview", 403, "denied", None),
    ]
    assert {x["transport"] for x in lines} == {"rest"}
    assert [x["subject"] for x in lines] == ["tester", "tester", "tester", None, "tester"]
    assert all(x["event"] == "kpi_call" and x["latency_ms"] >= 0 and x["time"].endswith("Z") for x in lines)
    text = caplog.text
    assert reader not in text and JWT_SECRET not in text


@pytest.mark.anyio
async def test_each_mcp_tool_call_writes_one_audit_line_with_its_transport(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="loop_kpi.audit")
    mcp = build_mcp(lambda: runtime)
    principal = current_principal.set(Principal(subject="analyst", scopes=frozenset({KPI_READ}), roles=frozenset()))
    try:
        with anyio.fail_after(20):
            async with Client(mcp) as client:
                await client.call_tool("kpi_mau", {})
                await client.call_tool("kpi_user_journey", {"user_id": "nobody_here"})
    finally:
        current_principal.reset(principal)
    denied = current_principal.set(Principal(subject="intern", scopes=frozenset(), roles=frozenset()))
    try:
        with anyio.fail_after(20):
            async with Client(mcp) as client:
                await client.call_tool("kpi_mau", {})
    finally:
        current_principal.reset(denied)
    lines = _lines(caplog)
    assert [(x["operation"], x["subject"], x["status"], x["outcome"], x["transport"]) for x in lines] == [
        ("kpi_mau", "analyst", 200, "ok", "mcp-memory"),
        ("kpi_user_journey", "analyst", 404, "error", "mcp-memory"),
        ("kpi_mau", "intern", 403, "denied", "mcp-memory"),
    ]
