"""Fixtures every test folder shares: a clean environment, one loopback sandbox per session, settings and tokens.

Time is fixed: the sandbox dataset ends on `TODAY` and the service's clock says `NOW`, so figures are repeatable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.auth.tokens import mint_token
from shared.runtime import Runtime, open_runtime, sandbox_settings
from shared.sandbox import Dataset, SandboxServer, SandboxState, generate_dataset
from shared.settings import Settings

NOW = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
TODAY = NOW.date()
JWT_SECRET = "loop-kpi-test-secret-0123456789abcdefghijklmnop"


def clock() -> datetime:
    return NOW


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's environment or `.env`."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(Settings.model_config, "env_file", None)


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    return generate_dataset(seed=42, users=2500, end=TODAY)


@pytest.fixture(scope="session")
def sandbox_server(dataset: Dataset) -> Iterator[SandboxServer]:
    with SandboxServer(SandboxState(dataset, wall_clock=clock)) as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> Iterator[SandboxState]:
    """The session sandbox's state, with counters, faults and rate-limit windows cleared before and after."""
    state = sandbox_server.state
    state.reset()
    yield state
    state.reset()


@pytest.fixture
def make_settings(sandbox_server: SandboxServer) -> Callable[..., Settings]:
    """Settings pointing at the session sandbox with its credentials and the test JWT secret; override any field."""

    def make(**overrides: Any) -> Settings:
        base = Settings(KPI_JWT_SECRET=JWT_SECRET)  # pyright: ignore[reportArgumentType]
        configured = sandbox_settings(base, sandbox_server.base_url)
        return Settings.model_validate({**configured.model_dump(), **overrides})

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def runtime(settings: Settings, sandbox: SandboxState) -> AsyncIterator[Runtime]:
    async with open_runtime(settings, data_source="sandbox", clock=clock) as opened:
        yield opened


def token(*, scopes: tuple[str, ...] = ("kpi:read",), roles: tuple[str, ...] = (), **kwargs: Any) -> str:
    """A token signed with the test secret."""
    return mint_token(JWT_SECRET, subject="tester", scopes=scopes, roles=roles, **kwargs)
