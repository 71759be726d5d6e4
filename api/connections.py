"""Connection limits of `loop-kpi serve`: header size, header read time, idle keep-alive and concurrent
connections, so unauthenticated clients cannot hold the server's memory or sockets (docs/deployment.md).

uvicorn bounds header size only with its h11 protocol (`h11_max_incomplete_event_size`) and has no header read
timeout at all: `BoundedH11Protocol` adds one, closing a connection whose request headers are not complete
`KPI_HEADER_TIMEOUT` seconds after it opened (or after its previous response).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from shared.settings import Settings


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers."""

    header_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        waiting_after = self.cycle
        self.loop.call_later(self.header_timeout, self._header_deadline, waiting_after)

    def _header_deadline(self, waiting_after: object) -> None:
        # No new request cycle since the deadline was armed: the next request's headers are still incomplete.
        cycle: Any = self.cycle  # None until the first request's headers are complete
        if cycle is waiting_after and (cycle is None or cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()


def server_limits(settings: Settings) -> dict[str, Any]:
    """The `uvicorn.run` keyword arguments that bound what one client may hold."""
    BoundedH11Protocol.header_timeout = settings.KPI_HEADER_TIMEOUT  # a class (not an instance) is what uvicorn takes
    return {
        "http": BoundedH11Protocol,
        "h11_max_incomplete_event_size": settings.KPI_MAX_HEADER_BYTES,
        "timeout_keep_alive": settings.KPI_KEEPALIVE_TIMEOUT,
        "limit_concurrency": settings.KPI_MAX_CONNECTIONS,
    }
