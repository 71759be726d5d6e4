"""The KPI operations as MCP tools, built from the operation registry (`shared.operations`).

A tool's name, title and description are its operation's; its arguments are the fields of the operation's query
model (same names, types, descriptions and limits, flat), and its output schema is the result model. Tools call the
same cached service as the REST routes (no HTTP hop), so a tool's `structuredContent` equals the REST body for the
same inputs. Only the allowlisted operations are registered.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, cast

import pydantic_core
from mcp.server._otel import OpenTelemetryMiddleware
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import ToolAnnotations
from mcp_types import INVALID_PARAMS, CallToolResult, TextContent
from opentelemetry import trace
from opentelemetry.trace import ProxyTracerProvider
from pydantic import BaseModel, Field

from server.apps import apps_extension, register_apps
from server.catalog import register_prompts, register_resources
from server.context import AccessDeniedError, current_principal, current_reader, current_transport
from server.lean import lean_middleware
from server.schemas import derive as derive_schemas
from server.schemas import stored as stored_schemas
from shared.audit import audit
from shared.errors import KpiError
from shared.operations import OPERATIONS, AnyOperation

if TYPE_CHECKING:  # the runtime (service, clients) is imported by whoever opens it
    from shared.runtime import Runtime

logger = logging.getLogger("loop_kpi.mcp")

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
INSTRUCTIONS = (
    "Read-only KPIs of the company from Amplitude (product usage) and RevenueCat (subscriptions and revenue). "
    "Dates are YYYY-MM-DD in UTC and never in the future. Money is USD. Every rate, share and conversion ends in "
    "_pct and is in percent (0-100, two decimals). Results say `partial` when a source failed, and `data_source` is `sandbox` "
    "for synthetic demo data; `generated_at` is when the service computed the result (UTC) and `sources` says "
    "whether each upstream contributed (with its error, as REST problem details, when it did not)."
)


def tool_error(error: KpiError) -> ToolError:
    """The tool-error text for a service error: the same title and detail as the REST problem details."""
    return ToolError(f"{error.title}: {error.detail}")


def tool_result(body: bytes) -> CallToolResult:
    """A tool's result from the cached answer's JSON (the result model's compact serialization, as REST sends it):
    `structuredContent` is that JSON parsed, and the one text block is that JSON as it is, so the model reads no
    indentation and nothing is serialized twice (nor validated twice: see `build_mcp`)."""
    return CallToolResult(
        content=[TextContent(type="text", text=body.decode())], structured_content=pydantic_core.from_json(body)
    )


def tool_parameters(query: type[BaseModel]) -> list[inspect.Parameter]:
    """The flat parameters of a tool taking `query`: one per field, with the field's type, limits and docs."""
    parameters: list[inspect.Parameter] = []
    for name, info in query.model_fields.items():
        docs = Field(description=info.description, examples=info.examples)
        annotation = Annotated[(info.annotation, *info.metadata, docs)]
        default = inspect.Parameter.empty if info.is_required() else info.get_default(call_default_factory=True)
        parameters.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
        )
    return parameters


def tool_function(operation: AnyOperation, get_runtime: Callable[[], Runtime]) -> Callable[..., Awaitable[Any]]:
    # The last result built, with the cached body it was built from: an in-process cache hands out the same bytes
    # object until the entry is replaced, so a warm call reuses the result (the SDK only reads what a tool returns:
    # it dumps it into a new wire dict).
    last: tuple[bytes, CallToolResult] | None = None

    async def tool(**arguments: Any) -> Any:
        nonlocal last
        # The caller check runs in the tool body rather than as a `Resolve` parameter: same check, a third of the
        # per-call cost. The SDK has validated the arguments against the query model's own fields, so they are
        # assembled into the query without validating them a second time.
        started = time.perf_counter()
        principal = current_principal.get()
        status, cache_hit = 500, None
        try:
            await current_reader()
            served = await get_runtime().cached.answer(operation, operation.query.model_construct(**arguments))
            status, cache_hit = 200, served.hit
            if last is None or last[0] is not served.body:
                last = (served.body, tool_result(served.body))
            return last[1]
        except AccessDeniedError as exc:
            status = exc.status
            raise
        except KpiError as exc:
            status = exc.status
            raise tool_error(exc) from exc
        finally:
            audit(
                subject=principal.subject if principal else None,
                operation=operation.id,
                transport=current_transport.get(),
                status=status,
                latency=time.perf_counter() - started,
                cache_hit=cache_hit,
            )

    # The SDK derives the output schema from this annotation (`server.schemas.derive`).
    returns = Annotated[CallToolResult, operation.result]
    tool.__signature__ = inspect.Signature(tool_parameters(operation.query), return_annotation=returns)
    tool.__name__ = operation.id
    return tool


