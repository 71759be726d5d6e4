"""The tools' output schemas, derived once by the SDK and stored beside this module (`tool_schemas.json`).

The SDK derives a structured tool's `outputSchema` from its result model when the tool is registered: a JSON
schema generation over the whole model tree, which also builds the model's validator. For the five result models
that was a fifth of what `loop-kpi mcp` did before answering `initialize` (see docs/mcp-performance.md), and the
answer never changes between two starts of the same code. So the schemas are derived here, by the SDK's own
derivation (`Tool.from_function` with `structured_output=True`), written to `tool_schemas.json`, and read back at
start-up (the result models, `defer_build`, are then built by the first result the service makes, not at import).

`python -m server.schemas` rewrites the file (`make schemas`); `tests/server/test_schemas.py` fails while the
stored schemas differ from a fresh derivation, so a model change cannot ship with a stale schema. A tool whose
schema is not stored (a new operation before `make schemas`) gets the same derivation at start-up.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from shared.operations import AnyOperation

STORED = Path(__file__).with_name("tool_schemas.json")


def derive(operations: Sequence[AnyOperation] | None = None) -> dict[str, dict[str, Any]]:
    """Each operation's output schema as the SDK derives it for the tool built from that operation."""
    from mcp.server.mcpserver.tools import Tool

    from server.tools import tool_function
    from shared.operations import OPERATIONS

    schemas: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS if operations is None else operations:
        tool = Tool.from_function(tool_function(operation, _no_runtime), name=operation.id, structured_output=True)
        schema = tool.fn_metadata.output_schema
        if schema is None:  # pragma: no cover - every tool returns its result model
            raise TypeError(f"{operation.id}: the SDK derived no output schema")
        schemas[operation.id] = schema
    return schemas


def _no_runtime() -> Any:  # pragma: no cover - deriving a schema never calls the tool
    raise RuntimeError("no runtime while deriving schemas")


def render(schemas: dict[str, dict[str, Any]]) -> str:
    """The file's text: the SDK's own key order (what `tools/list` sends), one operation per top-level key."""
    return json.dumps(schemas, indent=1, ensure_ascii=False) + "\n"


@cache
def stored() -> dict[str, dict[str, Any]]:
    """The stored schemas by operation id (empty when the file is missing or unreadable: derive at start-up)."""
    try:
        loaded: object = json.loads(STORED.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cast("dict[str, dict[str, Any]]", loaded) if isinstance(loaded, dict) else {}


def main() -> int:
    STORED.write_text(render(derive()), encoding="utf-8")
    print(f"wrote {STORED}")  # noqa: T201 - a developer command's one line
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
