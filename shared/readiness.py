"""Readiness of the upstreams: one cheap probe per source, shared by every caller of `/readyz`.

`/readyz` is unauthenticated, so what it costs the upstream budgets must not depend on who asks or how often: the
result is cached for `READINESS_TTL` seconds, and while a probe is in flight every other caller waits for it
(single flight) instead of starting its own. The probe runs shielded from its first caller's cancellation (it is
bounded by the upstream timeout), so a caller who hangs up does not make the next one probe again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio

from shared.errors import KpiError, Source

if TYPE_CHECKING:
    from shared.runtime import Runtime

READINESS_TTL = 30.0


@dataclass(frozen=True)
class SourceReadiness:
    """Whether one upstream is configured and answered a cheap probe (no secrets, no upstream bodies)."""

    source: Source
    configured: bool
    reachable: bool | None
    detail: str | None = None


class ReadinessCache:
    """The last probe's result for `ttl` seconds, and at most one probe in flight."""

    def __init__(self, ttl: float = READINESS_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self.probes = 0
        self._lock = anyio.Lock()
        self._cached: tuple[float, list[SourceReadiness]] | None = None

    def _fresh(self) -> list[SourceReadiness] | None:
        if self._cached is not None and self.clock() - self._cached[0] < self.ttl:
            return self._cached[1]
        return None

    async def read(self, runtime: Runtime) -> list[SourceReadiness]:
        """The cached readiness, or the result of the one probe in flight (started here when there is none)."""
        cached = self._fresh()
        if cached is not None:
            return cached
        async with self._lock:
            cached = self._fresh()  # whoever held the lock probed for us
            if cached is not None:
                return cached
            results: list[SourceReadiness] = []
            with anyio.CancelScope(shield=True):
                self.probes += 1
                results = await probe_sources(runtime)
                self._cached = (self.clock(), results)
            return results


async def probe_sources(runtime: Runtime) -> list[SourceReadiness]:
    """Probe every source once, concurrently; each probe is bounded by the upstream timeout."""
    results: dict[Source, SourceReadiness] = {}
    timeout = runtime.settings.KPI_UPSTREAM_TIMEOUT + 1

    async def probe(source: Source, check: Callable[[], Awaitable[object]] | None) -> None:
        if check is None:
            results[source] = SourceReadiness(source, configured=False, reachable=None, detail="not configured")
            return
        try:
            with anyio.fail_after(timeout):
                await check()
        except KpiError as exc:
            results[source] = SourceReadiness(source, configured=True, reachable=False, detail=exc.detail)
        except TimeoutError:
            results[source] = SourceReadiness(source, configured=True, reachable=False, detail="probe timed out")
        else:
            results[source] = SourceReadiness(source, configured=True, reachable=True)

    amplitude, revenuecat = runtime.amplitude, runtime.revenuecat
    yesterday = runtime.kpi.today() - timedelta(days=1)
    async with anyio.create_task_group() as group:
        group.start_soon(
            probe,
            "amplitude",
            None if amplitude is None else lambda: amplitude.users(yesterday, yesterday, metric="active"),
        )
        group.start_soon(
            probe, "revenuecat", None if revenuecat is None else lambda: revenuecat.customer("loop-kpi-readyz")
        )
    return [results["amplitude"], results["revenuecat"]]
