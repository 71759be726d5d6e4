"""`BoundedHttpToolsProtocol` in a real uvicorn server on loopback: its header deadline is one timer per connection,
so finished requests are not kept alive until it runs out (tests/hardening/test_abuse.py covers the limits)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import anyio
import httpx2
import pytest
import uvicorn

from api.connections import BoundedHttpToolsProtocol

pytestmark = pytest.mark.anyio


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hi"})


def header_deadlines() -> list[asyncio.TimerHandle]:
    """The header deadlines pending on this event loop (asyncio keeps its timers in `_scheduled`)."""
    loop: Any = asyncio.get_running_loop()
    scheduled: list[asyncio.TimerHandle] = loop._scheduled
    pending: list[asyncio.TimerHandle] = []
    for handle in scheduled:
        callback: Any = getattr(handle, "_callback", None)
        if not handle.cancelled() and getattr(callback, "__name__", "") == "_header_deadline":
            pending.append(handle)
    return pending


async def test_many_requests_on_one_connection_leave_one_header_deadline_pending() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(hello, http=BoundedHttpToolsProtocol, loop="asyncio", lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    config.load()
    server.lifespan = config.lifespan_class(config)
    with anyio.fail_after(20):
        await server.startup(sockets=[sock])  # listening once this returns
        try:
            async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                for _ in range(50):
                    assert (await client.get("/")).text == "hi"
                assert len(header_deadlines()) == 1  # the one keep-alive connection's, not one per response
        finally:
            await server.shutdown(sockets=[sock])
    assert header_deadlines() == []  # closed connections leave none behind
