"""`loop-kpi`: serve the REST + MCP app, run the MCP stdio server, mint tokens, or run the sandbox alone."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

from shared.audit import AUDIT_LOGGER, AuditFormatter, EscapingFormatter
from shared.auth.tokens import mint_token
from shared.settings import Settings

DEMO_TOKEN_TTL = 8 * 3600


def configure_logging(level: str = "INFO") -> None:
    """Logs go to stderr (stdout is the protocol channel of the stdio MCP server)."""
    logging.basicConfig(stream=sys.stderr, level=level)
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:  # basicConfig's (not a test harness's)
            handler.setFormatter(EscapingFormatter())  # no raw newline from request input reaches the log
    # The audit trail: its own handler, `AUDIT {json}` lines on stderr, whatever the level of the rest.
    audit_handler = logging.StreamHandler(sys.stderr)
    audit_handler.setFormatter(AuditFormatter())
    AUDIT_LOGGER.handlers[:] = [audit_handler]
    AUDIT_LOGGER.setLevel(logging.INFO)
    AUDIT_LOGGER.propagate = False
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _settings(**overrides: Any) -> Settings:
    base = Settings()
    return Settings.model_validate({**base.model_dump(), **{k: v for k, v in overrides.items() if v is not None}})


def banner(settings: Settings, *, given_secret: bool = False) -> str:
    """The sandbox start-up banner: where to go, a ready token, and a curl line that works as printed.
    `given_secret`: KPI_JWT_SECRET came from the operator (not made up for this process), so the token works on
    every instance sharing it."""
    secret = settings.KPI_JWT_SECRET.get_secret_value() if settings.KPI_JWT_SECRET else None
    base = settings.KPI_PUBLIC_URL
    lines = [
        "",
        "Loop KPI is running on SANDBOX data (synthetic; every response says X-KPI-Data-Source: sandbox).",
        f"  API:       {base}/api/kpi/overview",
        f"  Docs:      {base}/docs",
        f"  MCP:       {base}/mcp (streamable HTTP)",
    ]
    if settings.KPI_NO_AUTH:
        lines.append("  Auth:      OFF (--no-auth, sandbox only)")
        lines.append(f"  Try:       curl -s {shlex.quote(base + '/api/kpi/overview')}")
    elif secret:
        token = mint_token(
            secret,
            subject="demo",
            scopes=("kpi:read",),
            ttl=DEMO_TOKEN_TTL,
            issuer=settings.KPI_JWT_ISSUER,
            audience=settings.KPI_JWT_AUDIENCE,
        )
        lines.append(f"  Token:     {token}")
        signed = (
            "signed with KPI_JWT_SECRET: valid on every instance sharing that secret"
            if given_secret
            else "signed with this process's secret"
        )
        lines.append(f"             (kpi:read, valid 8 h, {signed})")
        lines.append(
            f'  Try:       curl -s -H "Authorization: Bearer {token}" {shlex.quote(base + "/api/kpi/overview")}'
        )
        lines.append("  For the README's examples, in another terminal:")
        lines.append(f"             export TOKEN={token}")
    return "\n".join(lines) + "\n"


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.connections import server_limits
    from api.main import create_app

    configure_logging()
    public_url = os.environ.get("KPI_PUBLIC_URL") or f"http://{args.host}:{args.port}"
    settings = _settings(
        KPI_SANDBOX=True if args.sandbox else None,
        KPI_NO_AUTH=True if args.no_auth else None,
        KPI_PUBLIC_URL=public_url,
    )
    if settings.KPI_NO_AUTH and not settings.KPI_SANDBOX:
        print("loop-kpi: --no-auth is only allowed with --sandbox; production never runs open.", file=sys.stderr)
        return 2

    if args.workers > 1:
        return serve_workers(args, settings)

    given_secret = settings.KPI_JWT_SECRET is not None

    def on_ready(effective: Settings) -> None:
        if effective.KPI_SANDBOX:
            print(banner(effective, given_secret=given_secret), file=sys.stderr, flush=True)

    app = create_app(settings, on_ready=on_ready)
    # No per-request access log: the audit log already writes one structured line per KPI call.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="info",
        log_config=None,  # uvicorn's own lines go through the escaping root handler too
        access_log=False,
        **server_limits(settings),
        proxy_headers=False,
        server_header=False,
    )
    return 0


def worker_app() -> FastAPI:
    """The app of one `--workers` process: logging as in the parent, settings from the environment."""
    from api.connections import server_limits
    from api.main import create_app

    configure_logging()
    server_limits(Settings())  # this worker's header timeout (uvicorn's parent passed the rest)
    return create_app()


def serve_workers(args: argparse.Namespace, settings: Settings) -> int:
    """Several worker processes, each building the app from the environment. Whatever must be the same in every
    worker (the sandbox, the JWT secret) is made here once and handed down through the environment."""
    import uvicorn

    from api.connections import server_limits
    from api.main import with_ephemeral_secret
    from shared.runtime import sandbox_upstreams

    log = logging.getLogger("loop_kpi")
    if settings.KPI_REDIS_URL is None:
        log.warning("--workers without KPI_REDIS_URL: each worker keeps its own cache and upstream budget")
    given_secret = settings.KPI_JWT_SECRET is not None
    if settings.KPI_SANDBOX:
        settings = with_ephemeral_secret(settings)
    with sandbox_upstreams(settings) as effective:
        env = {"KPI_PUBLIC_URL": settings.KPI_PUBLIC_URL}
        if settings.KPI_SANDBOX:
            env |= {"KPI_SANDBOX": "1", "KPI_SANDBOX_URL": effective.AMPLITUDE_BASE_URL}
            env |= {"KPI_NO_AUTH": "1"} if settings.KPI_NO_AUTH else {}
            if settings.KPI_JWT_SECRET is not None:
                env["KPI_JWT_SECRET"] = settings.KPI_JWT_SECRET.get_secret_value()
            print(banner(effective, given_secret=given_secret), file=sys.stderr, flush=True)
        os.environ.update(env)
        uvicorn.run(
            "api.cli:worker_app",
            factory=True,
            workers=args.workers,
            host=args.host,
            port=args.port,
            log_level="info",
            log_config=None,
            access_log=False,
            **server_limits(settings),
            proxy_headers=False,
            server_header=False,
        )
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    settings = Settings()
    if settings.KPI_JWT_SECRET is None:
        print("loop-kpi: set KPI_JWT_SECRET to mint a token.", file=sys.stderr)
        return 2
    try:
        token = mint_token(
            settings.KPI_JWT_SECRET.get_secret_value(),
            subject=args.sub,
            scopes=tuple(args.scope) if args.scope is not None else ("kpi:read",),
            roles=tuple(args.role or ()),
            ttl=args.ttl,
            issuer=settings.KPI_JWT_ISSUER,
            audience=settings.KPI_JWT_AUDIENCE,
        )
    except (TypeError, ValueError) as exc:
        print(f"loop-kpi: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    from shared.sandbox.__main__ import main as sandbox_main

    sandbox_main(["--host", args.host, "--port", str(args.port)])
    return 0


def cmd_mcp(args: argparse.Namespace) -> int:
    import anyio

    from server.stdio import run_stdio

    configure_logging("WARNING")
    return anyio.run(run_stdio, _settings(KPI_SANDBOX=True if args.sandbox else None))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loop-kpi", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve REST (/api/kpi) and MCP (/mcp) over HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--sandbox", action="store_true", help="serve the bundled synthetic data (or KPI_SANDBOX=1)")
    serve.add_argument("--no-auth", action="store_true", help="sandbox only: no authentication (conformance tests)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (share state through KPI_REDIS_URL)")
    serve.set_defaults(func=cmd_serve)

    token = commands.add_parser("token", help="mint an HS256 token signed with KPI_JWT_SECRET")
    token.add_argument("--sub", required=True, help="subject (who the token is for)")
    token.add_argument("--scope", action="append", help="a scope; repeat for several (default kpi:read)")
    token.add_argument("--role", action="append", help="a role, e.g. admin or exec; repeatable")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    token.set_defaults(func=cmd_token)

    mcp = commands.add_parser("mcp", help="serve MCP over stdio (identity from KPI_ACCESS_TOKEN)")
    mcp.add_argument("--sandbox", action="store_true", help="serve the bundled synthetic data (or KPI_SANDBOX=1)")
    mcp.set_defaults(func=cmd_mcp)

    sandbox = commands.add_parser("sandbox", help="run only the Amplitude + RevenueCat sandbox emulators")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8100)
    sandbox.set_defaults(func=cmd_sandbox)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `loop-kpi` console script."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
