"""`loop-kpi`: serve the REST + MCP app, run the MCP stdio server, mint tokens, or run the sandbox alone."""

from __future__ import annotations

import argparse
import errno
import gc
import logging
import os
import shlex
import socket
import sys
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Imported where used: the web stack by `serve` only (`loop-kpi mcp` starts without it), and the rest inside
    # the commands, so that `loop-kpi mcp` imports it with the collector paused (`cmd_mcp`).
    from fastapi import FastAPI

    from shared.settings import Settings

DEMO_TOKEN_TTL = 8 * 3600
EXIT_USAGE = 2
DESCRIPTION = (
    "Loop KPI: product and revenue KPIs from Amplitude and RevenueCat. Serve the REST API and MCP over HTTP, "
    "run the MCP server over stdio, mint access tokens, or run the upstream sandbox alone."
)
MAKE_SECRET = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'
DESKTOP_TOKEN_TTL = 30 * 24 * 3600


class ConfigurationError(Exception):
    """A setting stops the command from starting; the message is the one line printed, naming the fix."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("loop-kpi")
    except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
        return "unknown"


def check_port(host: str, port: int) -> None:
    """Fail with a one-line fix if (host, port) cannot be listened on, before anything is printed or built."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigurationError(f"cannot listen on host {host!r}: {exc.strerror}.") from exc
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigurationError(
                    f"port {port} on {host} is already in use (another loop-kpi or make demo?); pick another "
                    f"with --port {port + 1}, or make demo PORT={port + 1}."
                ) from exc
            raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}.") from exc


def warn_unconfigured_sources(settings: Settings) -> None:
    """One start-up warning naming every upstream variable still missing (their operations answer 503)."""
    missing = settings.missing_upstream_variables()
    if missing and not settings.KPI_SANDBOX:
        logging.getLogger("loop_kpi").warning(
            "upstream credentials missing: set %s (operations needing them answer 503; /readyz lists them). "
            "For synthetic data instead: loop-kpi serve --sandbox.",
            ", ".join(missing),
        )


def configure_logging(level: str = "INFO") -> None:
    """Logs go to stderr (stdout is the protocol channel of the stdio MCP server)."""
    from shared.audit import AUDIT_LOGGER, AuditFormatter, EscapingFormatter

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
    from shared.settings import Settings

    base = Settings()
    given = {k: v for k, v in overrides.items() if v is not None}
    return Settings.model_validate({**base.model_dump(), **given}) if given else base


