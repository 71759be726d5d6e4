"""The runtime a face's lifespan owns: one HTTP client per configured upstream, the clients and the KPI service.

`open_runtime` opens everything and closes it on exit; nothing here is built at import time.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Generator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import anyio
import httpx2

from shared.auth.tokens import TokenVerifier
from shared.budget import Gate, WindowLimiter, WindowStore
from shared.cache import CacheBackend, MemoryCache
from shared.clients._http import UpstreamHttp, new_async_client
from shared.clients.amplitude import AmplitudeClient
from shared.clients.revenuecat import RevenueCatClient
from shared.errors import Source
from shared.models.kpi import DataSource
from shared.operations import CacheTtl
from shared.readiness import ReadinessCache, SourceReadiness
from shared.services.cached import CachedKpiService
from shared.services.kpi import KpiService
from shared.settings import Settings

if TYPE_CHECKING:  # Redis is imported only when KPI_REDIS_URL is set (stdio and one worker start without it)
    from shared.shared_state import RedisLink, SharedLocks, SharedSemaphore


@dataclass
class Runtime:
    """What a face needs at request time."""

    settings: Settings
    kpi: KpiService
    cached: CachedKpiService
    amplitude: AmplitudeClient | None
    revenuecat: RevenueCatClient | None
    data_source: DataSource
    verifier: TokenVerifier
    redis: RedisLink | None = None
    _readiness: ReadinessCache = field(default_factory=ReadinessCache, repr=False)

    @property
    def anonymous_allowed(self) -> bool:
        """Callers without a token are admitted only by a sandbox started with `--no-auth`."""
        return self.settings.KPI_NO_AUTH and self.data_source == "sandbox"

    async def readiness(self) -> list[SourceReadiness]:
        """Configured and reachable state of each source: one shared probe per 30 s (`shared.readiness`)."""
        return await self._readiness.read(self)


def sandbox_settings(settings: Settings, base_url: str) -> Settings:
    """Settings pointing both upstreams at a sandbox, with the sandbox's (fake) credentials."""
    from shared.sandbox import credentials as sandbox

    update: dict[str, object] = {
        "AMPLITUDE_BASE_URL": base_url,
        "AMPLITUDE_API_KEY": sandbox.SANDBOX_AMPLITUDE_API_KEY,
        "AMPLITUDE_SECRET_KEY": sandbox.SANDBOX_AMPLITUDE_SECRET_KEY,
        "REVENUECAT_BASE_URL": base_url,
        "REVENUECAT_API_KEY": sandbox.SANDBOX_REVENUECAT_API_KEY,
        "REVENUECAT_PROJECT_ID": sandbox.SANDBOX_REVENUECAT_PROJECT_ID,
    }
    return Settings.model_validate({**settings.model_dump(), **update})


@contextmanager
def sandbox_upstreams(settings: Settings) -> Generator[Settings]:
    """With `KPI_SANDBOX`, the settings to use against the sandbox: the one at `KPI_SANDBOX_URL`, or one started
    here on loopback for as long as the context lasts. Without it, the settings unchanged (never a fallback)."""
    if not settings.KPI_SANDBOX:
        yield settings
        return
    if settings.KPI_SANDBOX_URL:
        yield sandbox_settings(settings, settings.KPI_SANDBOX_URL.rstrip("/"))
        return
    from shared.sandbox import SandboxServer

    with SandboxServer() as server:
        yield sandbox_settings(settings, server.base_url)


def _window_factory(
    store: WindowStore | None, settings: Settings
) -> Callable[[float, float, Source, str], WindowLimiter]:
    def window(capacity: float, seconds: float, source: Source, name: str) -> WindowLimiter:
        return WindowLimiter(
            capacity,
            seconds,
            source=source,
            name=name,
            store=store,
            max_block=settings.KPI_MAX_UPSTREAM_BLOCK,
            caller_share=settings.KPI_CALLER_BUDGET_SHARE,
            max_cost_share=settings.KPI_MAX_REQUEST_COST_SHARE,
            retry_reserve=settings.KPI_RETRY_RESERVE if name == "query cost" else 0.0,
        )

    return window


