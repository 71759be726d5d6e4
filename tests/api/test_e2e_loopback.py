"""End to end over real sockets: uvicorn serves `create_app(...)` on loopback, the sandbox answers on another port,
and the tokens minted by `loop-kpi token` and printed in the sandbox banner are accepted by the running server."""

from __future__ import annotations

import shlex
import socket
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager

import httpx2
import pytest
import uvicorn
from fastapi import FastAPI

from api.cli import banner, main
from api.main import create_app
from shared.sandbox import SandboxServer
from shared.settings import Settings
from tests.conftest import JWT_SECRET, clock

from .conftest import REFUND_BODY, ROUTES

START_TIMEOUT = 10.0


class _Server(uvicorn.Server):
    """A uvicorn server that says when it is listening (or gave up), so nobody has to sleep."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_done = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.startup_done.set()


@contextmanager
def serve_in_thread(app: FastAPI, sock: socket.socket) -> Generator[None]:
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="kpi-e2e", daemon=True)
    thread.start()
    try:
        assert server.startup_done.wait(START_TIMEOUT), "the server did not start"
        assert server.started, "the server failed to start"
        yield
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT)
        assert not thread.is_alive(), "the server did not stop"


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    """A bound loopback socket on a free port, handed to uvicorn so the public URL is known before it starts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    with sock:
        yield sock


def test_every_route_over_real_sockets_with_cli_and_banner_tokens(
    make_settings: Callable[..., Settings],
    sandbox_server: SandboxServer,
    listening: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base_url = f"http://127.0.0.1:{listening.getsockname()[1]}"
    settings = make_settings(KPI_SANDBOX=True, KPI_SANDBOX_URL=sandbox_server.base_url, KPI_PUBLIC_URL=base_url)
    banners: list[str] = []
    app = create_app(settings, clock=clock, on_ready=lambda effective: banners.append(banner(effective)))
    monkeypatch.setenv("KPI_JWT_SECRET", JWT_SECRET)

    assert main(["token", "--sub", "x"]) == 0
    cli_token = capsys.readouterr().out.strip()

    with serve_in_thread(app, listening), httpx2.Client(base_url=base_url, timeout=10) as http:
        assert http.get("/healthz").status_code == 200
        unauthenticated = http.get("/api/kpi/overview")
        assert unauthenticated.status_code == 401
        assert unauthenticated.headers["WWW-Authenticate"] == 'Bearer realm="loop-kpi"'

        headers = {"Authorization": f"Bearer {cli_token}"}
        for route in ROUTES:
            if route.method == "POST":
                response = http.post(route.path, json=dict(REFUND_BODY), headers=headers)
            else:
                response = http.get(route.path, headers=headers)
            assert response.status_code == 200, (route.operation_id, response.text)
            assert response.headers["X-KPI-Data-Source"] == "sandbox"
            assert route.model.model_validate(response.json()).data_source == "sandbox"

        [printed] = banners
        try_line = next(line for line in printed.splitlines() if line.strip().startswith("Try:"))
        argv = shlex.split(try_line.split("Try:", 1)[1])
        assert argv[:3] == ["curl", "-s", "-H"]
        name, _, value = argv[3].partition(": ")
        from_banner = http.get(argv[4], headers={name: value})
        assert from_banner.status_code == 200, from_banner.text
        assert argv[4] == f"{base_url}/api/kpi/overview"
