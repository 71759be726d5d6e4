"""Resources (KPI definitions, data source and freshness) and prompts (weekly brief, user investigation, refund
spike), with completions: in memory (both modes), over stdio and over HTTP, behind the tools' gates."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import PromptReference

from server.catalog import SERVICE_URI, definitions_uri
from server.tools import build_mcp
from shared.auth.allowlist import resolve_allowlist
from shared.auth.scopes import Principal
from shared.operations import operation_ids
from shared.runtime import Runtime
from shared.sandbox import SandboxServer
from shared.settings import Settings
from tests.conftest import token

from .support import MCP_URL, READER, RESULT_MODELS, acting_as, descriptions
from .test_http import http_client, running
from .test_stdio import START_TIMEOUT, server_parameters

OPERATIONS = operation_ids()
NO_SCOPE = Principal(subject="nobody", scopes=frozenset({"reports:read"}), roles=frozenset())
PROMPTS = ["weekly_kpi_brief", "user_investigation", "refund_spike_investigation"]


def kpi_client(runtime: Runtime | None, mode: str = "auto", entries: list[str] | None = None) -> Client:
    return Client(build_mcp(lambda: runtime, resolve_allowlist(entries)), mode=mode)  # pyright: ignore[reportArgumentType]


def kpi_uris(uris: list[str]) -> list[str]:
    return [uri for uri in uris if uri.startswith("kpi://")]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_each_operation_has_a_definitions_resource_built_from_its_result_model(mode: str) -> None:
    with anyio.fail_after(10), acting_as(READER):
        async with kpi_client(None, mode) as client:
            resources = {str(r.uri): r for r in (await client.list_resources()).resources}
            for operation in OPERATIONS:
                listed = resources[definitions_uri(operation)]
                assert listed.mime_type == "text/markdown" and listed.description
                [content] = (await client.read_resource(definitions_uri(operation))).contents
                text = getattr(content, "text", "")
                assert content.mime_type == "text/markdown"
                assert text.startswith("# ") and f"`{operation}`" in text
                # Every documented field of the result is defined (the model's descriptions, picked up as they are).
                for description in descriptions(RESULT_MODELS[operation].model_json_schema()):
                    assert description in text, (operation, description)


@pytest.mark.anyio
async def test_the_service_resource_says_the_data_source_and_the_cache_ttls(runtime: Runtime) -> None:
    with anyio.fail_after(10), acting_as(READER):
        async with kpi_client(runtime) as client:
            [content] = (await client.read_resource(SERVICE_URI)).contents
    assert content.mime_type == "application/json"
    policy = json.loads(getattr(content, "text", ""))
    assert policy["data_source"] == runtime.data_source == "sandbox"
    assert policy["cache_ttl_seconds"]["overview"] == runtime.settings.KPI_CACHE_TTL_OVERVIEW
    assert policy["cache_ttl_seconds"]["partial"] == runtime.settings.KPI_CACHE_TTL_PARTIAL


@pytest.mark.anyio
async def test_a_resource_about_an_operation_not_allowed_is_neither_listed_nor_readable() -> None:
    with anyio.fail_after(10), acting_as(READER):
        async with kpi_client(None, entries=["kpi_mau"]) as client:
            uris = kpi_uris([str(r.uri) for r in (await client.list_resources()).resources])
            assert uris == [definitions_uri("kpi_mau"), SERVICE_URI]
            with pytest.raises(MCPError):
                await client.read_resource(definitions_uri("kpi_overview"))
            prompts = [prompt.name for prompt in (await client.list_prompts()).prompts]
    assert prompts == []  # every prompt needs a tool that is not allowed


@pytest.mark.anyio
@pytest.mark.parametrize("principal", [None, NO_SCOPE], ids=["no caller", "no kpi:read"])
@pytest.mark.parametrize("uri", [definitions_uri("kpi_mau"), SERVICE_URI])
async def test_resources_are_refused_to_callers_the_tools_refuse(principal: Principal | None, uri: str) -> None:
    with anyio.fail_after(10), acting_as(principal):
        async with kpi_client(None) as client:
            with pytest.raises(MCPError) as raised:
                await client.read_resource(uri)
    assert ("Unauthorized" if principal is None else "kpi:read") in raised.value.error.message


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_prompts_name_their_tools_and_ask_for_provenance(mode: str) -> None:
    with anyio.fail_after(10), acting_as(READER):
        async with kpi_client(None, mode) as client:
            listed = {prompt.name: prompt for prompt in (await client.list_prompts()).prompts}
            brief = await client.get_prompt("weekly_kpi_brief")
            user = await client.get_prompt("user_investigation", {"user_id": "user_00042"})
            spike = await client.get_prompt(
                "refund_spike_investigation",
                {"start_date": "2026-08-01", "end_date": "2026-10-31", "resolution": "week", "segment": "store"},
            )
    assert list(listed) == PROMPTS
    assert [a.name for a in listed["user_investigation"].arguments or []] == ["user_id"]
    required = {a.name for a in listed["refund_spike_investigation"].arguments or [] if a.required}
    assert required == {"start_date", "end_date"}

    def text(result: object) -> str:
        return "\n".join(getattr(m.content, "text", "") for m in getattr(result, "messages", []))

    for tool in ("kpi_overview", "kpi_mau", "kpi_conversion", "kpi_refund_analysis"):
        assert f"`{tool}`" in text(brief)
    assert "`kpi_user_journey`" in text(user) and "user_00042" in text(user)
    assert "`kpi_refund_analysis`" in text(spike) and "`store`" in text(spike) and "`week`" in text(spike)
    for result in (brief, user, spike):
        assert "provenance" in text(result)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_prompt_arguments_complete_resolutions_and_segments(mode: str) -> None:
    ref = PromptReference(type="ref/prompt", name="refund_spike_investigation")
    with anyio.fail_after(10), acting_as(READER):
        async with kpi_client(None, mode) as client:
            resolutions = await client.complete(ref, {"name": "resolution", "value": ""})
            weeks = await client.complete(ref, {"name": "resolution", "value": "w"})
            segments = await client.complete(ref, {"name": "segment", "value": "c"})
    assert resolutions.completion.values == ["day", "week", "month"]
    assert weeks.completion.values == ["week"]
    assert segments.completion.values == ["country"]


@pytest.mark.anyio
async def test_resources_and_prompts_over_http(settings: Settings) -> None:
    async with running(settings) as app, http_client(app, token()) as http:
        with anyio.fail_after(20):
            async with Client(streamable_http_client(MCP_URL, http_client=http)) as client:
                uris = kpi_uris([str(r.uri) for r in (await client.list_resources()).resources])
                [service] = (await client.read_resource(SERVICE_URI)).contents
                prompts = [prompt.name for prompt in (await client.list_prompts()).prompts]
        data_source = app.state.runtime.data_source
    assert uris == [*(definitions_uri(operation) for operation in OPERATIONS), SERVICE_URI]
    assert json.loads(getattr(service, "text", ""))["data_source"] == data_source
    assert prompts == PROMPTS


@pytest.mark.anyio
async def test_resources_and_prompts_over_stdio(sandbox_server: SandboxServer, tmp_path: Path) -> None:
    inherited = {name: value for name, value in os.environ.items() if name not in Settings.model_fields}
    env = {**inherited, "KPI_SANDBOX": "1", "KPI_SANDBOX_URL": sandbox_server.base_url, "PYTHONUNBUFFERED": "1"}
    parameters = server_parameters(env, tmp_path)
    with anyio.fail_after(START_TIMEOUT):
        async with Client(parameters) as client:
            uris = kpi_uris([str(r.uri) for r in (await client.list_resources()).resources])
            [definitions] = (await client.read_resource(definitions_uri("kpi_mau"))).contents
            prompt = await client.get_prompt("user_investigation", {"user_id": "user_00042"})
    assert uris == [*(definitions_uri(operation) for operation in OPERATIONS), SERVICE_URI]
    assert "Monthly active users" in getattr(definitions, "text", "")
    assert "kpi_user_journey" in getattr(prompt.messages[0].content, "text", "")
