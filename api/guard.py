"""The bearer check as pure ASGI, in front of `/api/kpi` and `/mcp`.

It runs before the app reads a request body, so an unauthenticated caller gets 401 (and one without the scope
403) rather than a validation error about a body it had no right to send. It never buffers a response, so MCP's
streamed answers pass through untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import kpi_error_response
from shared.audit import Transport, audit
from shared.auth.bearer import authenticate_bearer, authorization_header
from shared.auth.scopes import Principal, require_kpi_access
from shared.errors import AuthError
from shared.runtime import Runtime


class BearerGuard:
    """Authenticates and authorizes every HTTP request under `prefix`; puts the principal in `scope["state"]`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        get_runtime: Callable[[], Runtime],
        prefix: str = "",
        resource_metadata: Callable[[Runtime], str] | None = None,
        enter: Callable[[Principal], AbstractContextManager[object]] | None = None,
        operation_of: Callable[[str], str] | None = None,
        transport: Transport = "rest",
    ) -> None:
        """`operation_of(path)` names the operation audited per request; without it only denials are audited
        (MCP tools audit their own calls)."""
        self.app = app
        self.get_runtime = get_runtime
        self.prefix = prefix
        self.resource_metadata = resource_metadata
        self.enter = enter
        self.operation_of = operation_of
        self.transport: Transport = transport

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        runtime = self.get_runtime()
        started = time.perf_counter()
        path = str(scope.get("path", ""))
        operation = self.operation_of(path) if self.operation_of else "mcp"
        principal: Principal | None = None
        try:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            header = authorization_header(scope.get("headers", []))
            principal = await authenticate_bearer(
                header,
                token_in_query="access_token" in query,
                verifier=runtime.verifier,
                allow_anonymous=runtime.anonymous_allowed,
            )
            require_kpi_access(principal)
        except AuthError as exc:
            metadata = self.resource_metadata(runtime) if self.resource_metadata else None
            response = kpi_error_response(exc, instance=path, resource_metadata=metadata)
            await response(scope, receive, send)
            subject = principal.subject if principal is not None else None
            audit(
                subject=subject,
                operation=operation,
                transport=self.transport,
                status=exc.status,
                latency=time.perf_counter() - started,
                cache_hit=None,
            )
            return
        assert principal is not None
        scope.setdefault("state", {})["principal"] = principal
        if self.operation_of is None:
            with self.enter(principal) if self.enter else nullcontext():
                await self.app(scope, receive, send)
            return
        status, cache_hit = 500, None

        async def observe(message: Message) -> None:
            nonlocal status, cache_hit
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = dict(message.get("headers", []))
                cache = headers.get(b"x-kpi-cache")
                cache_hit = None if cache is None else cache == b"hit"
            await send(message)

        try:
            with self.enter(principal) if self.enter else nullcontext():
                await self.app(scope, receive, observe)
        finally:
            audit(
                subject=principal.subject,
                operation=operation,
                transport=self.transport,
                status=status,
                latency=time.perf_counter() - started,
                cache_hit=cache_hit,
            )
