"""Who is calling, on every MCP transport: a context variable set by the HTTP guard per request, or once by the
stdio entry point from `KPI_ACCESS_TOKEN`. Tools read it through `current_reader`, which applies the one scope
checker of `shared.auth`."""

from __future__ import annotations

import time
from contextvars import ContextVar, Token

from mcp.server.mcpserver.exceptions import ToolError

from shared.audit import Transport
from shared.auth.scopes import Principal, require_kpi_access
from shared.caller import current_caller
from shared.errors import InsufficientScopeError

current_principal: ContextVar[Principal | None] = ContextVar("loop_kpi_principal", default=None)
current_transport: ContextVar[Transport] = ContextVar("loop_kpi_transport", default="mcp-memory")


class publish:
    """Make a caller visible to the tools for as long as the context lasts (one HTTP request, say). A class rather
    than a generator: it runs on every MCP request, and this is a third of the cost."""

    __slots__ = ("_tokens", "principal", "transport")
    principal: Principal
    transport: Transport

    def __init__(self, principal: Principal, transport: Transport) -> None:
        self.principal = principal
        self.transport = transport
        self._tokens: tuple[Token[Principal | None], Token[Transport], Token[str | None]] | None = None

    def __enter__(self) -> None:
        self._tokens = (
            current_principal.set(self.principal),
            current_transport.set(self.transport),
            current_caller.set(self.principal.subject),
        )

    def __exit__(self, *exc_info: object) -> None:
        assert self._tokens is not None
        principal_token, transport_token, caller_token = self._tokens
        current_caller.reset(caller_token)
        current_transport.reset(transport_token)
        current_principal.reset(principal_token)


class AccessDeniedError(ToolError):
    """A tool error for a caller who may not read KPIs; `status` is what REST would answer (401 or 403)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


async def current_reader() -> Principal:
    """The caller, if it may read KPIs; otherwise a tool error the model can read, naming the missing scope."""
    principal = current_principal.get()
    if principal is None:
        raise AccessDeniedError("Unauthorized: no verified caller for this session (set KPI_ACCESS_TOKEN).", status=401)
    if principal.expires_at is not None and principal.expires_at <= time.time():
        # stdio verifies its token once, at start-up: a long session must still stop when the token expires.
        raise AccessDeniedError(
            "Unauthorized: the access token has expired. Mint a new one (loop-kpi token --sub NAME --ttl 2592000 "
            "for 30 days, with the service's KPI_JWT_SECRET), put it in KPI_ACCESS_TOKEN and restart the server.",
            status=401,
        )
    try:
        require_kpi_access(principal)
    except InsufficientScopeError as exc:
        raise AccessDeniedError(f"{exc.title}: {exc.detail}", status=403) from exc
    return principal
