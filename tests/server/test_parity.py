"""The two faces are one service: for the same inputs, the REST JSON body equals the MCP `structuredContent`, and each
tool's `outputSchema` is the REST response model's schema."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import anyio
import pydantic_core
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from mcp import Client
from pydantic import BaseModel

from api.main import create_app
from api.routes.kpi import build_router
from server.tools import build_mcp
from shared.operations import operation_ids
from shared.runtime import Runtime
from shared.sandbox import SandboxServer, SandboxState
from shared.settings import Settings
from tests.conftest import NOW, clock, token

from .support import (
    BASE_URL,
    MCP_POST_HEADERS,
    READER,
    RESULT_MODELS,
    SAMPLE_ARGUMENTS,
    acting_as,
    jsonrpc,
    rest_request,
    without_docs,
)

OPERATIONS = operation_ids()

CALLS: list[tuple[str, dict[str, Any]]] = [
    *((operation, SAMPLE_ARGUMENTS[operation]) for operation in OPERATIONS),
    ("kpi_overview", {}),
    ("kpi_mau", {}),
    ("kpi_conversion", {}),
    ("kpi_refund_analysis", {"start_date": "2026-11-01", "end_date": "2026-11-20", "resolution": "day"}),
]
CALL_IDS = [f"{operation}-{'defaults' if not arguments else 'sample'}" for operation, arguments in CALLS]
CALL_IDS[-1] = "kpi_refund_analysis-daily"


@pytest.fixture
def sandbox_mode_settings(make_settings: Callable[..., Settings], sandbox_server: SandboxServer) -> Settings:
    """`loop-kpi serve --sandbox` pointed at the session sandbox, so both faces say `data_source: sandbox`."""
    return make_settings(KPI_SANDBOX=True, KPI_SANDBOX_URL=sandbox_server.base_url)


@pytest.fixture
def app(sandbox_mode_settings: Settings, sandbox: SandboxState) -> FastAPI:
    return create_app(sandbox_mode_settings, clock=clock)


@pytest.fixture
def rest(app: FastAPI) -> Iterator[TestClient]:
    auth = {"Authorization": f"Bearer {token()}"}
    with TestClient(app, base_url=BASE_URL, headers=auth) as client:
        yield client


def rest_json(client: TestClient, operation: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    method, path, request = rest_request(operation, arguments)
    response = client.request(method, path, **request)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_same_result(rest_body: Mapping[str, Any], structured: Mapping[str, Any] | None) -> None:
    assert structured is not None
    # Timestamps are compared too: with the fixed clock both faces must say the same instant.
    assert rest_body["generated_at"] == structured["generated_at"] == NOW.isoformat().replace("+00:00", "Z")
    assert rest_body["data_source"] == "sandbox"
    assert dict(rest_body) == dict(structured)


@pytest.mark.parametrize(("operation", "arguments"), CALLS, ids=CALL_IDS)
def test_rest_json_equals_mcp_structured_content_over_the_same_apps_http_endpoint(
    rest: TestClient, operation: str, arguments: dict[str, Any]
) -> None:
    rest_body = rest_json(rest, operation, arguments)  # the tool may then be served from the app's cache
    response = rest.post(
        "/mcp", json=jsonrpc("tools/call", {"name": operation, "arguments": arguments}), headers=MCP_POST_HEADERS
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    assert result["isError"] is False
    assert_same_result(rest_body, result["structuredContent"])


@pytest.mark.parametrize(("operation", "arguments"), CALLS, ids=CALL_IDS)
def test_each_tool_results_text_block_is_the_compact_json_of_its_structured_content_and_the_rest_body(
    rest: TestClient, operation: str, arguments: dict[str, Any]
) -> None:
    method, path, request = rest_request(operation, arguments)
    rest_response = rest.request(method, path, **request)
    assert rest_response.status_code == 200, rest_response.text
    for _ in ("computed", "cached"):
        response = rest.post(
            "/mcp", json=jsonrpc("tools/call", {"name": operation, "arguments": arguments}), headers=MCP_POST_HEADERS
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()["result"]
        [block] = result["content"]
        assert block["type"] == "text"
        assert block["text"] == pydantic_core.to_json(result["structuredContent"]).decode()
        assert block["text"].encode() == rest_response.content


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize(("operation", "arguments"), CALLS, ids=CALL_IDS)
async def test_rest_json_equals_mcp_structured_content_computed_by_a_separate_in_memory_server(
    rest: TestClient, runtime: Runtime, mode: str, operation: str, arguments: dict[str, Any]
) -> None:
    rest_body = rest_json(rest, operation, arguments)  # the app's own runtime and cache; the tool uses `runtime`
    with anyio.fail_after(20), acting_as(READER):
        async with Client(build_mcp(lambda: runtime), mode=mode) as client:
            result = await client.call_tool(operation, arguments)
    assert not result.is_error, result.content
    assert_same_result(rest_body, result.structured_content)


def rest_operations(app: FastAPI) -> dict[str, dict[str, Any]]:
    """The app's documented KPI operations (OpenAPI), by operation id."""
    return {
        operation["operationId"]: operation
        for path, item in app.openapi()["paths"].items()
        if path.startswith("/api/kpi/")
        for operation in item.values()
    }


