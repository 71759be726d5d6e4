"""Result cache: a small backend interface (in memory by default, bounded, LRU) with entries that know their age.

Entries hold the pre-serialized JSON of a result, so a warm REST answer is sent as bytes without re-serializing,
and (in process) the parsed result too, so a warm MCP answer needs no parsing. The byte bound counts both: a parsed
result takes 6-9 times the memory of its JSON (docs/reliability.md), so counting only the JSON would let the cache
hold several times its bound.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as day_time
from enum import Enum
from typing import Protocol

_LEAVES = (str, bytes, int, float, complex, date, datetime, day_time, timedelta)


def deep_size(value: object) -> int:
    """Bytes held by `value` and everything it refers to, each object counted once (`sys.getsizeof`): what a
    parsed result costs the process. Shared singletons (None, booleans, enum members, classes) and the attribute
    names of objects (interned, shared by every instance) are not counted."""
    seen: set[int] = set()
    stack: list[object] = [value]
    total = 0
    while stack:
        item = stack.pop()
        if item is None or isinstance(item, bool | Enum | type) or id(item) in seen:
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        if isinstance(item, _LEAVES):
            continue
        if isinstance(item, dict):
            for key, child in item.items():  # pyright: ignore[reportUnknownVariableType]
                stack.append(key)  # pyright: ignore[reportUnknownArgumentType]
                stack.append(child)  # pyright: ignore[reportUnknownArgumentType]
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)  # pyright: ignore[reportUnknownArgumentType]
        else:
            attributes = getattr(item, "__dict__", None)
            if isinstance(attributes, dict):
                seen.add(id(attributes))  # pyright: ignore[reportUnknownArgumentType]
                total += sys.getsizeof(attributes)  # pyright: ignore[reportUnknownArgumentType]
                stack.extend(attributes.values())  # pyright: ignore[reportUnknownArgumentType]
            for slot in ("__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__"):
                stack.append(getattr(item, slot, None))
    return total


def entry_size(entry: CacheEntry) -> int:
    """What an entry holds in memory: its JSON body and, when kept, its parsed result."""
    held = len(entry.body)
    if entry.value is not None:
        held += deep_size(entry.value)
    return held


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
    """In-process LRU cache bounded by entry count and by the bytes its entries hold (body and parsed result,
    `entry_size`); expired entries are dropped on read."""

    def __init__(
        self, *, max_entries: int = 2048, max_bytes: int = 64 * 1024 * 1024, clock: Callable[[], float] = time.time
    ) -> None:
        self._entries: OrderedDict[str, tuple[CacheEntry, int]] = OrderedDict()
        self._bytes = 0
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def held_bytes(self) -> int:
        """Bytes the entries hold now (`entry_size` summed)."""
        return self._bytes

    async def get(self, key: str) -> CacheEntry | None:
        held = self._entries.get(key)
        if held is None:
            return None
        entry = held[0]
        if not entry.fresh(self.clock()):
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    async def set(self, key: str, entry: CacheEntry) -> None:
        size = entry_size(entry)
        if size > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (entry, size)
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    async def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def _drop(self, key: str) -> None:
        _, size = self._entries.pop(key)
        self._bytes -= size
