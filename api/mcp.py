"""MCP over streamable HTTP inside the app, at exactly `/mcp`, behind the same bearer check as REST.

The host mounts the MCP server (`server.tools.build_mcp`); the server knows nothing of the host. The SDK's own auth is
not used: it cannot express "kpi:read OR role admin/exec" and omits `scope=` from its 403 challenge. `McpGuard`
verifies the token with the runtime's verifier, applies the one scope checker, answers 401/403 as problem details
with a Bearer challenge, and publishes the caller to the tools.

With an OpenID Connect issuer (`KPI_JWT_ISSUER`) the RFC 9728 metadata names it as the authorization server and the
challenges point at the metadata, so a remote MCP client can sign in on its own. Without one (local HS256 tokens from
`loop-kpi token`) there is no metadata (404) and no `resource_metadata` in the challenge: the MCP authorization spec
makes authorization optional, and a client that found metadata naming no working authorization server would start
an OAuth flow that cannot finish; such clients are configured with an `Authorization: Bearer` header instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from starlette.exceptions import HTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import http_error_response
from api.guard import McpGuard
from api.mcp_lean import LeanMcp
from shared.auth.challenge import MCP_PATH, PRM_PATH, challenge_metadata_url, resource_url
from shared.auth.scopes import KPI_READ
from shared.runtime import Runtime
from shared.settings import Settings


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection stays on; allowed hosts come from settings plus the public URL's host."""
    hosts = list(settings.KPI_ALLOWED_HOSTS)
    public = urlsplit(settings.KPI_PUBLIC_URL)
    if public.netloc and public.netloc not in hosts:
        hosts.append(public.netloc)
    origins = [f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


class EarlyMcp:
    """`POST /mcp` straight to its guard, ahead of the router and FastAPI's per-request exit stack (as the REST fast
    path answers warm GETs ahead of them): about a twentieth of a warm `tools/call`'s CPU. Everything outside this
    middleware (the body limit, the data-source header, error pages) still applies; a body over the limit, which
    `BodyLimit` raises while the endpoint reads it, is answered with the same 413 problem the app's handler gives."""

    def __init__(self, app: ASGIApp, *, endpoint: ASGIApp) -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != MCP_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            await self.endpoint(scope, receive, send)
        except HTTPException as exc:
            # Raised by the body limit while the request was read, before any answer (both paths read it first).
            await http_error_response(exc, instance=MCP_PATH)(scope, receive, send)


def mount_mcp(app: FastAPI, mcp: MCPServer, settings: Settings, get_runtime: Callable[[], Runtime]) -> ASGIApp:
    """Serve `mcp` at exactly `/mcp` (stateless, JSON responses) and its protected resource metadata; returns the
    guarded endpoint, for `EarlyMcp`."""
    security = transport_security(settings)
    mcp.streamable_http_app(
        streamable_http_path=MCP_PATH, stateless_http=True, json_response=True, transport_security=security
    )
    sdk = StreamableHTTPASGIApp(mcp.session_manager)
    # Single stateless JSON tools/call and tools/list skip the SDK's per-request session machinery (api/mcp_lean.py).
    endpoint = LeanMcp(sdk, mcp.session_manager, security) if settings.KPI_MCP_LEAN else sdk
    guard = McpGuard(
        endpoint,
        get_runtime=get_runtime,
        resource_metadata=challenge_metadata_url(settings),
    )
    # Stateless: no server-initiated stream to open (GET) and no session to end (DELETE). The transport spec lets a
    # server answer 405 to GET; the SDK would otherwise hold a GET open forever.
    # First in the route table: a tools/call is not matched against every REST and docs route before its own.
    app.router.routes.insert(0, Route(MCP_PATH, endpoint=guard, methods=["POST"], include_in_schema=False))

    if not settings.KPI_JWT_ISSUER:
        return guard  # no authorization server to name: no metadata (see the module docstring)
    metadata = {
        "resource": resource_url(settings),
        "authorization_servers": [settings.KPI_JWT_ISSUER],
        "scopes_supported": [KPI_READ],
        "bearer_methods_supported": ["header"],
        "resource_name": "Loop KPI",
    }
    encoded = json.dumps(metadata).encode()

    async def protected_resource_metadata() -> JSONResponse:
        return JSONResponse(json.loads(encoded), headers={"Cache-Control": "public, max-age=3600"})

    for path in (PRM_PATH, PRM_PATH + MCP_PATH):
        app.add_api_route(
            path,
            protected_resource_metadata,
            methods=["GET"],
            include_in_schema=False,
            summary="RFC 9728 protected resource metadata of the MCP endpoint",
        )
    return guard
