"""MCP Apps: `register_apps` gives each allowlisted tool a `ui://` view, read through the SDK's in-memory client."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError

from server.apps import app_uri
from server.tools import build_mcp
from shared.auth.allowlist import resolve_allowlist
from shared.auth.scopes import Principal
from shared.operations import operation_ids

from .support import READER, acting_as

OPERATIONS = operation_ids()
NO_SCOPE = Principal(subject="nobody", scopes=frozenset({"reports:read"}), roles=frozenset())


def kpi_server(entries: list[str] | None = None) -> MCPServer:
    """The real MCP server for an allowlist (its tools are not called here, so it needs no runtime)."""
    return build_mcp(lambda: None, resolve_allowlist(entries))  # pyright: ignore[reportArgumentType] - no runtime needed


@pytest.mark.anyio
async def test_every_tool_points_at_its_own_ui_view_served_as_an_mcp_app() -> None:
    with anyio.fail_after(10), acting_as(READER):
        async with Client(kpi_server()) as client:
            assert (client.server_capabilities.extensions or {}) == {EXTENSION_ID: {}}
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            resources = {str(r.uri): r for r in (await client.list_resources()).resources}
            for operation in OPERATIONS:
                uri = app_uri(operation)
                assert uri.startswith("ui://")
                assert (tools[operation].meta or {})["ui"] == {"resourceUri": uri}
                assert resources[uri].mime_type == APP_MIME_TYPE
                [content] = (await client.read_resource(uri)).contents
                assert content.mime_type == APP_MIME_TYPE
                html = getattr(content, "text", "")
                assert html.startswith("<!doctype html>")
                assert f'data-tool="{operation}"' in html
                # Self-contained: the chart library and the views are inlined; nothing is loaded from anywhere.
                assert "uPlot" in html and "window.LoopKpi" in html and "ui/initialize" in html
                assert "<script src=" not in html and "<link " not in html and "{{" not in html


@pytest.mark.anyio
async def test_only_allowlisted_operations_get_a_view() -> None:
    with anyio.fail_after(10), acting_as(READER):
        async with Client(kpi_server(["kpi_mau"])) as client:
            assert [tool.name for tool in (await client.list_tools()).tools] == ["kpi_mau"]
            uris = [str(r.uri) for r in (await client.list_resources()).resources]
            assert [uri for uri in uris if uri.startswith("ui://")] == [app_uri("kpi_mau")]
            with pytest.raises(MCPError):
                await client.read_resource(app_uri("kpi_overview"))


@pytest.mark.anyio
@pytest.mark.parametrize("principal", [None, NO_SCOPE], ids=["no caller", "no kpi:read"])
async def test_a_view_is_refused_to_callers_the_tools_refuse(principal: Principal | None) -> None:
    with anyio.fail_after(10), acting_as(principal):
        async with Client(kpi_server(["kpi_mau"])) as client:
            with pytest.raises(MCPError) as raised:
                await client.read_resource(app_uri("kpi_mau"))
    expected = "Unauthorized" if principal is None else "kpi:read"
    assert expected in raised.value.error.message
