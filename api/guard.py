"""The bearer check as pure ASGI, in front of `/api/kpi` and `/mcp`.

It runs before the app reads a request body, so an unauthenticated caller gets 401 (and one without the scope
403) rather than a validation error about a body it had no right to send. It never buffers a response, so MCP's
streamed answers pass through untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import kpi_error_response
from shared.auth.bearer import authenticate_bearer
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
    ) -> None:
        self.app = app
        self.get_runtime = get_runtime
        self.prefix = prefix
        self.resource_metadata = resource_metadata
        self.enter = enter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        runtime = self.get_runtime()
        try:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            header = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"authorization"), None)
            principal = await authenticate_bearer(
                header,
                token_in_query="access_token" in query,
                verifier=runtime.verifier,
                allow_anonymous=runtime.anonymous_allowed,
            )
            require_kpi_access(principal)
        except AuthError as exc:
            metadata = self.resource_metadata(runtime) if self.resource_metadata else None
            response = kpi_error_response(exc, instance=scope.get("path"), resource_metadata=metadata)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        with self.enter(principal) if self.enter else nullcontext():
            await self.app(scope, receive, send)
