"""Adding an operation is one declaration (plus its service method): both faces, the allowlist, the audit trail,
OpenAPI and the fast path pick it up without any other module changing."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from api.main import create_app
from shared.models import kpi as m
from shared.operations import OPERATIONS, Operation
from shared.services.inputs import Inputs
from shared.services.kpi import KpiService
from shared.settings import Settings
from tests.conftest import NOW, clock, token
from tests.server.support import BASE_URL, MCP_POST_HEADERS, jsonrpc


class DaysQuery(BaseModel):
    until: date | None = Field(default=None, description="Last day (YYYY-MM-DD); default today.")
    days: int = Field(default=7, ge=1, le=30, description="How many days to count back.")


class DaysResult(m.ResultMeta):
    until: date
    days: int


async def count_days(service: KpiService, query: DaysQuery) -> DaysResult:
    assert query.until is not None  # resolved
    return DaysResult(data_source=service.data_source, generated_at=NOW, until=query.until, days=query.days)


def resolve_days(query: DaysQuery, inputs: Inputs) -> DaysQuery:
    return DaysQuery(until=query.until or inputs.today, days=query.days)


DAYS = Operation(
    id="kpi_days",
    title="Days",
    description="A throwaway sixth operation: the days it was asked for.",
    method="GET",
    path="/days",
    query=DaysQuery,
    result=DaysResult,
    resolve=resolve_days,
    compute=count_days,
    cache_kind="days",
    ttl=lambda ttl, query, today: ttl.overview,
)


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> TestClient:
    settings = make_settings(MCP_ALLOWED_OPERATIONS=("kpi_days", "kpi_mau"))
    return TestClient(create_app(settings, clock=clock, operations=(*OPERATIONS, DAYS)), base_url=BASE_URL)


def test_a_sixth_operation_is_served_listed_audited_and_documented(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="loop_kpi.audit")
    auth = {"Authorization": f"Bearer {token()}"}
    with client:
        first = client.get("/api/kpi/days?days=3", headers=auth)
        second = client.get("/api/kpi/days?days=3", headers=auth)  # warm: answered by the fast path
        invalid = client.get("/api/kpi/days?days=99", headers=auth)
        denied = client.get("/api/kpi/days")
        tools = client.post("/mcp", json=jsonrpc("tools/list"), headers={**auth, **MCP_POST_HEADERS}).json()
        called = client.post(
            "/mcp",
            json=jsonrpc("tools/call", {"name": "kpi_days", "arguments": {"days": 3}}),
            headers={**auth, **MCP_POST_HEADERS},
        ).json()
        spec = client.get("/openapi.json").json()

    assert first.status_code == 200 and first.json()["until"] == NOW.date().isoformat() and first.json()["days"] == 3
    assert (first.headers["X-KPI-Cache"], second.headers["X-KPI-Cache"]) == ("miss", "hit")
    assert second.content == first.content
    assert invalid.status_code == 422 and denied.status_code == 401

    listed = {tool["name"]: tool for tool in tools["result"]["tools"]}
    assert sorted(listed) == ["kpi_days", "kpi_mau"]  # allowed ones only, the new one among them
    schema: dict[str, Any] = listed["kpi_days"]["inputSchema"]
    assert schema["properties"]["days"]["maximum"] == 30 and schema["properties"]["days"]["minimum"] == 1
    assert called["result"]["structuredContent"] == first.json()

    operation = spec["paths"]["/api/kpi/days"]["get"]
    assert operation["operationId"] == "kpi_days" and operation["summary"] == "Days"

    audited = [json.loads(r.getMessage()) for r in caplog.records if r.name == "loop_kpi.audit"]
    assert [(line["operation"], line["transport"], line["status"]) for line in audited] == [
        ("kpi_days", "rest", 200),
        ("kpi_days", "rest", 200),
        ("kpi_days", "rest", 422),
        ("kpi_days", "rest", 401),
        ("kpi_days", "mcp-http", 200),
    ]


def test_a_sixth_operation_not_in_the_allowlist_is_served_on_rest_but_not_listed(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(), clock=clock, operations=(*OPERATIONS, DAYS))
    auth = {"Authorization": f"Bearer {token()}"}
    with TestClient(app, base_url=BASE_URL) as client:
        assert client.get("/api/kpi/days", headers=auth).status_code == 200
        tools = client.post("/mcp", json=jsonrpc("tools/list"), headers={**auth, **MCP_POST_HEADERS}).json()
    assert "kpi_days" in {tool["name"] for tool in tools["result"]["tools"]}  # unset allowlist: all operations
