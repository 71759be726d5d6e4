"""The MCP allowlist: which KPI operations the MCP face registers as tools.

`MCP_ALLOWED_OPERATIONS` (a comma-separated env var, parsed by `shared.settings`) names the operations; unset means
all of them. The allowlist fails closed: a name that is not an operation stops the server from starting instead of
being silently dropped. It governs the MCP face only; REST is not affected.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.operations import OPERATIONS, AnyOperation

__all__ = ["UnknownOperationError", "resolve_allowlist"]

NONE = "none"


class UnknownOperationError(ValueError):
    """An allowlist entry that names no KPI operation."""


def resolve_allowlist(
    entries: Sequence[str] | None, operations: Sequence[AnyOperation] = OPERATIONS
) -> tuple[AnyOperation, ...]:
    """The allowed operations of the registry, in its order; None allows all; an empty sequence, or the single
    entry `none` (an empty environment variable reads as unset), allows none."""
    if entries is None:
        return tuple(operations)
    if isinstance(entries, str):
        raise TypeError("resolve_allowlist takes a sequence of operation names, not a single string")
    if [entry.strip().lower() for entry in entries] == [NONE]:
        return ()
    known = [operation.id for operation in operations]
    valid = ", ".join(known)
    wanted: set[str] = set()
    for entry in entries:
        name = entry.strip()
        if name not in known:
            shown = repr(name[:64]) if name else "an empty name"
            raise UnknownOperationError(
                f"MCP_ALLOWED_OPERATIONS lists {shown}, which is not a KPI operation; valid names are: {valid}."
            )
        wanted.add(name)
    return tuple(operation for operation in operations if operation.id in wanted)