def tracing_configured() -> bool:
    """Whether an OpenTelemetry tracer provider has been installed; until one is, every span is a no-op."""
    return not isinstance(trace.get_tracer_provider(), ProxyTracerProvider)


def traced_when_configured(
    middleware: ServerMiddleware[Any], configured: Callable[[], bool] = tracing_configured
) -> ServerMiddleware[Any]:
    """The SDK's OpenTelemetry middleware, run only once tracing is configured: its no-op span per message was a
    twentieth of a warm `tools/call`'s CPU, for nothing (the SDK's comment invites dropping it to opt out; this
    keeps it for whoever installs a tracer provider, at any time)."""

    async def traced(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if configured():
            return await middleware(ctx, call_next)
        return await call_next(ctx)

    return traced


def build_mcp(get_runtime: Callable[[], Runtime], allowed: Sequence[AnyOperation] = OPERATIONS) -> MCPServer:
    """An MCP server exposing the allowlisted operations; `get_runtime` gives the runtime the host opened."""
    mcp = MCPServer(
        "loop-kpi",
        title="Loop KPI",
        version="0.1.0",
        instructions=INSTRUCTIONS,
        log_level="WARNING",
        extensions=[apps_extension()],
    )
    views = register_apps(mcp, allowed)
    register_resources(mcp, get_runtime, allowed)
    register_prompts(mcp, allowed)
    stored = stored_schemas()
    for operation in allowed:
        mcp.add_tool(
            tool_function(operation, get_runtime),
            name=operation.id,
            title=operation.title,
            description=operation.description,
            annotations=READ_ONLY,
            structured_output=False,  # the output schema is set below, from the stored derivation
            meta=views.get(operation.id),
        )
        # The SDK's hand-built metadata (its fields are read live): the output schema the SDK derives from the
        # result model, stored (server/schemas.py) or, for an operation not stored yet, derived now. No output
        # model: `structuredContent` is the cached answer, the result model's own serialization of a validated
        # result (the bytes REST sends), and validating it again on every call checked the model against itself
        # for a seventh of a warm call's CPU.
        schema = stored.get(operation.id) or derive_schemas([operation])[operation.id]
        tool = mcp._tool_manager.get_tool(operation.id)  # pyright: ignore[reportPrivateUsage]
        assert tool is not None
        tool.fn_metadata.output_schema = schema

    allowed_names = frozenset(operation.id for operation in allowed)

    async def unknown_tool_is_invalid_params(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        # The 2025-11-25 spec makes an unknown tool a protocol error (-32602); the SDK answers an isError result.
        if ctx.method == "tools/call":
            params: object = ctx.params
            name = cast("dict[str, object]", params).get("name") if isinstance(params, dict) else None
            if not isinstance(name, str) or name not in allowed_names:
                raise MCPError(INVALID_PARAMS, f"Unknown tool: {str(name)[:100]}")
        return await call_next(ctx)

    mcp.middleware[:] = [
        traced_when_configured(middleware) if isinstance(middleware, OpenTelemetryMiddleware) else middleware
        for middleware in mcp.middleware
    ]
    mcp.middleware.append(unknown_tool_is_invalid_params)
    mcp.middleware.append(lean_middleware())
    return mcp
