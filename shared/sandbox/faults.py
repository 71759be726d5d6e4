"""Fault injection and per-endpoint request counters shared by the Amplitude and RevenueCat emulators.

Faults are keyed by endpoint name (``ENDPOINTS``) or a wildcard (``amplitude.*``, ``revenuecat.*``, ``*``);
the most specific match wins. A fault with ``times=N`` applies to the next N matching requests only.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import anyio
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

ENDPOINTS = (
    "amplitude.users",
    "amplitude.segmentation",
    "amplitude.funnels",
    "amplitude.usersearch",
    "amplitude.useractivity",
    "revenuecat.overview",
    "revenuecat.chart_options",
    "revenuecat.chart",
    "revenuecat.customer",
    "revenuecat.subscriptions",
    "revenuecat.purchases",
    "revenuecat.transactions",
    "revenuecat.v1_subscribers",
)
WILDCARDS = ("amplitude.*", "revenuecat.*", "*")
MALFORMED_JSON_BODY = b'{"data": {"series": [[1, 2'
WRONG_SHAPE_BODY: Mapping[str, object] = {"unexpected": True}


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """What to do to matching requests. Faults combine: latency first, then reset / status / body faults."""

    latency: float = 0.0  # seconds to wait before answering
    status: int | None = None  # answer this status with the vendor's error body shape
    retry_after: int | None = None  # with status 429: add ``Retry-After``; None omits it
    malformed_json: bool = False  # 200 with a body that is not JSON
    wrong_shape: bool = False  # 200 with valid JSON of the wrong shape
    reset: bool = False  # drop the connection without a complete response
    slow_body: float = 0.0  # send headers, then trickle the body over this many seconds
    times: int | None = None  # apply to the next N matching requests, then clear; None = until cleared


class SandboxConnectionResetError(Exception):
    """Raised inside the ASGI app to make the server drop the connection (a ``reset`` fault)."""


class FaultRegistry:
    """Thread-safe fault table and request counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, tuple[FaultSpec, int | None]] = {}
        self._counts: dict[str, int] = {}

    def inject(self, endpoint: str, spec: FaultSpec) -> None:
        if endpoint not in ENDPOINTS and endpoint not in WILDCARDS:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {ENDPOINTS + WILDCARDS}")
        if spec.times is not None and spec.times < 1:
            raise ValueError("times must be >= 1 or None")
        with self._lock:
            self._faults[endpoint] = (spec, spec.times)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, endpoint: str) -> FaultSpec | None:
        """The fault for this request (consuming one use of a ``times`` fault), or None."""
        vendor = endpoint.split(".", 1)[0] + ".*"
        with self._lock:
            for key in (endpoint, vendor, "*"):
                entry = self._faults.get(key)
                if entry is None:
                    continue
                spec, remaining = entry
                if remaining is not None:
                    if remaining <= 1:
                        del self._faults[key]
                    else:
                        self._faults[key] = (spec, remaining - 1)
                return spec
        return None

    def record(self, endpoint: str) -> None:
        with self._lock:
            self._counts[endpoint] = self._counts.get(endpoint, 0) + 1

    @property
    def counts(self) -> dict[str, int]:
        """A snapshot: endpoint name -> requests received (faulted ones included)."""
        with self._lock:
            return dict(self._counts)

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()


class _ResetResponse(Response):
    """Starts a response that promises a body, then aborts: the server closes the socket mid-response."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"1024")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        raise SandboxConnectionResetError("sandbox fault: connection reset")


class _SlowBodyResponse(Response):
    """Sends the headers at once, then the body in chunks spread over ``seconds``."""

    def __init__(self, inner: Response, seconds: float) -> None:
        super().__init__(status_code=inner.status_code)
        self.body = inner.body
        self.raw_headers = list(inner.raw_headers)
        self._seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        body = bytes(self.body)
        parts = 5
        size = max(1, -(-len(body) // parts))
        chunks = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
        for index, chunk in enumerate(chunks):
            if index:
                await anyio.sleep(self._seconds / max(1, len(chunks) - 1))
            await send({"type": "http.response.body", "body": chunk, "more_body": index < len(chunks) - 1})


ErrorFactory = Callable[[int, int | None], Response]


async def apply_fault(
    fault: FaultSpec | None, error: ErrorFactory, call: Callable[[], Awaitable[Response]]
) -> Response:
    """Answer through ``fault`` (if any); ``error(status, retry_after)`` renders the vendor's error body."""
    if fault is None:
        return await call()
    if fault.latency > 0:
        await anyio.sleep(fault.latency)
    if fault.reset:
        return _ResetResponse()
    if fault.status is not None:
        response = error(fault.status, fault.retry_after)
    elif fault.malformed_json:
        response = Response(MALFORMED_JSON_BODY, media_type="application/json")
    elif fault.wrong_shape:
        response = JSONResponse(WRONG_SHAPE_BODY)
    else:
        response = await call()
    if fault.slow_body > 0:
        return _SlowBodyResponse(response, fault.slow_body)
    return response