def banner(settings: Settings, *, given_secret: bool = False) -> str:
    """The sandbox start-up banner: where to go, a ready token, and a curl line that works as printed.
    `given_secret`: KPI_JWT_SECRET came from the operator (not made up for this process), so the token works on
    every instance sharing it."""
    from shared.auth.tokens import mint_token, token_audiences

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
            audience=next(iter(token_audiences(settings)), None),
        )
        lines.append(f"  Dashboard: {base}/dashboard#token={token}")
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
    from shared.auth.allowlist import resolve_allowlist

    configure_logging()
    public_url = os.environ.get("KPI_PUBLIC_URL") or f"http://{args.host}:{args.port}"
    settings = _settings(
        KPI_SANDBOX=True if args.sandbox else None,
        KPI_NO_AUTH=True if args.no_auth else None,
        KPI_PUBLIC_URL=public_url,
    )
    if settings.KPI_NO_AUTH and not settings.KPI_SANDBOX:
        raise ConfigurationError(
            "--no-auth (or KPI_NO_AUTH=1) is only allowed with the sandbox: add --sandbox or set KPI_SANDBOX=1, "
            "or unset KPI_NO_AUTH; production never runs open."
        )
    resolve_allowlist(settings.MCP_ALLOWED_OPERATIONS)
    check_port(args.host, args.port)
    warn_unconfigured_sources(settings)

    if args.workers > 1:
        return serve_workers(args, settings)

    given_secret = settings.KPI_JWT_SECRET is not None

    def on_ready(effective: Settings) -> None:
        if effective.KPI_SANDBOX:
            print(banner(effective, given_secret=given_secret), file=sys.stderr, flush=True)

    app = create_app(settings, on_ready=on_ready, check_signing_keys=True)
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
    from shared.settings import Settings

    configure_logging()
    server_limits(Settings())  # this worker's header timeout (uvicorn's parent passed the rest)
    return create_app(check_signing_keys=True)


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
    from shared.auth.tokens import mint_token, token_audiences
    from shared.settings import Settings

    settings = Settings()
    if settings.KPI_JWT_SECRET is None:
        raise ConfigurationError(
            "set KPI_JWT_SECRET (the service's signing secret, at least 32 bytes) to mint a token; "
            f"make one with: {MAKE_SECRET}"
        )
    try:
        token = mint_token(
            settings.KPI_JWT_SECRET.get_secret_value(),
            subject=args.sub,
            scopes=tuple(args.scope) if args.scope is not None else ("kpi:read",),
            roles=tuple(args.role or ()),
            ttl=args.ttl,
            issuer=settings.KPI_JWT_ISSUER,
            audience=next(iter(token_audiences(settings)), None),
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


@contextmanager
def collector_paused() -> Generator[None]:
    """Cyclic garbage collection paused for a start-up, then resumed without the objects the start-up made.

    Importing the MCP SDK creates over a hundred thousand objects that live as long as the process (modules,
    classes, schemas); with the collector on, every burst of allocations has it trace them all again, a tenth of
    `loop-kpi mcp`'s start-up here. They are created with collection paused and then frozen (`gc.freeze`: never
    traced again, nor freed; a few hundred of them are start-up garbage), and collection resumes for everything
    the session allocates."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def cmd_mcp(args: argparse.Namespace) -> int:
    # A desktop host starts every configured server at launch and waits for `initialize`.
    with collector_paused():
        import anyio

        from server.stdio import run_stdio

    configure_logging("WARNING")
    return anyio.run(run_stdio, _settings(KPI_SANDBOX=True if args.sandbox else None))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loop-kpi", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="serve REST (/api/kpi) and MCP (/mcp) over HTTP",
        description="Serve the REST API under /api/kpi, its docs at /docs and MCP over streamable HTTP at /mcp. "
        "Upstream credentials and KPI_JWT_SECRET (or KPI_JWT_ISSUER / KPI_JWKS_URL) come from the environment or .env; with "
        "--sandbox, synthetic data and a printed demo token instead.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--sandbox", action="store_true", help="serve the bundled synthetic data (or KPI_SANDBOX=1)")
    serve.add_argument("--no-auth", action="store_true", help="sandbox only: no authentication (conformance tests)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (share state through KPI_REDIS_URL)")
    serve.set_defaults(func=cmd_serve)

    token = commands.add_parser(
        "token",
        help="mint an HS256 token signed with KPI_JWT_SECRET",
        description="Print a bearer token signed with KPI_JWT_SECRET (HS256), with kpi:read unless --scope or "
        "--role say otherwise, and KPI_JWT_ISSUER/KPI_JWT_AUDIENCE when set. For a desktop MCP client, "
        f"--ttl {DESKTOP_TOKEN_TTL} (30 days). No secret yet? Make one with: {MAKE_SECRET}",
    )
    token.add_argument("--sub", required=True, help="subject (who the token is for)")
    token.add_argument("--scope", action="append", help="a scope; repeat for several (default kpi:read)")
    token.add_argument("--role", action="append", help="a role, e.g. admin or exec; repeatable")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    token.set_defaults(func=cmd_token)

    mcp = commands.add_parser(
        "mcp",
        help="serve MCP over stdio (identity from KPI_ACCESS_TOKEN)",
        description="Serve MCP over stdin/stdout for Claude Desktop or Claude Code. The caller is KPI_ACCESS_TOKEN "
        "(a token from loop-kpi token or your identity provider), verified at start-up with KPI_JWT_SECRET, "
        "KPI_JWT_ISSUER or KPI_JWKS_URL; with --sandbox "
        "and no token, a local caller on synthetic data.",
    )
    mcp.add_argument("--sandbox", action="store_true", help="serve the bundled synthetic data (or KPI_SANDBOX=1)")
    mcp.set_defaults(func=cmd_mcp)

    sandbox = commands.add_parser(
        "sandbox",
        help="run only the Amplitude + RevenueCat sandbox emulators",
        description="Serve the Amplitude and RevenueCat emulators alone, for KPI_SANDBOX_URL or your own clients; "
        "prints the base URL and its (fake) credentials.",
    )
    sandbox.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    sandbox.add_argument("--port", type=int, default=8100, help="port to listen on (default 8100)")
    sandbox.set_defaults(func=cmd_sandbox)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `loop-kpi` console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigurationError as exc:
        return _usage_error(args.command, str(exc))
    except ValueError as exc:  # what a setting's validation raises: both classes are ValueErrors
        from pydantic import ValidationError

        from shared.auth.allowlist import UnknownOperationError

        if isinstance(exc, UnknownOperationError):
            return _usage_error(args.command, str(exc))
        if isinstance(exc, ValidationError):
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
            return _usage_error(args.command, f"invalid configuration: {problems}")
        raise
    return code


def _usage_error(command: str, message: str) -> int:
    print(f"loop-kpi {command}: {message}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
