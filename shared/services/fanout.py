"""Concurrent upstream calls: an operation takes as long as its slowest branch, not the sum of them.

`both` keeps each branch's `UpstreamError` as a value (one source may fail while the other answers); `gather2`,
`gather3` and `bounded_map` fail as a whole on the first error, cancelling the rest.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import anyio

from shared.errors import KpiError, UpstreamAuthError, UpstreamError

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")


async def both(a: Awaitable[A], b: Awaitable[B]) -> tuple[A | UpstreamError, B | UpstreamError]:
    """Run two upstream branches concurrently; each branch's `UpstreamError` is returned, not raised."""

    async def settle(awaitable: Awaitable[T]) -> T | UpstreamError:
        try:
            return await awaitable
        except UpstreamError as exc:
            return exc

    return await gather2(lambda: settle(a), lambda: settle(b))


async def gather2(a: Callable[[], Awaitable[A]], b: Callable[[], Awaitable[B]]) -> tuple[A, B]:
    """Two calls concurrently, results in order; the first failure cancels the other."""
    first: list[A] = []
    second: list[B] = []

    async def run_a() -> None:
        first.append(await a())

    async def run_b() -> None:
        second.append(await b())

    await _run_all((run_a, run_b))
    return first[0], second[0]


async def gather3(
    a: Callable[[], Awaitable[A]], b: Callable[[], Awaitable[B]], c: Callable[[], Awaitable[C]]
) -> tuple[A, B, C]:
    """Three calls concurrently, results in order; the first failure cancels the others."""
    (first, second), third = await gather2(lambda: gather2(a, b), c)
    return first, second, third


async def bounded_map(calls: Sequence[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run calls with at most `limit` in flight; results keep the calls' order."""
    results: dict[int, T] = {}
    limiter = anyio.CapacityLimiter(max(1, limit))

    def runner(index: int) -> Callable[[], Coroutine[Any, Any, None]]:
        async def run() -> None:
            async with limiter:
                results[index] = await calls[index]()

        return run

    await _run_all([runner(index) for index in range(len(calls))])
    return [results[index] for index in range(len(calls))]


async def _run_all(runs: Sequence[Callable[[], Coroutine[Any, Any, None]]]) -> None:
    try:
        async with anyio.create_task_group() as group:
            for run in runs:
                group.start_soon(run)
    except BaseExceptionGroup as group_error:
        raise first_kpi_error(group_error) from None


def first_kpi_error(group_error: BaseExceptionGroup[BaseException]) -> BaseException:
    """Unwrap a task group's failure to the error a caller can render (the first one raised)."""
    leaves: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:  # pyright: ignore[reportUnknownVariableType, reportUnknownMemberType] - BaseExceptionGroup[BaseException] is not generic enough for pyright
                walk(inner)  # pyright: ignore[reportUnknownArgumentType] - see above
        else:
            leaves.append(error)

    walk(group_error)
    return next((e for e in leaves if isinstance(e, KpiError)), leaves[0] if leaves else group_error)


def raise_if_all_failed(*outcomes: object) -> None:
    """Raise the first error when no branch succeeded, or when a branch says our credentials are wrong."""
    for outcome in outcomes:
        if isinstance(outcome, UpstreamAuthError):
            raise outcome
    errors = [outcome for outcome in outcomes if isinstance(outcome, KpiError)]
    if len(errors) == len(outcomes):
        raise errors[0]
