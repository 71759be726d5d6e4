"""The KPI service as the faces see it: cached results and single-flight in front of `KpiService`.

A request is first planned: its query resolved (defaults made concrete, input validated) by the operation's
declaration (`shared.operations`), so `mau()` and `mau(end_month=<this month>)` share one cache entry. A miss starts one computation per key, in the runtime's task
group so that a caller who goes away does not cancel it for the others; every concurrent caller of that key waits
for the same result. Results are stored as JSON bytes, which the REST face sends as they are.

Fair use: the computation task is started from the first requester's context, so it sees that caller
(`shared.caller`) and spends that caller's share of the upstream budgets; callers who join it spend nothing. Each
caller may start at most `caller_computations` computations at once (a 429 for that caller beyond them). A caller
who joined a computation that failed only because its starter's share was spent computes again for itself.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import anyio
from anyio.abc import TaskGroup
from pydantic import BaseModel

from shared.cache import CacheBackend, CacheEntry
from shared.caller import caller
from shared.errors import CallerBudgetExceededError, DeadlineExceededError
from shared.models import kpi as m
from shared.operations import CacheTtl, Operation
from shared.services.kpi import KpiService

QueryT = TypeVar("QueryT", bound=BaseModel)
ResultT = TypeVar("ResultT", bound=m.ResultMeta)
CACHE_VERSION = "v1"
PEER_POLL_INTERVAL = 0.02


class Locks(Protocol):
    """Cross-replica single-flight (`shared.shared_state.SharedLocks`)."""

    async def acquire(self, key: str, ttl: float) -> str | None: ...

    async def held(self, key: str) -> bool: ...

    async def release(self, key: str, token: str) -> None: ...


@dataclass
class Served(Generic[ResultT]):
    """A result with where it came from: its JSON body, when it was computed, how long it stays fresh."""

    body: bytes
    stored_at: float
    ttl: float
    hit: bool
    model: type[ResultT]
    _value: ResultT | None = field(default=None, repr=False)

    @property
    def value(self) -> ResultT:
        if self._value is None:
            self._value = self.model.model_validate_json(self.body)
        return self._value

    def age(self, now: float) -> int:
        return max(0, int(now - self.stored_at))

    def max_age(self, now: float) -> int:
        return max(0, int(self.ttl - (now - self.stored_at)))


@dataclass(frozen=True)
class Plan(Generic[ResultT]):
    """How one request is answered: its operation, cache key, result model, freshness, and the computation."""

    operation_id: str
    key: str
    model: type[ResultT]
    ttl: float
    compute: Callable[[], Awaitable[ResultT]]


@dataclass
class _Flight:
    done: anyio.Event = field(default_factory=anyio.Event)
    result: Served[m.ResultMeta] | None = None
    error: BaseException | None = None


class CachedKpiService:
    """Cache + single-flight over `KpiService`: every operation is answered through `answer` (or `plan` + `serve`)."""

    def __init__(
        self,
        kpi: KpiService,
        cache: CacheBackend,
        task_group: TaskGroup,
        *,
        ttl: CacheTtl,
        deadline: float,
        clock: Callable[[], float] = time.time,
        namespace: str = "",
        locks: Locks | None = None,
        caller_computations: int | None = None,
    ) -> None:
        self.kpi = kpi
        self.cache = cache
        self._tasks = task_group
        self.ttl = ttl
        self.deadline = deadline
        self.clock = clock
        self._namespace = f"loop-kpi:{CACHE_VERSION}:{namespace or kpi.data_source}"
        self._inflight: dict[str, _Flight] = {}
        self.computations = 0
        self.locks = locks
        self.caller_computations = caller_computations
        self._cold_by_caller: dict[str, int] = {}

    def plan(self, operation: Operation[QueryT, ResultT], query: QueryT) -> Plan[ResultT]:
        """What a request will be answered from (its resolved query, cache key, freshness), without running it.

        Resolving validates the query (`InvalidInputError`); it happens here, once per request.
        """
        inputs = self.kpi.inputs()
        resolved = operation.resolve(query, inputs)
        kpi = self.kpi
        return Plan(
            operation.id,
            self.key(operation.cache_kind, resolved),
            operation.result,
            operation.ttl(self.ttl, resolved, inputs.today),
            lambda: operation.compute(kpi, resolved),
        )

    async def answer(self, operation: Operation[QueryT, ResultT], query: QueryT) -> Served[ResultT]:
        """The cached answer of `operation` for `query`, or the one computation shared by every caller."""
        return await self.serve(self.plan(operation, query))

    def key(self, kind: str, query: BaseModel) -> str:
        """The cache key of a resolved query."""
        return f"{self._namespace}:{kind}:{query.model_dump_json()}"

    async def peek(self, plan: Plan[ResultT]) -> Served[ResultT] | None:
        """The cached answer of a plan, if there is a fresh one; never computes."""
        if plan.ttl <= 0:
            return None
        entry = await self.cache.get(plan.key)
        if entry is None:
            return None
        value = entry.value if isinstance(entry.value, plan.model) else None
        return Served(entry.body, entry.stored_at, entry.ttl, hit=True, model=plan.model, _value=value)

    async def serve(self, plan: Plan[ResultT]) -> Served[ResultT]:
        """The cached answer, or the result of the one computation in flight for this key."""
        cached = await self.peek(plan)
        if cached is not None:
            return cached
        key, model = plan.key, plan.model
        flight = self._inflight.get(key)
        if flight is None:
            flight = self._start(key, plan)
        # The computation has its own deadline; this one only guards against a lost wake-up.
        with anyio.fail_after(self.deadline + 5):
            await flight.done.wait()
        error = flight.error
        if isinstance(error, CallerBudgetExceededError) and error.subject != caller():
            return await self.serve(plan)  # another caller's share was spent, not this one's: try on our own
        if error is not None:
            raise error
        assert flight.result is not None
        result = flight.result
        value = result.value if isinstance(result.value, model) else None
        return Served(result.body, result.stored_at, result.ttl, hit=False, model=model, _value=value)

    def _start(self, key: str, plan: Plan[ResultT]) -> _Flight:
        """Start the computation of `key` on behalf of the current caller, within that caller's share."""
        subject = caller()
        if subject is not None and self.caller_computations is not None:
            running = self._cold_by_caller.get(subject, 0)
            if running >= self.caller_computations:
                raise CallerBudgetExceededError(
                    f"this caller already has {running} uncached computations in flight, its share "
                    f"({self.caller_computations}); ask again when one has finished.",
                    source=None,
                    retry_after=1,
                    subject=subject,
                )
            self._cold_by_caller[subject] = running + 1
        flight = self._inflight[key] = _Flight()
        self._tasks.start_soon(self._compute, key, flight, plan.ttl, plan.compute, plan.model, subject)
        return flight

    async def _compute(
        self,
        key: str,
        flight: _Flight,
        ttl: float,
        compute: Callable[[], Awaitable[ResultT]],
        model: type[ResultT],
        subject: str | None = None,
    ) -> None:
        token: str | None = None
        try:
            if self.locks is not None and ttl > 0:
                token = await self.locks.acquire(key, self.deadline + 5)
                if token is None:
                    entry = await self._await_peer(key)
                    if entry is not None:
                        flight.result = Served(entry.body, entry.stored_at, entry.ttl, hit=True, model=model)
                        return
                    token = await self.locks.acquire(key, self.deadline + 5)  # the peer gave up: compute here
            self.computations += 1
            try:
                with anyio.fail_after(self.deadline):
                    value = await compute()
            except TimeoutError as exc:
                raise DeadlineExceededError(
                    f"the upstreams did not answer within the {self.deadline:g} s deadline."
                ) from exc
            body = value.model_dump_json().encode()
            stored_at = self.clock()
            keep = min(ttl, self.ttl.partial) if value.partial or value.short_lived else ttl
            if keep > 0:
                await self.cache.set(key, CacheEntry(body, stored_at, keep, value))
            flight.result = Served(body, stored_at, keep, hit=False, model=model, _value=value)
        except Exception as exc:  # noqa: BLE001 - handed to every waiter, who re-raises it
            flight.error = exc
        finally:
            if token is not None and self.locks is not None:
                await self.locks.release(key, token)
            del self._inflight[key]
            if subject is not None and subject in self._cold_by_caller:
                self._cold_by_caller[subject] -= 1
                if not self._cold_by_caller[subject]:
                    del self._cold_by_caller[subject]
            flight.done.set()

    async def _await_peer(self, key: str) -> CacheEntry | None:
        """Another replica holds the key's lock: wait (bounded) for the entry it will store."""
        assert self.locks is not None
        with anyio.move_on_after(self.deadline):
            while True:
                entry = await self.cache.get(key)
                if entry is not None:
                    return entry
                if not await self.locks.held(key):
                    return await self.cache.get(key)
                await anyio.sleep(PEER_POLL_INTERVAL)
        return None