def response_models() -> dict[str, type[BaseModel]]:
    """The `response_model` each REST route declares, by operation id."""
    models: dict[str, type[BaseModel]] = {}
    for route in build_router().routes:
        assert isinstance(route, APIRoute) and route.operation_id
        assert isinstance(route.response_model, type) and issubclass(route.response_model, BaseModel)
        models[route.operation_id] = route.response_model
    return models


def inline_refs(node: Any, definitions: Mapping[str, Any]) -> Any:
    """The schema with every local `$ref` replaced by its target and `$defs` dropped (definitions are acyclic)."""
    if isinstance(node, dict):
        items: dict[str, Any] = dict(node)  # pyright: ignore[reportUnknownArgumentType]
        if "$ref" in items:
            target = definitions[str(items.pop("$ref")).rsplit("/", 1)[1]]
            return inline_refs({**target, **items}, definitions)
        return {key: inline_refs(value, definitions) for key, value in items.items() if key != "$defs"}
    if isinstance(node, list):
        return [inline_refs(value, definitions) for value in node]  # pyright: ignore[reportUnknownVariableType]
    return node


def without_null_defaults(node: Any) -> Any:
    """FastAPI's OpenAPI leaves out `"default": null`; pydantic's JSON schema (and so the MCP SDK) keeps it."""
    if isinstance(node, dict):
        items: dict[str, Any] = dict(node)  # pyright: ignore[reportUnknownArgumentType]
        return {
            key: without_null_defaults(value)
            for key, value in items.items()
            if not (key == "default" and value is None)
        }
    if isinstance(node, list):
        return [without_null_defaults(value) for value in node]  # pyright: ignore[reportUnknownVariableType]
    return node


