"""Which upstream requests produced a figure: the clients record each request they send (method, path and its
non-secret parameters: credentials travel in headers, never in these) into the recording of the current task.

A service wraps the calls behind a group of figures in `recording()`; tasks started inside inherit the recording
(context variables are copied into child tasks), so concurrent calls of one group land in the same list.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

import httpx2

_requests: ContextVar[list[str] | None] = ContextVar("loop_kpi_upstream_requests", default=None)

Params = Mapping[str, str | int] | httpx2.QueryParams | None


@contextmanager
def recording() -> Generator[list[str]]:
    """Collect the upstream requests sent inside the block (and in tasks it starts)."""
    log: list[str] = []
    token = _requests.set(log)
    try:
        yield log
    finally:
        _requests.reset(token)


def describe(method: str, path: str, params: Params) -> str:
    """`GET /api/2/users m=active i=1 start=20261119 end=20261119`: the request as a reader can repeat it."""
    items = httpx2.QueryParams(params).multi_items() if params is not None else []
    return " ".join([method, path, *(f"{name}={value}" for name, value in items)])


def record(method: str, path: str, params: Params) -> None:
    """Note a request in the current recording, if there is one (retries of it are not noted again)."""
    log = _requests.get()
    if log is not None:
        log.append(describe(method, path, params))
