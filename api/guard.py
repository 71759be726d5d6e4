"""The bearer check as pure ASGI, in front of `/api/kpi/*` (`RestGuard`) and `/mcp` (`McpGuard`).

Both run `authenticate` before the app reads a request body, so an unauthenticated caller gets 401 (and one without
the scope 403) rather than a validation error about a body it had no right to send, and both audit a denial. They
never buffer a response, so MCP's streamed answers pass through untouched. What differs is what follows success:
the REST guard audits the call (the operation comes from the app's routes, the cache hit from the request state);
the MCP guard publishes the caller to the tools, which audit their own calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import kpi_error_response
from api.fastpath import OperationRoute, match_operation
from api.state import cache_hit_of, set_principal
from server.context import publish
from shared.audit import Transport, audit
from shared.auth.bearer import authenticate_bearer, authorization_header
from shared.auth.scopes import Principal, require_kpi_access
from shared.caller import current_caller
from shared.errors import AuthError
from shared.runtime import Runtime

UNKNOWN_OPERATION = "unknown"
"""The audit's operation for a path under the prefix that is no operation (answered 404 to an authorized caller)."""
MCP_ENDPOINT_OPERATION = "mcp"
"""The audit's operation for a denied MCP request: the guard answers before the body names a tool."""


async def authenticate(
    scope: Scope,
    receive: Receive,
    send: Send,
    runtime: Runtime,
    *,
    operation: str,
    transport: Transport,
    resource_metadata: str | None = None,
) -> Principal | None:
    """The caller allowed to read KPIs, or None after answering (and auditing) the 401/403 problem."""
    started = time.perf_counter()
    principal: Principal | None = None
    try:
        raw_query: bytes = scope.get("query_string", b"")
        header = authorization_header(scope.get("headers", []))
        principal = await authenticate_bearer(
            header,
            token_in_query=bool(raw_query) and "access_token" in parse_qs(raw_query.decode("latin-1")),
            verifier=runtime.verifier,
            allow_anonymous=runtime.anonymous_allowed,
        )
        require_kpi_access(principal)
    except AuthError as exc:
        response = kpi_error_response(exc, instance=str(scope.get("path", "")), resource_metadata=resource_metadata)
        await response(scope, receive, send)
        audit(
            subject=principal.subject if principal is not None else None,
            operation=operation,
            transport=transport,
            status=exc.status,
            latency=time.perf_counter() - started,
            cache_hit=None,
        )
        return None
    set_principal(scope, principal)
    current_caller.set(principal.subject)  # the budgets' per-caller share (shared.caller); this request's task only
    return principal


class RestGuard:
    """Guards every path under `prefix` (the KPI operations' routes, and any other path there, which then 404s or
    405s only for an authorized caller) and writes one audit line per call."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        get_runtime: Callable[[], Runtime],
        routes: Callable[[], Sequence[OperationRoute]],
        prefix: str,
        resource_metadata: str | None,
    ) -> None:
        self.app = app
        self.get_runtime = get_runtime
        self.routes = routes
        self.prefix = prefix
        self.resource_metadata = resource_metadata

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        found = match_operation(self.routes(), scope)
        operation = found.operation.id if found is not None else UNKNOWN_OPERATION
        started = time.perf_counter()
        principal = await authenticate(
            scope,
            receive,
            send,
            self.get_runtime(),
            operation=operation,
            transport="rest",
            resource_metadata=self.resource_metadata,
        )
        if principal is None:
            return
        status = 500

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            audit(
                subject=principal.subject,
                operation=operation,
                transport="rest",
                status=status,
                latency=time.perf_counter() - started,
                cache_hit=cache_hit_of(scope),
            )


class McpGuard:
    """Guards the MCP endpoint: 401/403 with an RFC 9728 `resource_metadata` challenge (when an issuer is configured:
    `challenge_metadata_url`); the caller is published to the tools for the duration of the request."""

    def __init__(self, app: ASGIApp, *, get_runtime: Callable[[], Runtime], resource_metadata: str | None) -> None:
        self.app = app
        self.get_runtime = get_runtime
        self.resource_metadata = resource_metadata

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        principal = await authenticate(
            scope,
            receive,
            send,
            self.get_runtime(),
            operation=MCP_ENDPOINT_OPERATION,
            transport="mcp-http",
            resource_metadata=self.resource_metadata,
        )
        if principal is None:
            return
        with publish(principal, "mcp-http"):
            await self.app(scope, receive, send)
