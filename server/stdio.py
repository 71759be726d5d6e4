"""`loop-kpi mcp`: the MCP server over stdio, for Claude Desktop and Claude Code.

The caller's identity comes from `KPI_ACCESS_TOKEN`, verified at start-up by the same verifier as HTTP (the MCP
spec: stdio servers take credentials from the environment). Missing, invalid or expired: exit 2 with one line on
stderr. With `--sandbox` and no token, a local principal with `kpi:read`. stdout carries only the protocol.
"""

from __future__ import annotations

import sys
from contextlib import AsyncExitStack

from server.context import current_principal, current_transport
from server.tools import build_mcp
from shared.auth.allowlist import UnknownOperationError, resolve_allowlist
from shared.auth.scopes import Principal
from shared.auth.tokens import TokenVerifier
from shared.caller import current_caller
from shared.errors import AuthenticationError
from shared.runtime import open_runtime, sandbox_upstreams
from shared.settings import Settings

EXIT_USAGE = 2
DESKTOP_TOKEN_TTL = 30 * 24 * 3600  # a lifetime that fits a desktop client's config (30 days)


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
    if settings.KPI_JWT_SECRET is None and not settings.KPI_JWKS_URL:
        raise AuthenticationError(
            "cannot be verified: set KPI_JWT_SECRET (the secret the token was signed with) or KPI_JWKS_URL "
            "(your identity provider's JWKS).",
            token_sent=True,
        )
    async with TokenVerifier(settings) as verifier:
        return await verifier.verify(token)


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
    async with AsyncExitStack() as stack:
        effective = stack.enter_context(sandbox_upstreams(settings))
        runtime = await stack.enter_async_context(
            open_runtime(effective, data_source="sandbox" if settings.KPI_SANDBOX else "live")
        )
        current_principal.set(principal)
        current_caller.set(principal.subject)
        current_transport.set("mcp-stdio")
        await build_mcp(lambda: runtime, allowed).run_stdio_async()
    return 0
