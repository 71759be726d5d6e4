"""What replicas share through Redis (`KPI_REDIS_URL`): the result cache, single-flight locks, and upstream rate
windows. Every piece degrades to its in-process twin while Redis is unreachable, and goes back to Redis by itself.

    RedisLink            one asyncio client + health: after a failure, calls fail fast (no waiting on a dead
                         server) until a retry interval has passed, then Redis is tried again
    SharedCache          CacheBackend on Redis behind a local MemoryCache (which serves alone while Redis is down)
    SharedLocks          SET NX PX locks: one replica computes a key, the others wait for its cache entry
    SharedWindowStore    rate windows as sorted sets (a Lua script spends atomically, with Redis's clock);
                         falls back to local windows at a conservative share of each capacity
    SharedSemaphore      a concurrency limit across replicas (Amplitude's 5 per project): leases in a sorted
                         set scored by their expiry, so a replica that dies holding one frees it after `lease` s
"""

from __future__ import annotations

import logging
import secrets
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from shared.budget import DEFAULT_MAX_BLOCK, LocalWindowStore
from shared.cache import CacheEntry, MemoryCache

T = TypeVar("T")
logger = logging.getLogger("loop_kpi.redis")
_HEADER = struct.Struct("!dd")  # stored_at, ttl

_SPEND = """
local key, block = KEYS[1], KEYS[2]
local cost, capacity, window, force = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if not force then
  local pttl = redis.call('PTTL', block)
  if pttl > 0 then
    local cap = math.ceil(tonumber(ARGV[6]) * 1000)
    if pttl > cap then
      redis.call('PEXPIRE', block, cap)  -- a block set before the cap (or with a larger one) shrinks to it
      pttl = cap
    end
    return tostring(pttl / 1000)
  end
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
local used = 0
for i = 1, #entries, 2 do used = used + tonumber(string.match(entries[i], '^([^:]+)')) end
if force or #entries == 0 or used + cost <= capacity then
  redis.call('ZADD', key, now, ARGV[5])
  redis.call('PEXPIRE', key, math.ceil(window * 1000))
  return '0'
end
local excess, freed = used + cost - capacity, 0
for i = 1, #entries, 2 do
  freed = freed + tonumber(string.match(entries[i], '^([^:]+)'))
  if freed >= excess then return tostring(tonumber(entries[i + 1]) + window - now) end
end
return tostring(window)
"""

_USED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
local entries = redis.call('ZRANGE', KEYS[1], 0, -1)
local used = 0
for i = 1, #entries do used = used + tonumber(string.match(entries[i], '^([^:]+)')) end
return tostring(used)
"""

_LEASE = """
local limit, lease, token = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now + lease, token)
  redis.call('PEXPIRE', KEYS[1], math.ceil(lease * 1000))
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisUnavailableError(Exception):
    """Redis did not answer (or recently did not): use the local fallback."""


class RedisLink:
    """The Redis client and whether it currently answers."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "loop-kpi",
        timeout: float = 0.5,
        retry_interval: float = 2.0,
        max_block: float = DEFAULT_MAX_BLOCK,
    ) -> None:
        self.client: aioredis.Redis = aioredis.Redis.from_url(  # pyright: ignore[reportUnknownMemberType]
            url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=0
        )
        self.prefix = prefix
        self.retry_interval = retry_interval
        self.max_block = max_block
        self.down_since: float | None = None
        self._retry_at = 0.0
        self._spend = self.client.register_script(_SPEND)
        self._used = self.client.register_script(_USED)
        self._release = self.client.register_script(_RELEASE)
        self._lease = self.client.register_script(_LEASE)

    @property
    def up(self) -> bool:
        return self.down_since is None

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis operation; fail fast with `RedisUnavailableError` while Redis is known to be down."""
        now = time.monotonic()
        if self.down_since is not None and now < self._retry_at:
            raise RedisUnavailableError
        try:
            try:
                result = await operation()
            except (RedisConnectionError, OSError):
                # A pooled connection from before a Redis restart fails once; a fresh one may not.
                result = await operation()
        except (RedisError, OSError) as exc:
            if self.down_since is None:
                logger.warning("redis unreachable (%s); serving from local state", type(exc).__name__)
                self.down_since = now
            self._retry_at = now + self.retry_interval
            raise RedisUnavailableError from exc
        if self.down_since is not None:
            logger.warning("redis reachable again; sharing resumes")
            self.down_since = None
        return result

    async def ping(self) -> bool:
        """Whether Redis answers now (bypasses the fail-fast interval)."""
        self._retry_at = 0.0
        try:
            await self.call(self.client.ping)  # pyright: ignore[reportUnknownArgumentType, reportUnknownMemberType]
        except RedisUnavailableError:
            return False
        return True

    async def spend(
        self, name: str, cost: float, capacity: float, window: float, *, force: bool = False, entry: str = ""
    ) -> float:
        member = _member(cost, entry or secrets.token_hex(6))
        result = await self.call(
            lambda: self._spend(
                keys=[self.key("window", name), self.key("block", name)],
                args=[cost, capacity, window, "1" if force else "0", member, self.max_block],
            )
        )
        return float(_text(result))

    async def refund(self, name: str, cost: float, entry: str) -> None:
        await self.call(lambda: self.client.zrem(self.key("window", name), _member(cost, entry)))

    async def lease(self, name: str, limit: int, seconds: float, token: str) -> bool:
        """Take one of `limit` leases of `name` for `seconds`; False when all are held."""
        result = await self.call(lambda: self._lease(keys=[self.key("slots", name)], args=[limit, seconds, token]))
        return bool(int(_text(result)))

    async def unlease(self, name: str, token: str) -> None:
        await self.call(lambda: self.client.zrem(self.key("slots", name), token))

    async def used(self, name: str, window: float) -> float:
        result = await self.call(lambda: self._used(keys=[self.key("window", name)], args=[window]))
        return float(_text(result))

    async def block(self, name: str, seconds: float) -> None:
        milliseconds = max(1, int(min(seconds, self.max_block) * 1000))
        await self.call(lambda: self.client.set(self.key("block", name), "1", px=milliseconds))

    async def release(self, key: str, token: str) -> None:
        await self.call(lambda: self._release(keys=[key], args=[token]))

    async def aclose(self) -> None:
        await self.client.aclose()


