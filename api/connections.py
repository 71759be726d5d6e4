"""Connection limits of `loop-kpi serve`: header size, header read time, idle keep-alive and concurrent
connections, so unauthenticated clients cannot hold the server's memory or sockets (docs/deployment.md).

uvicorn bounds header size only with its h11 protocol (`h11_max_incomplete_event_size`) and has no header read
timeout at all. `BoundedHttpToolsProtocol` keeps the faster httptools parser (uvicorn[standard]; about 1.4x h11's
throughput here) and adds both: a request whose headers pass `KPI_MAX_HEADER_BYTES` gets a 400 and the connection
is closed, and a connection whose request headers are not complete `KPI_HEADER_TIMEOUT` seconds after it opened
(or after its previous response) is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.settings import Settings


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size limit and a deadline for each request's headers.

    One deadline timer per connection at most: armed when the connection opens and after each response, cancelled
    when a request's headers are complete or the connection is lost. (A timer per response, left to run out, kept
    every finished request's objects alive for the whole timeout: at 3,000 requests/s, some 30,000 of them for the
    collector to trace, which made its full collections take 100-140 ms, the REST p99.)
    """

    header_timeout: float = 10.0
    max_header_bytes: int = 16 * 1024

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self._in_headers = True
        self._header_bytes = 0
        self._parsed_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._in_headers or self.transport.is_closing():
            return
        # What the parser holds of headers not yet complete: bounded by the limit plus one read.
        self._header_bytes += len(data)
        if self._header_bytes > self.max_header_bytes:
            self.send_400_response("Request headers too large.")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = 0
        self._parsed_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        # Complete headers that arrived in one read: raising here stops the parser, and uvicorn answers 400.
        self._parsed_bytes += size
        if self._parsed_bytes > self.max_header_bytes:
            raise ValueError("request headers too large")

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm_header_deadline()  # in time
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_deadline)

    def _disarm_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline(self) -> None:
        # No request's headers completed since the deadline was armed. A request whose headers completed before
        # the previous response did (pipelined) may still be running: only a connection with nothing in progress
        # is closed.
        self._header_timer = None
        cycle: Any = self.cycle  # None until the first request's headers are complete
        if (cycle is None or cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()


def server_limits(settings: Settings) -> dict[str, Any]:
    """The `uvicorn.run` keyword arguments that bound what one client may hold."""
    # A class (not an instance) is what uvicorn takes, so the limits are set on it.
    BoundedHttpToolsProtocol.header_timeout = settings.KPI_HEADER_TIMEOUT
    BoundedHttpToolsProtocol.max_header_bytes = settings.KPI_MAX_HEADER_BYTES
    return {
        "http": BoundedHttpToolsProtocol,
        "timeout_keep_alive": settings.KPI_KEEPALIVE_TIMEOUT,
        "limit_concurrency": settings.KPI_MAX_CONNECTIONS,
    }