def _shared_slots(link: RedisLink | None, settings: Settings, name: str, limit: int) -> SharedSemaphore | None:
    """Amplitude's per-project concurrency across replicas; a lease outlives one upstream request by 5 s."""
    if link is None:
        return None
    from shared.shared_state import SharedSemaphore

    return SharedSemaphore(link, name, limit=limit, lease=settings.KPI_UPSTREAM_TIMEOUT + 5)


def _upstream_http(settings: Settings, http: httpx2.AsyncClient, source: Source) -> UpstreamHttp:
    return UpstreamHttp(
        http,
        source=source,
        deadline=settings.KPI_UPSTREAM_TIMEOUT,
        retries=settings.KPI_UPSTREAM_RETRIES,
        max_retry_wait=settings.KPI_RETRY_MAX_WAIT,
        max_block=settings.KPI_MAX_UPSTREAM_BLOCK,
    )


async def _open_amplitude(
    settings: Settings,
    stack: AsyncExitStack,
    transport: httpx2.AsyncBaseTransport | None,
    window: Callable[[float, float, Source, str], WindowLimiter],
    link: RedisLink | None = None,
) -> AmplitudeClient | None:
    """The Amplitude client with its budgets: dashboard queries (concurrency, cost per 5 min and per hour) and
    user lookups (concurrency, queries per hour); None when its keys are not set."""
    if not settings.amplitude_configured:
        return None
    http = await stack.enter_async_context(
        new_async_client(
            settings.AMPLITUDE_BASE_URL,
            auth=httpx2.BasicAuth(*settings.amplitude_credentials()),
            transport=transport,
            timeout=settings.KPI_UPSTREAM_TIMEOUT,
            connect_timeout=settings.KPI_UPSTREAM_CONNECT_TIMEOUT,
        )
    )
    return AmplitudeClient(
        _upstream_http(settings, http, "amplitude"),
        dashboard=Gate(
            anyio.CapacityLimiter(settings.KPI_AMPLITUDE_CONCURRENCY),
            (
                window(settings.KPI_AMPLITUDE_COST_PER_5MIN, 300, "amplitude", "query cost"),
                window(settings.KPI_AMPLITUDE_COST_PER_HOUR, 3600, "amplitude", "query cost"),
            ),
            _shared_slots(link, settings, "amplitude:dashboard", settings.KPI_AMPLITUDE_CONCURRENCY),
        ),
        user_lookup=Gate(
            anyio.CapacityLimiter(settings.KPI_AMPLITUDE_USER_CONCURRENCY),
            (window(settings.KPI_AMPLITUDE_USER_QUERIES_PER_HOUR, 3600, "amplitude", "user lookup"),),
            _shared_slots(link, settings, "amplitude:user-lookup", settings.KPI_AMPLITUDE_USER_CONCURRENCY),
        ),
    )


async def _open_revenuecat(
    settings: Settings,
    stack: AsyncExitStack,
    transport: httpx2.AsyncBaseTransport | None,
    window: Callable[[float, float, Source, str], WindowLimiter],
) -> RevenueCatClient | None:
    """The RevenueCat client with its per-domain request windows under one concurrency limit; None when its key
    or project is not set."""
    if not settings.revenuecat_configured:
        return None
    http = await stack.enter_async_context(
        new_async_client(
            settings.REVENUECAT_BASE_URL,
            headers={"Authorization": f"Bearer {settings.revenuecat_key()}"},
            transport=transport,
            timeout=settings.KPI_UPSTREAM_TIMEOUT,
            connect_timeout=settings.KPI_UPSTREAM_CONNECT_TIMEOUT,
        )
    )
    limiter = anyio.CapacityLimiter(settings.KPI_REVENUECAT_CONCURRENCY)
    return RevenueCatClient(
        _upstream_http(settings, http, "revenuecat"),
        (settings.REVENUECAT_PROJECT_ID or "").strip(),
        gates={
            "charts_metrics": Gate(limiter, (window(settings.KPI_REVENUECAT_CHARTS_RPM, 60, "revenuecat", "charts"),)),
            "customer_information": Gate(
                limiter, (window(settings.KPI_REVENUECAT_CUSTOMERS_RPM, 60, "revenuecat", "customers"),)
            ),
        },
    )


