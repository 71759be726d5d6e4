"""MCP Apps (`io.modelcontextprotocol/ui`): each KPI tool declares a `ui://` view that renders its result with the
dashboard's own charts and panels, inside hosts that support MCP Apps (Claude, ChatGPT, VS Code, ...).

The views are self-contained HTML documents (`text/html;profile=mcp-app`, see `shared.ui.mcp_app_html`):
hosts render them in a sandboxed iframe and hand them the tool result over postMessage, so they need no origin
and declare no CSP domains. Hosts without MCP Apps ignore the `_meta.ui` of a tool and get today's text and
`structuredContent` unchanged.

Reading a view goes through the same gates as the tools: the HTTP bearer guard in front of `/mcp`, the scope
checker (`current_reader`), and the allowlist (only allowlisted operations get a view).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from mcp.server.apps import APP_MIME_TYPE, Apps
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.server.mcpserver.resources import FunctionResource

from server.context import AccessDeniedError, current_reader
from shared.operations import OPERATIONS, AnyOperation
from shared.ui import mcp_app_html


@cache
def _view(operation: str) -> str:
    """The view's document, built on its first read (not at start-up: a stdio host waits for `initialize`)."""
    return mcp_app_html(operation)


def app_uri(operation: str) -> str:
    return f"ui://loop-kpi/{operation}.html"


def apps_extension() -> Apps:
    """The MCP Apps capability (`capabilities.extensions["io.modelcontextprotocol/ui"]`), for
    `MCPServer(..., extensions=[apps_extension()])`: hosts only render views of servers that advertise it."""
    return Apps()


def register_apps(mcp: MCPServer, allowed: Sequence[AnyOperation] = OPERATIONS) -> dict[str, dict[str, Any]]:
    """Register the `ui://` view of every allowed operation on `mcp`; return the `_meta` each tool must carry
    (`{"ui": {"resourceUri": ...}}`), keyed by operation name, for `add_tool(..., meta=...)`."""
    metas: dict[str, dict[str, Any]] = {}
    for operation in allowed:

        async def read(tool: str = operation.id) -> str:
            try:
                await current_reader()
            except AccessDeniedError as exc:
                # A ResourceError keeps its message on the wire (anything else becomes "Error reading resource").
                raise ResourceError(str(exc)) from exc
            return _view(tool)

        uri = app_uri(operation.id)
        mcp.add_resource(
            FunctionResource(
                uri=uri,
                name=f"{operation.id}_view",
                title=f"{operation.title} view",
                description=f"Renders the result of `{operation.id}` with the Loop KPI dashboard's charts (MCP Apps).",
                mime_type=APP_MIME_TYPE,
                meta={"ui": {"prefersBorder": True}},
                fn=read,
            )
        )
        metas[operation.id] = {"ui": {"resourceUri": uri}}
    return metas
