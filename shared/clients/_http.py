"""What both upstream clients share: building an `httpx2.AsyncClient`, and turning a response into data or a
typed `UpstreamError`. Nothing here ever puts a credential into an error message."""

from __future__ import annotations

import functools
import json
import math
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote

import anyio
import httpx2
from pydantic import BaseModel, ValidationError

from shared.budget import DEFAULT_MAX_BLOCK, Gate, remaining_time
from shared.errors import (
    CallerBudgetExceededError,
    Source,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRateLimitedError,
    UpstreamTimeoutError,
)
from shared.provenance import record

ModelT = TypeVar("ModelT", bound=BaseModel)
QueryParams = Mapping[str, str | int] | httpx2.QueryParams

DEFAULT_RETRY_AFTER = 60
"""Longest block after a 429 that names no wait: the first blocks `FIRST_BLIND_BLOCK` s, each next one twice as long
(up to this), and an answered request starts over (Amplitude's concurrency 429 carries no Retry-After)."""
FIRST_BLIND_BLOCK = 5
_BASE_BACKOFF = 0.2
_MAX_BACKOFF = 2.0
USER_AGENT = "loop-kpi/0.1 (+https://loop-kpi.dev)"


def path_segment(value: str) -> str:
    """`value` as exactly one URL path segment: every reserved character percent-encoded, and a dots-only value
    (`.`, `..`, ...) as `%2E`s, which URL builders and servers do not resolve as "this" or "parent" directory."""
    encoded = quote(value, safe="")
    if encoded and encoded.strip(".") == "":
        return "%2E" * len(encoded)
    return encoded


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context (system CA store loaded once) for every outgoing client: building one costs ~35 ms, which
    each client would otherwise pay at start-up (and a stdio session at its first tool call)."""
    return httpx2.create_ssl_context()


def new_async_client(
    base_url: str,
    *,
    timeout: float,
    connect_timeout: float,
    auth: httpx2.Auth | tuple[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> httpx2.AsyncClient:
    """One pooled client per upstream, with explicit timeouts and no redirects followed."""
    return httpx2.AsyncClient(
        base_url=base_url,
        auth=auth,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})},
        timeout=httpx2.Timeout(timeout, connect=connect_timeout),
        limits=httpx2.Limits(max_connections=50, max_keepalive_connections=20),
        transport=transport,
        verify=tls_context(),
        follow_redirects=False,
    )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> int | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0, math.ceil(seconds))


class UpstreamHttp:
    """Sends one request to an upstream and maps every failure onto the error hierarchy."""

    def __init__(
        self,
        client: httpx2.AsyncClient,
        *,
        source: Source,
        deadline: float,
        retries: int = 2,
        max_retry_wait: float = 10.0,
        max_block: float = DEFAULT_MAX_BLOCK,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self.source: Source = source
        self._deadline = deadline
        self._retries = retries
        self._max_retry_wait = max_retry_wait
        self.max_block = max_block
        self._random = rng or random.Random()
        self.retries_made = 0
        self.blind_429s = 0  # 429s in a row that named no wait (reset by any other answer)
        self._blind_until = 0.0

    async def get(
        self,
        path: str,
        *,
        params: QueryParams | None = None,
        allow_404: bool = False,
        gate: Gate | None = None,
        cost: float = 1.0,
        on_response: Callable[[httpx2.Response], Awaitable[None]] | None = None,
    ) -> httpx2.Response:
        """GET `path` within the upstream budget, retrying timeouts, 5xx and 429 with jittered backoff while the
        caller's deadline allows; other 4xx are never retried."""
        record("GET", path, params)
        attempt = 0
        previous: UpstreamError | None = None
        while True:
            try:
                if gate is None:
                    response = await self._send(path, params)
                else:
                    async with gate.slot(cost, retry=attempt > 0):
                        response = await self._send(path, params)
                if on_response is not None:
                    await on_response(response)
                self.check_status(response, allow_404=allow_404)
                return response
            except CallerBudgetExceededError as exc:
                if previous is not None:
                    raise previous from exc  # the retry does not fit this caller's share: say why the first failed
                raise
            except UpstreamError as exc:
                if previous is not None and isinstance(exc, UpstreamRateLimitedError) and exc.upstream_status is None:
                    # Our own budget refused the retry: the caller should hear why the first attempt failed.
                    raise previous from exc
                previous = exc
                delay = self._retry_delay(exc, attempt)
                if isinstance(exc, UpstreamRateLimitedError) and exc.upstream_status == 429 and gate is not None:
                    await gate.block_for(exc.retry_after)
                if delay is None or delay > self._max_retry_wait or delay >= remaining_time():
                    raise
                attempt += 1
                self.retries_made += 1
                await anyio.sleep(delay)

    def _retry_delay(self, error: UpstreamError, attempt: int) -> float | None:
        """Seconds to wait before retrying, or None when this error is not worth a retry."""
        if attempt >= self._retries or isinstance(error, UpstreamAuthError):
            return None
        if isinstance(error, UpstreamRateLimitedError):
            return float(error.retry_after) if error.upstream_status == 429 else None
        transient = isinstance(error, UpstreamTimeoutError) or error.upstream_status is None
        if not transient and (error.upstream_status or 0) < 500:
            return None
        return self._random.uniform(0, min(_MAX_BACKOFF, _BASE_BACKOFF * 2**attempt))

    async def _send(self, path: str, params: QueryParams | None) -> httpx2.Response:
        try:
            with anyio.fail_after(self._deadline):
                response = await self._client.get(path, params=params)
                await response.aread()
        except (TimeoutError, httpx2.TimeoutException) as exc:
            raise UpstreamTimeoutError(
                f"{self.source} did not answer within {self._deadline:g} s.", source=self.source
            ) from exc
        except httpx2.TransportError as exc:
            raise UpstreamError(
                f"{self.source} could not be reached ({type(exc).__name__}).", source=self.source
            ) from exc
        return response

    def check_status(self, response: httpx2.Response, *, allow_404: bool = False) -> None:
        """Raise the typed error for a non-2xx status (404 passes when `allow_404`)."""
        status = response.status_code
        if status != 429:
            self.blind_429s = 0
        if 200 <= status < 300 or (allow_404 and status == 404):
            return
        reason = _vendor_reason(response)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is None:
                retry_after = _backoff_seconds(response)
            if retry_after is None:
                retry_after = self._blind_block()
            capped = ""
            if retry_after > self.max_block:
                capped = (
                    f" ({self.source} asked for {retry_after} s; the service caps an upstream's wait at "
                    f"{self.max_block:g} s)"
                )
                retry_after = max(1, math.ceil(self.max_block))
            raise UpstreamRateLimitedError(
                f"{self.source} is rate-limiting the service; retry in {retry_after} s{capped}.",
                source=self.source,
                retry_after=retry_after,
            )
        if status in (401, 403):
            raise UpstreamAuthError(
                f"{self.source} rejected the service's credentials (HTTP {status}{reason}). "
                "Check the configured keys and region.",
                source=self.source,
                upstream_status=status,
            )
        if status >= 500:
            raise UpstreamError(
                f"{self.source} failed with HTTP {status}{reason}.", source=self.source, upstream_status=status
            )
        raise UpstreamError(
            f"{self.source} rejected the request with HTTP {status}{reason}.",
            source=self.source,
            upstream_status=status,
        )

    def _blind_block(self) -> int:
        """Seconds to block after a 429 naming no wait: 5, 10, 20, 40, 60, 60, ... for 429s in a row; the 429s of
        one burst (while the current block lasts) share its end rather than doubling it each."""
        now = time.monotonic()
        if now < self._blind_until:
            return max(1, math.ceil(self._blind_until - now))
        seconds = min(DEFAULT_RETRY_AFTER, FIRST_BLIND_BLOCK * 2**self.blind_429s)
        self.blind_429s += 1
        self._blind_until = now + seconds
        return seconds

    def parse(self, response: httpx2.Response, model: type[ModelT]) -> ModelT:
        """Validate a JSON body into a wire model; anything else is an `UpstreamError` (bad response)."""
        return self.validate(self.json(response), model)

    def json(self, response: httpx2.Response) -> Any:
        """The decoded JSON body, or an `UpstreamError` when it is not JSON."""
        try:
            return json.loads(response.content)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UpstreamError(
                f"{self.source} sent a response that is not valid JSON (HTTP {response.status_code}).",
                source=self.source,
                upstream_status=response.status_code,
            ) from exc

    def validate(self, data: Any, model: type[ModelT]) -> ModelT:
        """Validate decoded JSON into a wire model, naming where it differs without echoing values."""
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            where = ", ".join(".".join(str(p) for p in err["loc"]) or "<root>" for err in exc.errors()[:3])
            raise UpstreamError(
                f"{self.source} sent a response of an unexpected shape ({model.__name__}: {where}).",
                source=self.source,
            ) from exc


def _vendor_reason(response: httpx2.Response) -> str:
    """A short, secret-free reason from a vendor error body: its `type` (RevenueCat) and nothing else."""
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return ""
    if isinstance(body, dict):
        kind = body.get("type")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        if isinstance(kind, str) and kind.replace("_", "").isalnum() and len(kind) <= 64:
            return f", {kind}"
    return ""


def _backoff_seconds(response: httpx2.Response) -> int | None:
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(body, dict):
        backoff = body.get("backoff_ms")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        if isinstance(backoff, int | float) and backoff >= 0:
            return max(1, math.ceil(backoff / 1000))
    return None
