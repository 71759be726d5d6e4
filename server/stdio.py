"""`loop-kpi mcp`: the MCP server over stdio, for Claude Desktop and Claude Code.

The caller's identity comes from `KPI_ACCESS_TOKEN`, verified at start-up by the same verifier as HTTP (the MCP
spec: stdio servers take credentials from the environment). Missing, invalid or expired: exit 2 with one line on
stderr. With `--sandbox` and no token, a local principal with `kpi:read`. stdout carries only the protocol.

A desktop host starts every configured server at launch and waits for `initialize`, then lists the tools. Neither
needs the upstream runtime (HTTP clients, the KPI service and its cache, the sandbox with `--sandbox`), so it is
opened by the first request that does (a tool call or a resource read), in a task of its own that keeps it open
until the session ends (`OnDemandRuntime`). Start-up imports no web framework, no Redis client and no sandbox.
"""

from __future__ import annotations

import sys
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from server.context import current_principal, current_transport
from server.tools import build_mcp
from shared.auth.allowlist import UnknownOperationError, resolve_allowlist
from shared.auth.scopes import Principal
from shared.caller import current_caller
from shared.errors import AuthenticationError
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.runtime import Runtime

EXIT_USAGE = 2
DESKTOP_TOKEN_TTL = 30 * 24 * 3600  # a lifetime that fits a desktop client's config (30 days)
NEEDS_RUNTIME = frozenset({"tools/call", "resources/read"})
"""The requests that may reach the service; `initialize`, listings, prompts and completions never wait for it."""


def _fail(message: str) -> int:
    print(f"loop-kpi mcp: {message}", file=sys.stderr, flush=True)  # noqa: T201 - the one line a failed start prints
    return EXIT_USAGE


async def identify(settings: Settings) -> Principal:
    """The stdio caller, verified from `KPI_ACCESS_TOKEN`, or the local sandbox principal."""
    token = settings.KPI_ACCESS_TOKEN.get_secret_value().strip() if settings.KPI_ACCESS_TOKEN else ""
    if not token:
        if settings.KPI_SANDBOX:
            return Principal.local("sandbox-local")
        raise AuthenticationError(
            "KPI_ACCESS_TOKEN is not set; it must hold a bearer token with kpi:read (loop-kpi token --sub NAME "
            f"--ttl {DESKTOP_TOKEN_TTL}), or use --sandbox for the synthetic demo data.",
            token_sent=False,
        )
    from shared.auth.tokens import TokenVerifier  # PyJWT and cryptography: only when there is a token to verify

    async with TokenVerifier(settings) as verifier:
        if not verifier.configured:
            raise AuthenticationError(
                "cannot be verified: set KPI_JWT_SECRET (the secret the token was signed with), KPI_JWT_ISSUER "
                "(your identity provider) or KPI_JWKS_URL (its JWKS).",
                token_sent=True,
            )
        return await verifier.verify(token)


class OnDemandRuntime:
    """The session's runtime, opened when the first request needing it arrives and closed when the session ends.

    `keep_open` runs in the session's task group (the runtime's own task group must be entered and left by one
    task); requests in `NEEDS_RUNTIME` wait in `middleware` until it is open. A runtime that fails to open fails
    the session, as it did when it was opened before serving.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._runtime: Runtime | None = None
        self._wake = anyio.Event()  # the first request needing the runtime arrived, or the session ended
        self._opened = anyio.Event()
        self._ended = anyio.Event()

    def get(self) -> Runtime:
        """The open runtime (what the tools call); only ever called behind `middleware`."""
        if self._runtime is None:
            raise RuntimeError("the stdio runtime is opened by the first request that needs it")
        return self._runtime

    async def keep_open(self) -> None:
        """Open the runtime when first needed and keep it open until `end`; returns at once if never needed."""
        await self._wake.wait()
        if self._ended.is_set():
            return
        from shared.runtime import open_runtime, sandbox_upstreams

        settings = self._settings
        async with AsyncExitStack() as stack:
            effective = stack.enter_context(sandbox_upstreams(settings))
            self._runtime = await stack.enter_async_context(
                open_runtime(effective, data_source="sandbox" if settings.KPI_SANDBOX else "live")
            )
            self._opened.set()
            await self._ended.wait()

    def end(self) -> None:
        """The session is over: close the runtime if it was opened."""
        self._ended.set()
        self._wake.set()

    async def middleware(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method in NEEDS_RUNTIME and self._runtime is None:
            self._wake.set()
            await self._opened.wait()
        return await call_next(ctx)


async def run_stdio(settings: Settings) -> int:
    """Serve MCP on stdin/stdout until the client closes the stream; returns the exit code."""
    try:
        allowed = resolve_allowlist(settings.MCP_ALLOWED_OPERATIONS)
        principal = await identify(settings)
    except (UnknownOperationError, ValueError) as exc:
        return _fail(str(exc))
    except AuthenticationError as exc:
        fix = f"; mint a new one: loop-kpi token --sub NAME --ttl {DESKTOP_TOKEN_TTL}"
        hint = fix if "expired" in exc.detail else ""
        return _fail(f"KPI_ACCESS_TOKEN rejected: {exc.detail}{hint}")
    current_principal.set(principal)
    current_caller.set(principal.subject)
    current_transport.set("mcp-stdio")
    runtime = OnDemandRuntime(settings)
    mcp = build_mcp(runtime.get, allowed)
    mcp.middleware.append(runtime.middleware)
    async with anyio.create_task_group() as session:
        session.start_soon(runtime.keep_open)
        try:
            await mcp.run_stdio_async()
        finally:
            runtime.end()
    return 0