async def _open_verifier(
    settings: Settings, stack: AsyncExitStack, token_clock: Callable[[], float] | None = None
) -> TokenVerifier:
    """The token verifier; it makes and closes its own HTTP client for the JWKS (and the issuer's discovery) when
    it needs one."""
    return await stack.enter_async_context(TokenVerifier(settings, clock=token_clock or time.time))


def _cache_ttl(settings: Settings) -> CacheTtl:
    return CacheTtl(
        overview=settings.KPI_CACHE_TTL_OVERVIEW,
        mau_current=settings.KPI_CACHE_TTL_MAU_CURRENT,
        mau_closed=settings.KPI_CACHE_TTL_CLOSED,
        conversion=settings.KPI_CACHE_TTL_CONVERSION,
        journey=settings.KPI_CACHE_TTL_JOURNEY,
        refunds=settings.KPI_CACHE_TTL_REFUNDS,
        partial=settings.KPI_CACHE_TTL_PARTIAL,
    )


def _shared_locks(link: RedisLink | None) -> SharedLocks | None:
    if link is None:
        return None
    from shared.shared_state import SharedLocks

    return SharedLocks(link)


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    transport: httpx2.AsyncBaseTransport | None = None,
    data_source: DataSource = "live",
    clock: Callable[[], datetime] | None = None,
    cache: CacheBackend | None = None,
    token_clock: Callable[[], float] | None = None,
) -> AsyncGenerator[Runtime]:
    """Open one HTTP client per configured upstream, build the service, and close everything on exit; `token_clock`
    (unix seconds) is the token verifier's clock (tests)."""
    async with AsyncExitStack() as stack:
        link: RedisLink | None = None
        store: WindowStore | None = None
        if settings.KPI_REDIS_URL is not None and settings.KPI_REDIS_URL.get_secret_value().strip():
            from shared.shared_state import RedisLink, SharedWindowStore

            link = RedisLink(
                settings.KPI_REDIS_URL.get_secret_value().strip(),
                prefix=f"loop-kpi:{data_source}",
                timeout=settings.KPI_REDIS_TIMEOUT,
                max_block=settings.KPI_MAX_UPSTREAM_BLOCK,
            )
            stack.push_async_callback(link.aclose)
            store = SharedWindowStore(link, fallback_share=settings.KPI_REDIS_FALLBACK_SHARE)
        window = _window_factory(store, settings)

        tasks = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(tasks.cancel_scope.cancel)  # runs first on exit: stop computations nobody awaits

        amplitude = await _open_amplitude(settings, stack, transport, window, link)
        revenuecat = await _open_revenuecat(settings, stack, transport, window)
        kpi = KpiService(
            amplitude,
            revenuecat,
            conversion_steps=settings.KPI_CONVERSION_STEPS,
            data_source=data_source,
            activity_limit=settings.KPI_USER_ACTIVITY_LIMIT,
            **({"clock": clock} if clock is not None else {}),
        )
        verifier = await _open_verifier(settings, stack, token_clock)
        if cache is None:  # not `cache or ...`: an empty cache is falsy
            cache = MemoryCache(max_entries=settings.KPI_CACHE_MAX_ENTRIES, max_bytes=settings.KPI_CACHE_MAX_BYTES)
            if link is not None:
                from shared.shared_state import SharedCache

                cache = SharedCache(link, local=cache)
        cached = CachedKpiService(
            kpi,
            cache,
            tasks,
            ttl=_cache_ttl(settings),
            deadline=settings.KPI_REQUEST_DEADLINE,
            locks=_shared_locks(link),
            caller_computations=settings.KPI_CALLER_COLD_COMPUTATIONS,
        )
        yield Runtime(settings, kpi, cached, amplitude, revenuecat, data_source, verifier, redis=link)
