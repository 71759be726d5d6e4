"""Who the current request is for, as far as the upstream budgets care: the verified caller's token subject.

Set where the principal becomes known (the HTTP guard for REST and MCP over HTTP, the stdio entry point) and read by
`shared.budget` (each caller's share of an upstream window) and `shared.services.cached` (each caller's share of
the cold computations). None means "the service itself" (readiness probes, anonymous sandbox use): no share applies.

A cold result is computed once per key in the runtime's task group (single flight): the task is started from the
first requester's context, so the computation (and every upstream unit it spends) counts against that first
requester only; callers who join an in-flight computation spend nothing.
"""

from __future__ import annotations

from contextvars import ContextVar

current_caller: ContextVar[str | None] = ContextVar("loop_kpi_caller", default=None)


def caller() -> str | None:
    """The token subject of the caller the current task works for, or None."""
    return current_caller.get()