def _member(cost: float, entry: str) -> str:
    """A window entry: its cost (read back by the Lua scripts) and the id `refund` removes it by."""
    return f"{float(cost)!r}:{entry}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SharedCache:
    """The result cache in Redis (bodies only), behind a local MemoryCache.

    Entries never change while fresh (an entry expires at `stored_at + ttl` wherever it is held), so the local
    copy is served without asking Redis; Redis is read on a local miss and written on every store. While Redis is
    down the local cache is all there is.
    """

    def __init__(self, link: RedisLink, local: MemoryCache) -> None:
        self.link = link
        self.local = local

    async def get(self, key: str) -> CacheEntry | None:
        entry = await self.local.get(key)
        if entry is not None:
            return entry
        try:
            blob = await self.link.call(lambda: self.link.client.get(self.link.key("cache", key)))
        except RedisUnavailableError:
            return None
        if not isinstance(blob, bytes) or len(blob) < _HEADER.size:
            return None
        stored_at, ttl = _HEADER.unpack_from(blob)
        entry = CacheEntry(blob[_HEADER.size :], stored_at, ttl)
        if not entry.fresh(time.time()):
            return None
        await self.local.set(key, entry)
        return entry

    async def set(self, key: str, entry: CacheEntry) -> None:
        await self.local.set(key, entry)
        blob = _HEADER.pack(entry.stored_at, entry.ttl) + entry.body
        try:
            await self.link.call(
                lambda: self.link.client.set(self.link.key("cache", key), blob, px=max(1, int(entry.ttl * 1000)))
            )
        except RedisUnavailableError:
            pass

    async def clear(self) -> None:
        await self.local.clear()


class SharedLocks:
    """One computation per key across replicas: `SET NX PX` with a token, released only by its holder."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link

    async def acquire(self, key: str, ttl: float) -> str | None:
        """A token when this replica may compute `key`; None when another holds it. Redis down: compute locally."""
        token = secrets.token_hex(8)
        try:
            taken = await self.link.call(
                lambda: self.link.client.set(self.link.key("lock", key), token, nx=True, px=max(1, int(ttl * 1000)))
            )
        except RedisUnavailableError:
            return token
        return token if taken else None

    async def held(self, key: str) -> bool:
        try:
            return bool(await self.link.call(lambda: self.link.client.exists(self.link.key("lock", key))))
        except RedisUnavailableError:
            return False

    async def release(self, key: str, token: str) -> None:
        try:
            await self.link.release(self.link.key("lock", key), token)
        except RedisUnavailableError:
            pass


class SharedWindowStore:
    """Rate windows shared by every replica; while Redis is down, local windows at `fallback_share` of capacity."""

    def __init__(self, link: RedisLink, *, fallback_share: float = 0.5) -> None:
        self.link = link
        self.local = LocalWindowStore(max_block=link.max_block)
        self.fallback_share = fallback_share

    async def spend(
        self, name: str, cost: float, capacity: float, window: float, *, force: bool = False, entry: str = ""
    ) -> float:
        try:
            return await self.link.spend(name, cost, capacity, window, force=force, entry=entry)
        except RedisUnavailableError:
            return await self.local.spend(name, cost, capacity * self.fallback_share, window, force=force, entry=entry)

    async def refund(self, name: str, cost: float, entry: str) -> None:
        await self.local.refund(name, cost, entry)
        try:
            await self.link.refund(name, cost, entry)
        except RedisUnavailableError:
            pass

    async def used(self, name: str, window: float) -> float:
        try:
            return await self.link.used(name, window)
        except RedisUnavailableError:
            return await self.local.used(name, window)

    async def block(self, name: str, seconds: float) -> None:
        try:
            await self.link.block(name, seconds)
        except RedisUnavailableError:
            await self.local.block(name, seconds)


class SharedSemaphore:
    """At most `limit` concurrent holders across every replica (`shared.budget.SharedSlots`).

    Each holder has a lease that expires after `lease` seconds (longer than one upstream request may take), so the
    slots of a replica that died while holding them come back by themselves. A replica waits for a free lease by
    polling Redis every `poll` seconds (within the caller's deadline); while Redis is down it relies on its own
    limit alone.
    """

    def __init__(self, link: RedisLink, name: str, *, limit: int, lease: float, poll: float = 0.02) -> None:
        self.link = link
        self.name = name
        self.limit = limit
        self.lease = lease
        self.poll = poll

    async def acquire(self) -> str:
        token = secrets.token_hex(8)
        while True:
            try:
                if await self.link.lease(self.name, self.limit, self.lease, token):
                    return token
            except RedisUnavailableError:
                return ""
            await anyio.sleep(self.poll)

    async def release(self, token: str) -> None:
        if not token:
            return
        try:
            await self.link.unlease(self.name, token)
        except RedisUnavailableError:
            pass  # the lease expires by itself
