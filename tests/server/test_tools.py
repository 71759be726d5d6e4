"""The MCP tools in memory (`mcp.Client(build_mcp(...))`), under both the 2026-07-28 direct dispatch ("auto") and the
2025-11-25 JSON-RPC handshake ("legacy"): the allowlist, the tool metadata, structured results, auth and errors."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import jsonschema
import pytest
from fastapi.testclient import TestClient
from mcp import Client
from mcp.server._otel import OpenTelemetryMiddleware
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from api.main import create_app
from server.tools import INSTRUCTIONS, build_mcp, traced_when_configured, tracing_configured
from shared.auth.allowlist import UnknownOperationError, resolve_allowlist
from shared.auth.scopes import KPI_READ, Principal
from shared.operations import OPERATIONS as REGISTRY
from shared.operations import AnyOperation, operation_ids
from shared.runtime import Runtime, open_runtime
from shared.sandbox import FaultSpec, SandboxState
from shared.settings import Settings
from tests.conftest import clock, token

from .support import (
    BASE_URL,
    READER,
    RESULT_MODELS,
    SAMPLE_ARGUMENTS,
    SECRETS,
    acting_as,
    descriptions,
    only_text,
    rest_request,
    without_docs,
)

OPERATIONS = operation_ids()

MODES = ["auto", "legacy"]

INPUT_PROPERTIES: Mapping[str, tuple[set[str], set[str]]] = {
    "kpi_overview": ({"as_of"}, set()),
    "kpi_mau": ({"start_month", "end_month"}, set()),
    "kpi_conversion": ({"steps", "start_date", "end_date", "conversion_window_days", "mode"}, set()),
    "kpi_user_journey": ({"user_id"}, {"user_id"}),
    "kpi_refund_analysis": (
        {"start_date", "end_date", "resolution", "segment", "user_ids"},
        {"start_date", "end_date"},
    ),
}
DATE_PROPERTIES = {"as_of", "start_month", "end_month", "start_date", "end_date"}


def mcp_client(runtime: Runtime | None, mode: str, allowed: Sequence[AnyOperation] = REGISTRY) -> Client:
    def get_runtime() -> Runtime:
        assert runtime is not None, "this client was built without a runtime"
        return runtime

    return Client(build_mcp(get_runtime, allowed), mode=mode)


def json_types(schema: Mapping[str, Any]) -> set[str]:
    """The JSON types a (possibly `anyOf`) property schema admits."""
    if "anyOf" in schema:
        return {kind for option in schema["anyOf"] for kind in json_types(option)}
    kind = schema.get("type")
    if isinstance(kind, str):
        return {kind}
    if "enum" in schema:
        return {"string"}
    return set()


# ---------------------------------------------------------------------------------------------- the allowlist


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_tools_list_is_the_default_allowlist_in_operations_order(mode: str) -> None:
    with anyio.fail_after(10):
        async with mcp_client(None, mode) as client:
            tools = (await client.list_tools()).tools
    assert [tool.name for tool in tools] == list(OPERATIONS)
    assert len(OPERATIONS) == 5


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_tools_list_of_a_subset_allowlist_follows_operations_order(mode: str) -> None:
    allowed = resolve_allowlist(["kpi_mau", "kpi_overview"])
    with anyio.fail_after(10):
        async with mcp_client(None, mode, allowed) as client:
            names = [tool.name for tool in (await client.list_tools()).tools]
    assert names == ["kpi_overview", "kpi_mau"]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("entries", [[], ["none"]], ids=["empty", "none"])
async def test_an_empty_allowlist_lists_no_tools_and_rejects_every_call(mode: str, entries: list[str]) -> None:
    allowed = resolve_allowlist(entries)
    with anyio.fail_after(10), acting_as(READER):
        async with mcp_client(None, mode, allowed) as client:
            assert (await client.list_tools()).tools == []
            with pytest.raises(MCPError) as raised:
                await client.call_tool("kpi_mau", {})
    assert raised.value.code == INVALID_PARAMS


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_calling_a_tool_outside_the_allowlist_is_an_invalid_params_protocol_error(mode: str) -> None:
    allowed = resolve_allowlist(["kpi_mau"])
    with anyio.fail_after(10), acting_as(READER):
        async with mcp_client(None, mode, allowed) as client:
            with pytest.raises(MCPError) as raised:
                await client.call_tool("kpi_overview", {})
    assert raised.value.code == INVALID_PARAMS
    assert "kpi_overview" in raised.value.message


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "name",
    ["nope", "", "KPI_MAU", "kpi_mau ", "../kpi_mau", "kpi_mau\n", "x" * 5000],
    ids=["word", "empty", "case", "trailing-space", "path", "newline", "huge"],
)
async def test_calling_a_garbage_tool_name_is_an_invalid_params_protocol_error(mode: str, name: str) -> None:
    with anyio.fail_after(10), acting_as(READER):
        async with mcp_client(None, mode) as client:
            with pytest.raises(MCPError) as raised:
                await client.call_tool(name, {})
    assert raised.value.code == INVALID_PARAMS
    assert raised.value.message.startswith("Unknown tool")
    assert len(raised.value.message) < 200


def test_create_app_fails_closed_on_an_unknown_allowlisted_operation(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(UnknownOperationError, match="kpi_nope"):
        create_app(make_settings(MCP_ALLOWED_OPERATIONS=("kpi_nope",)), clock=clock)


def test_create_app_fails_closed_on_an_unknown_operation_in_the_environment(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_ALLOWED_OPERATIONS", "kpi_mau,kpi_nope")
    with pytest.raises(UnknownOperationError, match="kpi_nope"):
        create_app(make_settings(), clock=clock)


# ---------------------------------------------------------------------------------------------- tool metadata


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_every_tool_is_titled_described_and_annotated_read_only(mode: str) -> None:
    with anyio.fail_after(10):
        async with mcp_client(None, mode) as client:
            tools = (await client.list_tools()).tools
    for tool in tools:
        assert tool.title, tool.name
        assert tool.description and len(tool.description) > 40, tool.name
        assert tool.annotations is not None, tool.name
        assert tool.annotations.read_only_hint is True, tool.name
        assert tool.annotations.idempotent_hint is True, tool.name
        assert tool.annotations.destructive_hint is False, tool.name
        assert tool.annotations.open_world_hint is False, tool.name


@pytest.mark.anyio
async def test_tool_descriptions_carry_no_source_indentation() -> None:
    with anyio.fail_after(10):
        async with mcp_client(None, "auto") as client:
            tools = (await client.list_tools()).tools
    for tool in tools:
        assert tool.description is not None
        assert tool.description == inspect.cleandoc(tool.description), tool.name
        assert "\n " not in tool.description, tool.name


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_input_schemas_are_flat_and_typed_and_never_expose_the_reader(mode: str) -> None:
    with anyio.fail_after(10):
        async with mcp_client(None, mode) as client:
            tools = (await client.list_tools()).tools
    for tool in tools:
        schema = tool.input_schema
        properties: dict[str, Any] = schema["properties"]
        expected, required = INPUT_PROPERTIES[tool.name]
        assert schema["type"] == "object"
        assert set(properties) == expected, tool.name
        assert set(schema.get("required", [])) == required, tool.name
        assert "reader" not in properties and "ctx" not in properties
        assert "$defs" not in schema and "$ref" not in json.dumps(schema), f"{tool.name} has nested models"
        for name, prop in properties.items():
            assert json_types(prop) - {"null"}, f"{tool.name}.{name} has no type"
            assert prop.get("description"), f"{tool.name}.{name} has no description"
            if name in DATE_PROPERTIES:
                formats = {option.get("format") for option in prop.get("anyOf", [prop])}
                assert "date" in formats, f"{tool.name}.{name} is not a date"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_every_tool_has_its_result_model_as_output_schema(mode: str) -> None:
    with anyio.fail_after(10):
        async with mcp_client(None, mode) as client:
            tools = (await client.list_tools()).tools
    listed: set[str] = set()
    for tool in tools:
        expected = RESULT_MODELS[tool.name].model_json_schema()
        assert without_docs(tool.output_schema) == without_docs(expected), tool.name
        listed |= descriptions(tool.output_schema)
    # Leaner, never vaguer: each field's description is still in the listing (once, in the first tool having it).
    for tool in tools:
        assert descriptions(RESULT_MODELS[tool.name].model_json_schema()) <= listed, tool.name


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_tools_list_says_each_description_once_and_no_derived_titles(mode: str) -> None:
    with anyio.fail_after(10):
        async with mcp_client(None, mode) as client:
            tools = (await client.list_tools()).tools
    said: list[str] = []
    for tool in tools:
        said += sorted(descriptions(tool.output_schema))
        assert '"title": "Change Pct"' not in json.dumps(tool.output_schema)
        for name, prop in tool.input_schema["properties"].items():
            assert "title" not in prop, f"{tool.name}.{name}"
    assert len(said) == len(set(said))
    assert "partial" in INSTRUCTIONS and "data_source" in INSTRUCTIONS and "sources" in INSTRUCTIONS


# ---------------------------------------------------------------------------------------------- results


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("operation", OPERATIONS)
async def test_each_tool_returns_structured_content_that_validates_into_its_model(
    mode: str, operation: str, runtime: Runtime
) -> None:
    with anyio.fail_after(20), acting_as(READER):
        async with mcp_client(runtime, mode) as client:
            result = await client.call_tool(operation, SAMPLE_ARGUMENTS[operation])
            (listed,) = [tool for tool in (await client.list_tools()).tools if tool.name == operation]
    assert not result.is_error, result.content
    assert result.structured_content is not None
    assert listed.output_schema is not None
    jsonschema.validate(result.structured_content, listed.output_schema)  # the schema the listing publishes
    model = RESULT_MODELS[operation].model_validate(result.structured_content)
    assert model.model_dump(mode="json") == result.structured_content
    text = only_text(result.content)
    assert json.loads(text) == result.structured_content
    # The text block is compact JSON: a model reads no indentation.
    assert len(text.encode()) <= 1.05 * len(json.dumps(result.structured_content, separators=(",", ":")).encode())


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_tools_called_without_arguments_use_the_documented_defaults(mode: str, runtime: Runtime) -> None:
    with anyio.fail_after(20), acting_as(READER):
        async with mcp_client(runtime, mode) as client:
            overview = await client.call_tool("kpi_overview", {})
            mau = await client.call_tool("kpi_mau", {})
            conversion = await client.call_tool("kpi_conversion", {})
    assert overview.structured_content is not None and overview.structured_content["as_of"] == "2026-11-20"
    assert mau.structured_content is not None and len(mau.structured_content["months"]) == 6
    assert conversion.structured_content is not None
    assert [step["event_type"] for step in conversion.structured_content["steps"]] == list(
        runtime.settings.KPI_CONVERSION_STEPS
    )


# ---------------------------------------------------------------------------------------------- who may call


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "principal",
    [
        Principal(subject="no-scope", scopes=frozenset(), roles=frozenset()),
        Principal(subject="writer", scopes=frozenset({"kpi:write"}), roles=frozenset()),
        Principal(subject="user", scopes=frozenset(), roles=frozenset({"user"})),
    ],
    ids=["no-scope", "other-scope", "role-user"],
)
async def test_a_caller_without_kpi_read_gets_a_tool_error_naming_the_scope(
    mode: str, principal: Principal, runtime: Runtime, sandbox: SandboxState
) -> None:
    with anyio.fail_after(10), acting_as(principal):
        async with mcp_client(runtime, mode) as client:
            result = await client.call_tool("kpi_mau", {})
    assert result.is_error
    assert result.structured_content is None
    text = only_text(result.content)
    assert KPI_READ in text and "Insufficient scope" in text
    assert sum(sandbox.counts.values()) == 0, "the upstream was called for a caller without kpi:read"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_reader_cannot_be_smuggled_in_through_the_arguments(
    mode: str, runtime: Runtime, sandbox: SandboxState
) -> None:
    smuggled = {"subject": "x", "scopes": [KPI_READ], "roles": ["admin"]}
    with anyio.fail_after(10), acting_as(Principal(subject="no-scope", scopes=frozenset(), roles=frozenset())):
        async with mcp_client(runtime, mode) as client:
            result = await client.call_tool("kpi_mau", {"reader": smuggled})
    assert result.is_error
    assert KPI_READ in only_text(result.content)
    assert sum(sandbox.counts.values()) == 0


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_session_without_a_verified_caller_gets_an_unauthorized_tool_error(mode: str, runtime: Runtime) -> None:
    with anyio.fail_after(10), acting_as(None):
        async with mcp_client(runtime, mode) as client:
            result = await client.call_tool("kpi_mau", {})
    assert result.is_error
    assert "Unauthorized" in only_text(result.content) and "KPI_ACCESS_TOKEN" in only_text(result.content)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_caller_whose_token_expired_during_the_session_gets_an_unauthorized_tool_error(
    mode: str, runtime: Runtime, sandbox: SandboxState
) -> None:
    expired = Principal(
        subject="reader", scopes=frozenset({KPI_READ}), roles=frozenset(), expires_at=int(time.time()) - 3600
    )
    with anyio.fail_after(10), acting_as(expired):
        async with mcp_client(runtime, mode) as client:
            result = await client.call_tool("kpi_mau", {})
    assert result.is_error
    assert "expired" in only_text(result.content)
    assert "loop-kpi token --sub" in only_text(result.content)  # names the fix
    assert sum(sandbox.counts.values()) == 0


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("role", ["admin", "exec"])
async def test_privileged_roles_may_call_tools_without_the_scope(mode: str, role: str, runtime: Runtime) -> None:
    with anyio.fail_after(10), acting_as(Principal(subject=role, scopes=frozenset(), roles=frozenset({role}))):
        async with mcp_client(runtime, mode) as client:
            result = await client.call_tool("kpi_mau", SAMPLE_ARGUMENTS["kpi_mau"])
    assert not result.is_error, result.content
    assert result.structured_content is not None


# ---------------------------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class ErrorCase:
    tool: str
    arguments: dict[str, Any]
    title: str
    fault: tuple[str, FaultSpec] | None = None
    overrides: dict[str, Any] = field(default_factory=dict[str, Any])
    mentions: tuple[str, ...] = ()


REFUND_ARGUMENTS = {"start_date": "2026-09-01", "end_date": "2026-11-20"}
ERROR_CASES = {
    "upstream-500": ErrorCase("kpi_mau", {}, "Upstream failure", ("amplitude.users", FaultSpec(status=500))),
    "upstream-502-revenuecat": ErrorCase(
        "kpi_refund_analysis", REFUND_ARGUMENTS, "Upstream failure", ("revenuecat.chart", FaultSpec(status=502))
    ),
    "upstream-malformed-json": ErrorCase(
        "kpi_mau", {}, "Upstream failure", ("amplitude.users", FaultSpec(malformed_json=True))
    ),
    "upstream-wrong-shape": ErrorCase(
        "kpi_refund_analysis", REFUND_ARGUMENTS, "Upstream failure", ("revenuecat.chart", FaultSpec(wrong_shape=True))
    ),
    "upstream-rejects-credentials": ErrorCase(
        "kpi_mau", {}, "Upstream rejected credentials", ("amplitude.users", FaultSpec(status=401))
    ),
    "upstream-429": ErrorCase(
        "kpi_mau",
        {},
        "Upstream rate limit",
        ("amplitude.users", FaultSpec(status=429, retry_after=7)),
        mentions=("retry", "7 s"),
    ),
    "upstream-timeout": ErrorCase(
        "kpi_mau",
        {},
        "Upstream timed out",
        ("amplitude.users", FaultSpec(latency=1.0)),
        overrides={"KPI_UPSTREAM_TIMEOUT": 0.2},
    ),
    "revenuecat-not-configured": ErrorCase(
        "kpi_refund_analysis",
        REFUND_ARGUMENTS,
        "Source not configured",
        overrides={"REVENUECAT_API_KEY": None},
        mentions=("REVENUECAT_API_KEY",),
    ),
    "unknown-user": ErrorCase("kpi_user_journey", {"user_id": "no_such_user_999"}, "Not found"),
    "invalid-input": ErrorCase(
        "kpi_mau", {"start_month": "2026-10-01", "end_month": "2026-01-01"}, "Invalid input", mentions=("start_month",)
    ),
}


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", ERROR_CASES.values(), ids=ERROR_CASES.keys())
async def test_service_errors_become_tool_errors_with_the_rest_problem_title_and_detail(
    mode: str, case: ErrorCase, make_settings: Callable[..., Settings], sandbox: SandboxState
) -> None:
    settings = make_settings(KPI_UPSTREAM_RETRIES=0, **case.overrides)  # retries are the clients' tests' business
    if case.fault is not None:
        sandbox.inject(*case.fault)
    method, path, request = rest_request(case.tool, case.arguments)
    auth = {"Authorization": f"Bearer {token()}"}
    with TestClient(create_app(settings, clock=clock), base_url=BASE_URL, headers=auth) as rest:
        response = rest.request(method, path, **request)
    problem: dict[str, Any] = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["status"] == response.status_code and problem["title"] == case.title

    with anyio.fail_after(20), acting_as(READER):
        async with (
            open_runtime(settings, data_source="sandbox", clock=clock) as runtime,
            mcp_client(runtime, mode) as client,
        ):
            result = await client.call_tool(case.tool, case.arguments)

    assert result.is_error and result.structured_content is None
    text = only_text(result.content)
    assert text.startswith(f"Error executing tool {case.tool}: "), "the SDK masked the cause"
    assert text != f"Error executing tool {case.tool}"
    assert f"{problem['title']}: {problem['detail']}" in text
    for needle in case.mentions:
        assert needle in text
    for secret in SECRETS:
        assert secret not in text
        assert secret not in response.text


# ---------------------------------------------------------------------------------------------- tracing


@pytest.mark.anyio
async def test_the_sdks_tracing_middleware_runs_only_once_a_tracer_provider_is_configured() -> None:
    def no_runtime() -> Runtime:
        raise AssertionError("no tool is called here")

    server = build_mcp(no_runtime)
    assert not any(isinstance(middleware, OpenTelemetryMiddleware) for middleware in server.middleware)
    assert not tracing_configured()  # the tests install no provider: the SDK's spans would all be no-ops

    spans: list[object] = []

    async def tracer(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        spans.append(ctx)
        return await call_next(ctx)

    async def handler(ctx: Any) -> dict[str, Any]:
        return {"answered": ctx}

    configured = False
    traced = traced_when_configured(tracer, lambda: configured)
    first: Any = "tools/call #1"
    second: Any = "tools/call #2"
    assert await traced(first, handler) == {"answered": first}
    configured = True
    assert await traced(second, handler) == {"answered": second}
    assert spans == [second]
