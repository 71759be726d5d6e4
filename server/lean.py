"""Fewer tokens for the model, same meaning: `tools/list` as the SDK builds it, made lean.

- A tool result's text block is the compact JSON of its `structuredContent` from the start: the tools hand the SDK
  a ready result built from the cached answer's JSON (`server.tools.tool_result`), where the SDK would pretty-print
  the result model with a two-space indent (1.35-1.5x the bytes, all of it whitespace a model pays for as tokens).
- In `tools/list`, the schemas lose the `title` pydantic derives from each field and model name ("Change Pct" for
  `change_pct`: a name said twice), and a description repeated across tools (the result envelope's `data_source`,
  `partial`, `sources`, ...) is kept in the first tool that carries it only; the server instructions state the
  envelope once for all tools. Types, formats, limits, enums, defaults and `required` are untouched, so what a
  schema accepts is unchanged.

The listing is made lean by a server middleware, so every transport (stdio, HTTP, in memory) answers the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext

SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
"""Schema keywords whose value maps names (not keywords) to subschemas."""


def _auto_title(name: str) -> str:
    """The title pydantic derives from a field name (`change_pct` -> `Change Pct`)."""
    return name.replace("_", " ").title()


def lean_schema(schema: Any, seen: set[str] | None = None, *, name: str | None = None) -> Any:
    """`schema` without derived titles and, when `seen` is given, without descriptions already in `seen` (which
    collects the descriptions kept). `name` is the field or definition name the schema is under, if any."""
    if isinstance(schema, list):
        return [lean_schema(item, seen) for item in cast("list[Any]", schema)]
    if not isinstance(schema, dict):
        return schema
    lean: dict[str, Any] = {}
    for key, value in cast("dict[str, Any]", schema).items():
        if key in SCHEMA_MAPS and isinstance(value, dict):
            lean[key] = {
                child: lean_schema(sub, seen, name=child) for child, sub in cast("dict[str, Any]", value).items()
            }
        elif key == "title" and isinstance(value, str) and (name is None or value in (name, _auto_title(name))):
            continue
        elif key == "description" and isinstance(value, str) and seen is not None:
            if value in seen:
                continue
            seen.add(value)
            lean[key] = value
        elif key in ("default", "examples", "const", "enum"):
            lean[key] = value  # values, not schemas
        else:
            lean[key] = lean_schema(value, seen)
    return lean


def lean_listing(result: Mapping[str, Any]) -> dict[str, Any]:
    """A wire `ListToolsResult` with lean input and output schemas (descriptions deduplicated across output
    schemas, in listing order; input descriptions stay, each is the one place its argument is explained)."""
    seen: set[str] = set()
    tools: list[dict[str, Any]] = []
    for tool in cast("list[dict[str, Any]]", result.get("tools", [])):
        lean = dict(tool)
        if "inputSchema" in lean:
            lean["inputSchema"] = lean_schema(lean["inputSchema"])
        if "outputSchema" in lean:
            lean["outputSchema"] = lean_schema(lean["outputSchema"], seen)
        tools.append(lean)
    return {**result, "tools": tools}


def lean_middleware() -> ServerMiddleware[Any]:
    """The server middleware making `tools/list` lean; the listing is computed once per protocol version (a
    server's tools are fixed once built)."""
    listings: dict[object, tuple[object, dict[str, Any]]] = {}

    async def lean(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/list":
            return await call_next(ctx)
        result = await call_next(ctx)
        if not isinstance(result, dict):
            return result
        key: object = getattr(ctx, "protocol_version", None)
        cached = listings.get(key)
        if cached is not None and cached[0] == result:
            return cached[1]
        listing = lean_listing(result)
        listings[key] = (result, listing)
        return listing

    return lean
