"""The combined sandbox ASGI app (both vendors on one port) and ``SandboxServer``: uvicorn on loopback in a thread."""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType
from typing import Self

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from .amplitude import amplitude_routes
from .control import control_routes
from .faults import SandboxConnectionResetError
from .revenuecat import revenuecat_routes
from .state import SandboxState

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0


class RawPathRouting:
    """Route on the path as sent, still percent-encoded, as the vendors do: an id sent as `a%2Fb` or `%2E%2E` stays
    one segment (handlers decode path parameters themselves), where routing on the decoded path would split it or
    resolve it as a dot segment."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if isinstance(raw, bytes):
            scope = {**scope, "path": raw.decode("latin-1")}
        await self.app(scope, receive, send)


def create_sandbox_app(state: SandboxState | None = None) -> Starlette:
    """One Starlette app: ``/api/2/*`` Amplitude, ``/v1/*`` + ``/v2/*`` RevenueCat, ``/_sandbox/*`` control."""
    state = state or SandboxState()
    app = Starlette(
        routes=[*amplitude_routes(state), *revenuecat_routes(state), *control_routes(state)],
        middleware=[Middleware(RawPathRouting)],
    )
    app.state.sandbox = state
    return app


_THREAD_NAME = "sandbox-server"


class _DropResetTracebacks(logging.Filter):
    """Injected connection resets are intentional: keep uvicorn from logging them as app errors. And the in-process
    sandbox's own start/stop lines (INFO, from its thread) are noise beside the service's."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, SandboxConnectionResetError):
            return False
        return not (record.threadName == _THREAD_NAME and record.levelno < logging.WARNING)


_RESET_FILTER = _DropResetTracebacks()


def quiet_injected_resets() -> None:
    """Install the log filter on uvicorn's error logger (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    if _RESET_FILTER not in logger.filters:
        logger.addFilter(_RESET_FILTER)


class SandboxServer:
    """``with SandboxServer() as sb:`` serves the sandbox on ``sb.base_url`` (127.0.0.1, port 0 = any free port)."""

    def __init__(self, state: SandboxState | None = None, port: int = 0, host: str = "127.0.0.1") -> None:
        self.state = state or SandboxState()
        self.host = host
        # log_config/log_level None: leave logging alone. uvicorn's loggers are process-wide, and lowering them here
        # would hide the service's own "running on" and "shutting down" lines; the filter quiets this thread's.
        config = uvicorn.Config(
            create_sandbox_app(self.state),
            host=host,
            port=port,
            log_config=None,
            log_level=None,
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=_THREAD_NAME, daemon=True)
        self.port = port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        quiet_injected_resets()
        self.state.dataset  # noqa: B018 - build the dataset before the first request, not inside it
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        stopped = threading.Event()
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._server.should_exit = True
                raise RuntimeError("sandbox server failed to start")
            stopped.wait(0.01)
        sockets = [s for server in self._server.servers for s in server.sockets]
        self.port = int(sockets[0].getsockname()[1])

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(_STOP_TIMEOUT)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
