"""Result cache: a small backend interface (in memory by default, bounded, LRU) with entries that know their age.

Entries hold the pre-serialized JSON of a result, so a warm REST answer is sent as bytes without re-serializing.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class CacheEntry:
    """A cached result: its JSON body, when it was stored (epoch seconds) and for how long it is fresh.

    `value` may hold the (immutable) result object itself, so an in-process hit needs no parsing; a backend that
    serializes entries drops it and keeps the body.
    """

    body: bytes
    stored_at: float
    ttl: float
    value: object | None = field(default=None, compare=False, repr=False)

    def age(self, now: float) -> float:
        return max(0.0, now - self.stored_at)

    def fresh(self, now: float) -> bool:
        return self.age(now) < self.ttl


class CacheBackend(Protocol):
    """Where results live between requests."""

    async def get(self, key: str) -> CacheEntry | None:
        """The fresh entry for `key`, or None."""
        ...

    async def set(self, key: str, entry: CacheEntry) -> None:
        """Store `entry` for its ttl."""
        ...

    async def clear(self) -> None:
        """Forget everything."""
        ...


class MemoryCache:
    """In-process LRU cache bounded by entry count and total body bytes; expired entries are dropped on read."""

    def __init__(
        self, *, max_entries: int = 2048, max_bytes: int = 64 * 1024 * 1024, clock: Callable[[], float] = time.time
    ) -> None:
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self._bytes = 0
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> CacheEntry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if not entry.fresh(self.clock()):
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    async def set(self, key: str, entry: CacheEntry) -> None:
        if len(entry.body) > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = entry
        self._bytes += len(entry.body)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    async def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        self._bytes -= len(entry.body)
