"""The five KPI operations as MCP tools: flat typed arguments, the service's models as structured output.

Tools call the same `KpiService` methods as the REST routes (no HTTP hop), so a tool's `structuredContent` equals
the REST body for the same inputs. Only the operations in the allowlist are registered.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from typing import Annotated, Any, TypeVar, cast

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import ToolAnnotations
from mcp_types import INVALID_PARAMS
from pydantic import Field

from server.context import AccessDeniedError, current_principal, current_reader, current_transport
from shared.audit import audit
from shared.auth.allowlist import OPERATIONS
from shared.errors import KpiError
from shared.models import kpi as m
from shared.runtime import Runtime
from shared.services.cached import Served

logger = logging.getLogger("loop_kpi.mcp")
ResultT = TypeVar("ResultT", bound=m.ResultMeta)

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
INSTRUCTIONS = (
    "Read-only KPIs of the company from Amplitude (product usage) and RevenueCat (subscriptions and revenue). "
    "Dates are YYYY-MM-DD in UTC and never in the future. Money is USD. Rates ending in _pct are percentages; "
    "conversion fractions are 0-1. Results say `partial` when a source failed, and `data_source` is `sandbox` "
    "for synthetic demo data."
)


def tool_error(error: KpiError) -> ToolError:
    """The tool-error text for a service error: the same title and detail as the REST problem details."""
    return ToolError(f"{error.title}: {error.detail}")


async def _call(name: str, operation: Callable[[], Awaitable[Served[ResultT]]]) -> ResultT:
    # The caller check runs in the tool body rather than as a `Resolve` parameter: same check, a third of the
    # per-call cost (docs/benchmarks.md).
    started = time.perf_counter()
    principal = current_principal.get()
    status, cache_hit = 500, None
    try:
        await current_reader()
        served = await operation()
        status, cache_hit = 200, served.hit
        return served.value
    except AccessDeniedError as exc:
        status = exc.status
        raise
    except KpiError as exc:
        status = exc.status
        raise tool_error(exc) from exc
    finally:
        audit(
            subject=principal.subject if principal else None,
            operation=name,
            transport=current_transport.get(),
            status=status,
            latency=time.perf_counter() - started,
            cache_hit=cache_hit,
        )


def build_mcp(get_runtime: Callable[[], Runtime], allowed: Sequence[str] = OPERATIONS) -> MCPServer:
    """An MCP server exposing the allowlisted operations; `get_runtime` gives the runtime the host opened."""
    mcp = MCPServer(
        "loop-kpi",
        title="Loop KPI",
        version="0.1.0",
        instructions=INSTRUCTIONS,
        log_level="WARNING",
    )

    async def kpi_overview(
        as_of: Annotated[
            date | None, Field(description="Day (YYYY-MM-DD, UTC) the overview is for; default today.")
        ] = None,
    ) -> m.OverviewResult:
        """Company KPI overview: Amplitude DAU (last complete day), month-to-date MAU and new users, plus RevenueCat
        MRR, gross revenue of the last 28 days (USD, before store fees), active subscriptions and trials, new
        customers and active users (28 days). RevenueCat active users are SDK-seen ids, not comparable with
        Amplitude MAU. If one source fails the other's figures still come back with `partial: true`."""
        return await _call("kpi_overview", lambda: get_runtime().cached.overview(m.OverviewQuery(as_of=as_of)))

    async def kpi_mau(
        start_month: Annotated[
            date | None, Field(description="First month, as any day in it (YYYY-MM-DD); default 5 months back.")
        ] = None,
        end_month: Annotated[
            date | None, Field(description="Last month, as any day in it (YYYY-MM-DD); default the current month.")
        ] = None,
    ) -> m.MauResult:
        """Monthly active users (distinct users with any event in Amplitude) per calendar month, with the change from
        the previous month in users and percent. The current month is `partial` (counted to today), so compare it
        with care. Up to 36 months."""
        return await _call(
            "kpi_mau", lambda: get_runtime().cached.mau(m.MauQuery(start_month=start_month, end_month=end_month))
        )

    async def kpi_conversion(
        steps: Annotated[
            list[m.EventType] | None,
            Field(
                description="Funnel steps in order: 2-10 Amplitude event types; default the configured funnel.",
                max_length=m.MAX_FUNNEL_STEPS,
            ),
        ] = None,
        start_date: Annotated[
            date | None, Field(description="First day (YYYY-MM-DD); default 29 days before end.")
        ] = None,
        end_date: Annotated[date | None, Field(description="Last day (YYYY-MM-DD); default today.")] = None,
        conversion_window_days: Annotated[int, Field(ge=1, le=90, description="Days a user has to finish.")] = 30,
        mode: Annotated[m.FunnelMode, Field(description="Amplitude funnel mode.")] = "ordered",
    ) -> m.ConversionResult:
        """Funnel conversion between Amplitude events: users per step, step-by-step and cumulative conversion
        (fractions 0-1), median and average time between steps in seconds, and overall conversion (first to last
        step). Adds RevenueCat's trial-to-paid conversion (percent) for the same range when RevenueCat is
        configured; its recent periods may still convert and are excluded."""
        query = m.ConversionQuery(
            steps=steps,
            start_date=start_date,
            end_date=end_date,
            conversion_window_days=conversion_window_days,
            mode=mode,
        )
        return await _call("kpi_conversion", lambda: get_runtime().cached.conversion(query))

    async def kpi_user_journey(user_id: m.UserId) -> m.JourneyResult:
        """One user's journey: Amplitude profile and events, RevenueCat subscriptions, renewals, cancellations,
        billing issues, purchases and refunds, merged into one timeline, oldest first. Errors with 'Not found' when
        neither source knows the user id. Refunds are placed at the purchase they reverse (RevenueCat gives no
        refund time)."""
        return await _call("kpi_user_journey", lambda: get_runtime().cached.user_journey(user_id))

    async def kpi_refund_analysis(
        start_date: Annotated[date, Field(description="First day (YYYY-MM-DD).")],
        end_date: Annotated[date, Field(description="Last day (YYYY-MM-DD), not in the future.")],
        resolution: Annotated[m.Resolution, Field(description="Period size.")] = "month",
        segment: Annotated[
            str | None,
            Field(max_length=64, pattern=r"^[a-z0-9_]+$", description="Optional segment id, e.g. store or country."),
        ] = None,
        user_ids: Annotated[
            list[m.UserId] | None,
            Field(max_length=m.MAX_REFUND_USER_IDS, description="Up to 100 app user ids to detail refunds for."),
        ] = None,
    ) -> m.RefundAnalysisResult:
        """Refund analysis from RevenueCat: refund rate (percent of paid transactions), refunded and total
        transactions, and revenue net of refunds per period, with summary totals. Caveat: a refund counts in the
        period of the ORIGINAL transaction, so past periods change and recent periods are marked incomplete and
        left out of the summary rates. With user_ids, each customer's refunded one-time purchases."""
        query = m.RefundAnalysisQuery(
            start_date=start_date, end_date=end_date, resolution=resolution, segment=segment, user_ids=user_ids
        )
        return await _call("kpi_refund_analysis", lambda: get_runtime().cached.refund_analysis(query))

    tools: dict[str, tuple[Callable[..., Awaitable[Any]], str]] = {
        "kpi_overview": (kpi_overview, "KPI overview"),
        "kpi_mau": (kpi_mau, "Monthly active users"),
        "kpi_conversion": (kpi_conversion, "Funnel conversion"),
        "kpi_user_journey": (kpi_user_journey, "User journey"),
        "kpi_refund_analysis": (kpi_refund_analysis, "Refund analysis"),
    }
    assert tuple(tools) == OPERATIONS
    for name in allowed:
        fn, title = tools[name]
        description = inspect.cleandoc(fn.__doc__ or "")
        mcp.add_tool(fn, name=name, title=title, description=description, annotations=READ_ONLY, structured_output=True)

    allowed_names = frozenset(allowed)

    async def unknown_tool_is_invalid_params(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        # The 2025-11-25 spec makes an unknown tool a protocol error (-32602); the SDK answers an isError result.
        if ctx.method == "tools/call":
            params: object = ctx.params
            name = cast("dict[str, object]", params).get("name") if isinstance(params, dict) else None
            if name not in allowed_names:
                raise MCPError(INVALID_PARAMS, f"Unknown tool: {str(name)[:100]}")
        return await call_next(ctx)

    mcp.middleware.append(unknown_tool_is_invalid_params)
    return mcp
