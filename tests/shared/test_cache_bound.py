"""The in-process cache's byte bound counts what an entry really holds: its JSON and its parsed result
(issue 11, section 4)."""

from __future__ import annotations

import gc
import tracemalloc
from datetime import date

import pytest
from pydantic import BaseModel

from shared.cache import CacheEntry, MemoryCache, entry_size
from shared.models import kpi as m
from shared.operations import MAU, REFUND_ANALYSIS, USER_JOURNEY
from shared.runtime import Runtime
from shared.sandbox import SandboxState

pytestmark = pytest.mark.anyio


def traced_bytes_of_parsing(model: type[BaseModel], body: bytes) -> tuple[int, BaseModel]:
    """Bytes still allocated after parsing `body` (the parsed result, as the process really holds it)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        value = model.model_validate_json(body)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before, value


async def test_an_entry_is_counted_at_what_its_body_and_parsed_result_really_take(
    runtime: Runtime, sandbox: SandboxState
) -> None:
    user = next(u.user_id for u in sandbox.dataset.users if u.in_revenuecat)
    results = [
        await runtime.kpi.answer(USER_JOURNEY, m.UserJourneyQuery(user_id=user)),
        await runtime.kpi.answer(MAU, m.MauQuery(start_month=date(2025, 12, 1))),
        await runtime.kpi.answer(
            REFUND_ANALYSIS,
            m.RefundAnalysisQuery(start_date=date(2026, 9, 1), end_date=date(2026, 11, 20), resolution="day"),
        ),
    ]
    for result in results:
        body = result.model_dump_json().encode()
        traced, value = traced_bytes_of_parsing(type(result), body)
        counted = entry_size(CacheEntry(body, 0.0, 60, value))
        assert traced > 3 * len(body)  # why counting the JSON alone is not enough
        assert 0.7 * (traced + len(body)) <= counted <= 1.5 * (traced + len(body)), (type(result), traced, counted)


async def test_the_byte_bound_evicts_by_what_entries_hold_not_by_their_json(runtime: Runtime) -> None:
    result = await runtime.kpi.answer(MAU, m.MauQuery(start_month=date(2025, 12, 1)))
    body = result.model_dump_json().encode()
    held = entry_size(CacheEntry(body, 0.0, 60, m.MauResult.model_validate_json(body)))
    cache = MemoryCache(max_bytes=3 * held + held // 2, clock=lambda: 0.0)
    for index in range(10):
        await cache.set(f"mau-{index}", CacheEntry(body, 0.0, 60, m.MauResult.model_validate_json(body)))
    assert len(cache) == 3  # counted by JSON alone, all 10 would fit
    assert cache.held_bytes <= cache.max_bytes
    assert [await cache.get(f"mau-{index}") is not None for index in (6, 7, 8, 9)] == [False, True, True, True]