@pytest.mark.anyio
async def test_every_tool_is_a_rest_operation_with_the_same_id(sandbox_mode_settings: Settings) -> None:
    documented = rest_operations(create_app(sandbox_mode_settings, clock=clock))
    with anyio.fail_after(10):
        async with Client(build_mcp(lambda: None)) as client:  # pyright: ignore[reportArgumentType]
            names = [tool.name for tool in (await client.list_tools()).tools]
    assert sorted(names) == sorted(documented) == sorted(response_models()) == sorted(OPERATIONS)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_each_tool_output_schema_equals_its_rest_response_model_schema(
    sandbox_mode_settings: Settings, mode: str
) -> None:
    app = create_app(sandbox_mode_settings, clock=clock)
    documented = rest_operations(app)
    models = response_models()
    components: dict[str, Any] = app.openapi()["components"]["schemas"]
    with anyio.fail_after(10):
        async with Client(build_mcp(lambda: None), mode=mode) as client:  # pyright: ignore[reportArgumentType]
            tools = (await client.list_tools()).tools
    for tool in tools:
        model = models[tool.name]
        assert model is RESULT_MODELS[tool.name]
        # The listing drops derived titles and repeated descriptions (server.lean); what the schema accepts stays.
        assert without_docs(tool.output_schema) == without_docs(model.model_json_schema()), tool.name

        rest_schema = documented[tool.name]["responses"]["200"]["content"]["application/json"]["schema"]
        assert tool.output_schema is not None
        mcp_schema = inline_refs(tool.output_schema, tool.output_schema.get("$defs", {}))
        rest_inlined = inline_refs(rest_schema, components)
        assert without_docs(without_null_defaults(mcp_schema)) == without_docs(rest_inlined), tool.name


def normalized(node: Any) -> Any:
    """A schema without titles (FastAPI and the SDK name models differently), without null defaults, and with an
    optional parameter's `anyOf: [T, null]` read as `T` (the OpenAPI document flattens it for Swagger's inputs)."""
    if isinstance(node, dict):
        items: dict[str, Any] = dict(node)  # pyright: ignore[reportUnknownArgumentType]
        alternatives: list[Any] = items.get("anyOf", [])
        kept = [alternative for alternative in alternatives if alternative != {"type": "null"}]
        if len(alternatives) == 2 and len(kept) == 1:
            del items["anyOf"]
            items = {**kept[0], **items}
        return {key: normalized(value) for key, value in without_null_defaults(items).items() if key != "title"}
    if isinstance(node, list):
        return [normalized(value) for value in node]  # pyright: ignore[reportUnknownVariableType]
    return node


def rest_input_schema(operation: Mapping[str, Any], components: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs of a documented REST operation as one object schema: its parameters, or its JSON body."""
    if "requestBody" in operation:
        body = inline_refs(operation["requestBody"]["content"]["application/json"]["schema"], components)
        return {"properties": body["properties"], "required": sorted(body.get("required", []))}
    properties: dict[str, Any] = {}
    for parameter in operation.get("parameters", []):
        schema = inline_refs(parameter["schema"], components)
        if "description" in parameter:
            schema = {**schema, "description": parameter["description"]}
        properties[parameter["name"]] = schema
    required = sorted(p["name"] for p in operation.get("parameters", []) if p.get("required"))
    return {"properties": properties, "required": required}


@pytest.mark.anyio
async def test_each_tool_input_schema_equals_its_rest_inputs_names_types_limits_and_required(
    sandbox_mode_settings: Settings,
) -> None:
    app = create_app(sandbox_mode_settings, clock=clock)
    documented = rest_operations(app)
    components: dict[str, Any] = app.openapi()["components"]["schemas"]
    with anyio.fail_after(10):
        async with Client(build_mcp(lambda: None)) as client:  # pyright: ignore[reportArgumentType]
            tools = (await client.list_tools()).tools
    assert len(tools) == len(OPERATIONS)
    for tool in tools:
        mcp_schema = inline_refs(tool.input_schema, tool.input_schema.get("$defs", {}))
        mcp_inputs = {"properties": mcp_schema["properties"], "required": sorted(mcp_schema.get("required", []))}
        rest_inputs = rest_input_schema(documented[tool.name], components)
        assert normalized(mcp_inputs) == normalized(rest_inputs), tool.name


def test_the_input_comparison_sees_a_drifted_limit() -> None:
    rest = {"parameters": [{"name": "days", "schema": {"type": "integer", "maximum": 90}, "required": False}]}
    mcp: dict[str, Any] = {"properties": {"days": {"type": "integer", "maximum": 60}}, "required": []}
    assert normalized(rest_input_schema(rest, {})) != normalized(mcp)
