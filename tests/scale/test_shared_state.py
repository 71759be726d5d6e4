"""Redis-backed cache, locks and rate windows, as two replicas see them; and their local fallback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from shared.budget import WindowLimiter
from shared.cache import CacheEntry, MemoryCache
from shared.errors import UpstreamRateLimitedError
from shared.shared_state import RedisLink, SharedCache, SharedLocks, SharedSemaphore, SharedWindowStore
from tests.scale.conftest import RedisServer

pytestmark = pytest.mark.anyio


@pytest.fixture
async def links(redis_url: str) -> AsyncIterator[tuple[RedisLink, RedisLink]]:
    first, second = RedisLink(redis_url, prefix="t"), RedisLink(redis_url, prefix="t")
    yield first, second
    await first.aclose()
    await second.aclose()


async def test_a_rate_window_is_shared_by_two_replicas(links: tuple[RedisLink, RedisLink]) -> None:
    one = WindowLimiter(5, 60, source="revenuecat", name="charts", store=SharedWindowStore(links[0]))
    two = WindowLimiter(5, 60, source="revenuecat", name="charts", store=SharedWindowStore(links[1]))
    with anyio.fail_after(5):
        for limiter in (one, two, one, two, one):
            await limiter.acquire()
        assert await two.used() == 5
        with pytest.raises(UpstreamRateLimitedError) as caught:
            await two.acquire()
    assert 55 <= caught.value.retry_after <= 60


async def test_a_429_seen_by_one_replica_blocks_the_other(links: tuple[RedisLink, RedisLink]) -> None:
    one = WindowLimiter(100, 60, source="revenuecat", name="customers", store=SharedWindowStore(links[0]))
    two = WindowLimiter(100, 60, source="revenuecat", name="customers", store=SharedWindowStore(links[1]))
    await one.block_for(30)
    with anyio.fail_after(5), pytest.raises(UpstreamRateLimitedError) as caught:
        await two.acquire()
    assert 29 <= caught.value.retry_after <= 30


async def test_cost_windows_add_up_costs_across_replicas(links: tuple[RedisLink, RedisLink]) -> None:
    one = WindowLimiter(1000, 300, source="amplitude", name="query cost", store=SharedWindowStore(links[0]))
    two = WindowLimiter(1000, 300, source="amplitude", name="query cost", store=SharedWindowStore(links[1]))
    with anyio.fail_after(5):
        await one.acquire(600)
        await two.acquire(300)
        with pytest.raises(UpstreamRateLimitedError):
            await two.acquire(200)
        await one.acquire(100)


async def test_the_cache_is_shared_and_expires(links: tuple[RedisLink, RedisLink]) -> None:
    one, two = SharedCache(links[0], MemoryCache()), SharedCache(links[1], MemoryCache())
    entry = CacheEntry(b'{"a": 1}', stored_at=1_800_000_000.0, ttl=3_000_000_000)
    await one.set("k", entry)
    found = await two.get("k")
    assert found is not None and (found.body, found.stored_at, found.ttl) == (entry.body, entry.stored_at, entry.ttl)
    await one.set("old", CacheEntry(b"{}", stored_at=1.0, ttl=10))  # stored long ago: stale at once
    assert await two.get("old") is None


async def test_a_lock_is_held_by_one_replica_and_released_only_by_it(links: tuple[RedisLink, RedisLink]) -> None:
    one, two = SharedLocks(links[0]), SharedLocks(links[1])
    token = await one.acquire("key", 30)
    assert token is not None
    assert await two.acquire("key", 30) is None
    await two.release("key", "not-the-token")
    assert await two.held("key")
    await one.release("key", token)
    assert not await two.held("key")
    assert await two.acquire("key", 30) is not None


async def test_without_redis_everything_falls_back_to_local_state_and_then_recovers(
    redis_server: RedisServer, redis_url: str
) -> None:
    link = RedisLink(redis_url, prefix="t", retry_interval=0.05)
    store = SharedWindowStore(link, fallback_share=0.5)
    limiter = WindowLimiter(4, 60, source="revenuecat", name="charts", store=store)
    cache = SharedCache(link, MemoryCache())
    try:
        redis_server.stop()
        with anyio.fail_after(10):
            await limiter.acquire()
            await limiter.acquire()
            with pytest.raises(UpstreamRateLimitedError):  # half of the capacity while alone
                await limiter.acquire()
            await cache.set("k", CacheEntry(b"{}", stored_at=4_000_000_000.0, ttl=60))
            assert await cache.get("k") is not None  # from the local fallback
            assert await SharedLocks(link).acquire("key", 10) is not None  # compute locally
            assert not link.up
            redis_server.start()
            assert await link.ping()
            assert link.up
            await limiter.acquire()  # the shared window is empty again
            assert await store.used("revenuecat:charts:60", 60) == 1
    finally:
        await link.aclose()


async def test_an_upstream_block_in_redis_is_capped_even_when_set_before_the_cap(redis_url: str) -> None:
    capped = RedisLink(redis_url, prefix="cap", max_block=5)
    try:
        store = SharedWindowStore(capped)
        await store.block("revenuecat:customers:60", 31_536_000)
        assert 0 < await store.spend("revenuecat:customers:60", 1, 100, 60) <= 5
        # a year-long block left in Redis by a replica without the cap shrinks to it on the next spend
        await capped.client.set(capped.key("block", "amplitude:query cost:300"), "1", px=31_536_000_000)
        assert 0 < await store.spend("amplitude:query cost:300", 1, 100, 300) <= 5
        ttl = await capped.client.pttl(capped.key("block", "amplitude:query cost:300"))
        assert 0 < ttl <= 5000
    finally:
        await capped.aclose()


async def test_a_concurrency_limit_is_shared_by_two_replicas(links: tuple[RedisLink, RedisLink]) -> None:
    one = SharedSemaphore(links[0], "amplitude:dashboard", limit=5, lease=30)
    two = SharedSemaphore(links[1], "amplitude:dashboard", limit=5, lease=30)
    held = [await one.acquire() for _ in range(3)] + [await two.acquire() for _ in range(2)]
    with anyio.move_on_after(0.2) as waited:
        await two.acquire()
    assert waited.cancelled_caught
    await one.release(held[0])
    with anyio.fail_after(5):
        assert await two.acquire()


async def test_the_leases_of_a_replica_that_died_expire_and_free_their_slots(
    links: tuple[RedisLink, RedisLink],
) -> None:
    dead = SharedSemaphore(links[0], "amplitude:dashboard", limit=5, lease=0.5)
    for _ in range(5):
        await dead.acquire()  # never released: the replica died holding them
    alive = SharedSemaphore(links[1], "amplitude:dashboard", limit=5, lease=30)
    started = anyio.current_time()
    with anyio.fail_after(5):
        await alive.acquire()
    assert 0.3 <= anyio.current_time() - started < 3


async def test_a_refund_removes_exactly_the_abandoned_units_from_the_shared_window(
    links: tuple[RedisLink, RedisLink],
) -> None:
    window = WindowLimiter(1000, 300, source="amplitude", name="query cost", store=SharedWindowStore(links[0]))
    kept = await window.acquire(120)
    abandoned = await window.acquire(300.5)
    await abandoned.refund()
    assert await window.used() == 120
    assert kept.cost == 120
