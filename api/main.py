"""The one FastAPI app: REST under `/api/kpi`, health probes, and (mounted last) MCP over streamable HTTP at `/mcp`.

`create_app` builds everything per call; nothing is built at import time. The lifespan opens the runtime
(upstream clients, KPI service, token verifier) and, in sandbox mode, the loopback sandbox it points them at.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from typing import Any

import anyio
import httpx2
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.dashboard import mount_dashboard
from api.docs import install_docs
from api.errors import add_exception_handlers
from api.fastpath import CachedAnswers, OperationRoute
from api.guard import RestGuard
from api.limits import BodyLimit
from api.mcp import EarlyMcp, mount_mcp
from api.openapi import Problem, document_kpi_responses
from api.routes import health
from api.routes.kpi import PREFIX, build_router
from server.tools import build_mcp
from shared.auth.allowlist import resolve_allowlist
from shared.auth.challenge import challenge_metadata_url
from shared.auth.tokens import TokenVerifier
from shared.operations import OPERATIONS, AnyOperation
from shared.runtime import Runtime, open_runtime, sandbox_upstreams
from shared.settings import Settings, get_settings

logger = logging.getLogger("loop_kpi")
MAX_BODY_BYTES = 256 * 1024


def with_ephemeral_secret(settings: Settings) -> Settings:
    """In sandbox mode without any verification method, a random HS256 secret for this process only."""
    if settings.KPI_JWT_SECRET is not None or settings.KPI_JWKS_URL:
        return settings
    return Settings.model_validate({**settings.model_dump(), "KPI_JWT_SECRET": secrets.token_urlsafe(48)})


class DataSourceHeader:
    """Adds `X-KPI-Data-Source: sandbox` to every response, so sandbox figures are never mistaken for real ones."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-kpi-data-source", b"sandbox")]
            await send(message)

        await self.app(scope, receive, send_with_header)


async def report_signing_keys(verifier: TokenVerifier, checked: anyio.Event) -> None:
    """Fetch the identity provider's signing keys once (through the issuer's discovery when configured) and log
    whether they were found: a mistyped issuer shows at start-up, not at the first refused sign-in, and the first
    token does not wait for discovery. Never stops the service: `/readyz` keeps reporting the keys."""
    source = verifier.key_source
    try:
        problem = await verifier.signing_keys()
    except Exception:  # a start-up check must not take the service down; the traceback is logged
        logger.exception("could not check the signing keys of %s", source)
    else:
        if problem is None:
            logger.info("signing keys of %s found", source)
        else:
            logger.warning(
                "signing keys of %s unavailable: %s; tokens it signs are refused until they are found (/readyz "
                "reports them)",
                source,
                problem,
            )
    finally:
        checked.set()


def create_app(
    settings: Settings | None = None,
    *,
    transport: httpx2.AsyncBaseTransport | None = None,
    clock: Callable[[], datetime] | None = None,
    on_ready: Callable[[Settings], None] | None = None,
    operations: Sequence[AnyOperation] = OPERATIONS,
    token_clock: Callable[[], float] | None = None,
    check_signing_keys: bool = False,
) -> FastAPI:
    """Build the app serving `operations` (the registry). `transport`, `clock` and `token_clock` (unix seconds for
    token expiry) are for tests; `on_ready` runs once the runtime is open. With `check_signing_keys` (what `loop-kpi
    serve` does), the identity provider's signing keys are fetched once at start-up in the background, and the log
    says whether they were found (`app.state.signing_keys_checked` is set when it has)."""
    settings = settings or get_settings()
    if settings.KPI_NO_AUTH and not settings.KPI_SANDBOX:
        raise ValueError("KPI_NO_AUTH is only allowed together with KPI_SANDBOX: production never runs open.")
    if settings.KPI_SANDBOX:
        settings = with_ephemeral_secret(settings)
    allowed = resolve_allowlist(settings.MCP_ALLOWED_OPERATIONS, operations)

    def get_runtime() -> Runtime:
        runtime: Runtime = app.state.runtime
        return runtime

    mcp = build_mcp(get_runtime, allowed)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncGenerator[None]:
        async with AsyncExitStack() as stack:
            effective = stack.enter_context(sandbox_upstreams(settings))
            runtime = await stack.enter_async_context(
                open_runtime(
                    effective,
                    transport=transport,
                    data_source="sandbox" if settings.KPI_SANDBOX else "live",
                    clock=clock,
                    token_clock=token_clock,
                )
            )
            app.state.runtime = runtime
            app.state.signing_keys_checked = anyio.Event()
            if check_signing_keys and runtime.verifier.uses_jwks:
                checks = await stack.enter_async_context(anyio.create_task_group())
                checks.start_soon(report_signing_keys, runtime.verifier, app.state.signing_keys_checked)
                stack.callback(checks.cancel_scope.cancel)  # unwound first: a check still running stops at shutdown
            else:
                app.state.signing_keys_checked.set()  # nothing to check
            await stack.enter_async_context(mcp.session_manager.run())
            if on_ready is not None:
                on_ready(effective)
            yield
            del app.state.runtime

    app = FastAPI(
        title="Loop KPI",
        version="0.1.0",
        summary="Product and revenue KPIs from Amplitude and RevenueCat, for executives, analysts and AI assistants.",
        lifespan=lifespan,
        docs_url=None,  # served by install_docs, with their assets from the app (no CDN)
        redoc_url=None,
    )
    install_docs(app)
    add_exception_handlers(app)
    app.include_router(health.router)
    kpi_router = build_router(operations)
    app.include_router(kpi_router)
    _register_problem_schema(app)
    mount_dashboard(app, settings)
    mcp_endpoint = mount_mcp(app, mcp, settings, get_runtime)
    by_id = {operation.id: operation for operation in operations}
    routes: list[OperationRoute] = [
        (route, by_id[route.operation_id])
        for route in kpi_router.routes
        if isinstance(route, APIRoute) and route.operation_id in by_id
    ]
    app.add_middleware(EarlyMcp, endpoint=mcp_endpoint)
    app.add_middleware(CachedAnswers, get_runtime=get_runtime, routes=lambda: routes)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(
        RestGuard,
        get_runtime=get_runtime,
        routes=lambda: routes,
        prefix=PREFIX + "/",
        resource_metadata=challenge_metadata_url(settings),
    )
    if settings.KPI_SANDBOX:
        app.add_middleware(DataSourceHeader)
    return app


BEARER_HELP = "A JWT with the `kpi:read` scope, or role `admin` or `exec` (`loop-kpi token --sub NAME`)."


def _register_problem_schema(app: FastAPI) -> None:
    """Make `#/components/schemas/Problem` resolvable from the problem+json responses."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {})["Problem"] = Problem.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            components["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": BEARER_HELP}
            }
            for path, operations in schema.get("paths", {}).items():
                if path.startswith(PREFIX + "/"):
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
            document_kpi_responses(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
