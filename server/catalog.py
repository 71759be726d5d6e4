"""What hosts show beside the tools: resources (the KPI definitions, the data source and freshness policy) and
prompts (slash commands: a weekly KPI brief, a user investigation, a refund-spike investigation), with completions
for the prompt arguments the service can enumerate.

The definitions are built from the operation registry (title, description) and the result models' own field
descriptions (`model_json_schema`), so a definition added to a model shows up here without another edit. Resources
are read-only and pass the same gates as the tools: the bearer guard in front of `/mcp`, the scope checker
(`current_reader`) on every read, and the allowlist (an operation not allowed has no definition resource, and a
prompt whose tools are not all allowed is not registered).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any, cast

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.server.mcpserver.prompts import Prompt
from mcp.server.mcpserver.resources import FunctionResource
from mcp_types import Completion, CompletionArgument, CompletionContext, PromptReference, ResourceTemplateReference
from pydantic import Field

from server.context import AccessDeniedError, current_reader
from shared.operations import OPERATIONS, AnyOperation

if TYPE_CHECKING:  # the runtime (service, clients) is imported by whoever opens it
    from shared.runtime import Runtime

DEFINITIONS_MIME = "text/markdown"
SERVICE_URI = "kpi://service/data-source"
RESOLUTIONS = ("day", "week", "month")
SEGMENTS = ("store", "country", "product")
"""RevenueCat chart segments worth suggesting (the service accepts any segment id RevenueCat knows)."""
CITE = (
    "Quote figures with their period and units, say when a result is `partial` or a period incomplete, and cite "
    "each figure's `provenance` from the result (source, period basis, caveats) when the result carries it."
)


def definitions_uri(operation: str) -> str:
    return f"kpi://definitions/{operation}"


def _fields(schema: dict[str, Any], prefix: str = "") -> list[str]:
    """`- name: description` lines for every documented field, nested models included (one level per `.`)."""
    definitions = cast("dict[str, Any]", schema.get("$defs", {}))
    lines: list[str] = []

    def walk(node: dict[str, Any], path: str, seen: frozenset[str]) -> None:
        for name, prop in cast("dict[str, dict[str, Any]]", node.get("properties", {})).items():
            where = f"{path}{name}"
            targets = [ref.removeprefix("#/$defs/") for ref in _refs(prop)]
            targets = [target for target in targets if target in definitions and target not in seen]
            said = [prop.get("description"), *(definitions[target].get("description") for target in targets)]
            if parts := [part for part in said if isinstance(part, str) and part]:
                lines.append(f"- `{where}`: {' '.join(parts)}")
            for target in targets:
                walk(definitions[target], f"{where}.", seen | {target})

    walk(schema, prefix, frozenset())
    return lines


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found: list[str] = []
        for key, value in cast("dict[str, Any]", node).items():
            found += [value] if key == "$ref" and isinstance(value, str) else _refs(value)
        return found
    if isinstance(node, list):
        return [ref for item in cast("list[Any]", node) for ref in _refs(item)]
    return []


def definitions_text(operation: AnyOperation) -> str:
    """The definitions of one operation's figures, in Markdown."""
    lines = [
        f"# {operation.title} (`{operation.id}`)",
        "",
        operation.description,
        "",
        f"REST: `{operation.method} /api/kpi{operation.path}`; MCP tool: `{operation.id}`.",
        "",
        "## Fields of the result",
        "",
        *_fields(operation.result.model_json_schema()),
    ]
    return "\n".join(lines) + "\n"


async def _checked_reader() -> None:
    try:
        await current_reader()
    except AccessDeniedError as exc:
        raise ResourceError(str(exc)) from exc


def register_resources(mcp: MCPServer, get_runtime: Callable[[], Runtime], allowed: Sequence[AnyOperation]) -> None:
    """One definitions resource per allowed operation, and the service's data source and freshness policy."""
    for operation in allowed:

        async def read(operation: AnyOperation = operation) -> str:
            await _checked_reader()
            return definitions_text(operation)

        mcp.add_resource(
            FunctionResource(
                uri=definitions_uri(operation.id),
                name=f"{operation.id}_definitions",
                title=f"{operation.title}: definitions",
                description=f"What each figure of `{operation.id}` means: source, period basis, caveats.",
                mime_type=DEFINITIONS_MIME,
                fn=read,
            )
        )

    async def service() -> str:
        await _checked_reader()
        runtime = get_runtime()
        policy = {
            "data_source": runtime.data_source,
            "data_source_meaning": (
                "sandbox: the bundled synthetic dataset (demo numbers, not the company's)"
                if runtime.data_source == "sandbox"
                else "live: Amplitude and RevenueCat of the company, read through their APIs"
            ),
            "sources_configured": {
                "amplitude": runtime.amplitude is not None,
                "revenuecat": runtime.revenuecat is not None,
            },
            "cache_ttl_seconds": asdict(runtime.cached.ttl),
            "freshness": (
                "Results are cached per question: a result is at most its kind's TTL old (`generated_at` says when "
                "it was computed); `partial` results are kept only `partial` seconds; a TTL of 0 disables caching."
            ),
        }
        return json.dumps(policy, indent=None, separators=(",", ":"))

    mcp.add_resource(
        FunctionResource(
            uri=SERVICE_URI,
            name="service_data_source",
            title="Data source and freshness policy",
            description="Whether figures are live or sandbox data, which sources are configured, and cache TTLs.",
            mime_type="application/json",
            fn=service,
        )
    )


def _steps(*steps: str) -> str:
    return "\n".join(f"{number}. {step}" for number, step in enumerate(steps, 1))


def weekly_kpi_brief() -> str:
    return _steps(
        "Call `kpi_overview` (no arguments: today) for DAU, month-to-date MAU, MRR, revenue, subscriptions.",
        "Call `kpi_mau` (no arguments: the last six months) and describe the trend; the current month is partial.",
        "Call `kpi_conversion` (default funnel, last 30 days) for step-by-step and overall conversion.",
        "Call `kpi_refund_analysis` for the last 90 days by week, and flag any week whose refund rate stands out.",
        "Write a brief of at most ten bullet points for the leadership team, worst news first. " + CITE,
    )


def user_investigation(
    user_id: Annotated[str, Field(description="The app user id (same in Amplitude and RevenueCat).")],
) -> str:
    return _steps(
        f"Call `kpi_user_journey` with user_id `{user_id}`.",
        "Summarize who the user is, when they started, what they bought, renewed, cancelled or had refunded, and "
        "any billing issues, in time order; point out anything unusual (refund soon after purchase, churn).",
        CITE,
    )


def refund_spike_investigation(
    start_date: Annotated[str, Field(description="First day, YYYY-MM-DD.")],
    end_date: Annotated[str, Field(description="Last day, YYYY-MM-DD (not in the future).")],
    resolution: Annotated[str, Field(description="Period size: day, week or month.")] = "week",
    segment: Annotated[str, Field(description="Optional RevenueCat segment, e.g. store or country.")] = "",
) -> str:
    segmented = f", segment `{segment}`" if segment else ""
    return _steps(
        f"Call `kpi_refund_analysis` with start_date `{start_date}`, end_date `{end_date}`, resolution "
        f"`{resolution}`{segmented}.",
        "Find the periods (and segments) whose refund rate is well above the others; remember a refund counts in "
        "the period of the original purchase, so recent periods are incomplete.",
        "If a segment stands out, call `kpi_refund_analysis` again for that range without the segment to compare.",
        "Explain the spike and what to check next. " + CITE,
    )


PROMPTS: tuple[tuple[Callable[..., str], str, str, tuple[str, ...]], ...] = (
    (
        weekly_kpi_brief,
        "Weekly KPI brief",
        "A brief of the week: overview, MAU trend, conversion and refunds.",
        ("kpi_overview", "kpi_mau", "kpi_conversion", "kpi_refund_analysis"),
    ),
    (user_investigation, "User investigation", "One user's journey across both sources.", ("kpi_user_journey",)),
    (
        refund_spike_investigation,
        "Refund-spike investigation",
        "Refund analysis for a date range, by period and optionally by segment.",
        ("kpi_refund_analysis",),
    ),
)


def register_prompts(mcp: MCPServer, allowed: Sequence[AnyOperation] = OPERATIONS) -> None:
    """The prompts whose tools are all allowed, and completions for their enumerable arguments."""
    names = {operation.id for operation in allowed}
    for fn, title, description, tools in PROMPTS:
        if set(tools) <= names:
            mcp.add_prompt(Prompt.from_function(fn, title=title, description=description))

    @mcp.completion()
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        if not isinstance(ref, PromptReference) or ref.name != refund_spike_investigation.__name__:
            return None
        choices = {"resolution": RESOLUTIONS, "segment": SEGMENTS}.get(argument.name)
        if choices is None:
            return None
        return Completion(values=[value for value in choices if value.startswith(argument.value)])
