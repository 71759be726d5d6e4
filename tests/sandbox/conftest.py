from collections.abc import Iterator
from datetime import date

import httpx2
import pytest

from shared.sandbox import (
    SANDBOX_AMPLITUDE_API_KEY,
    SANDBOX_AMPLITUDE_SECRET_KEY,
    SANDBOX_REVENUECAT_API_KEY,
    SANDBOX_REVENUECAT_PROJECT_ID,
    Dataset,
    SandboxServer,
    SandboxState,
    generate_dataset,
)

END = date(2025, 11, 20)
PROJECT = f"/v2/projects/{SANDBOX_REVENUECAT_PROJECT_ID}"


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    return generate_dataset(seed=42, users=2500, end=END)


@pytest.fixture(scope="session")
def server(dataset: Dataset) -> Iterator[SandboxServer]:
    with SandboxServer(SandboxState(dataset)) as sb:
        yield sb


@pytest.fixture
def state(server: SandboxServer) -> Iterator[SandboxState]:
    """The shared server's state, clean for each test; config tweaks are undone afterwards."""
    st = server.state
    saved = dict(vars(st))
    clock = st.clock
    st.reset()
    yield st
    st.reset()
    st.clock = clock
    for key, value in saved.items():
        setattr(st, key, value)


@pytest.fixture
def amplitude(server: SandboxServer, state: SandboxState) -> Iterator[httpx2.Client]:
    auth = (SANDBOX_AMPLITUDE_API_KEY, SANDBOX_AMPLITUDE_SECRET_KEY)
    with httpx2.Client(base_url=server.base_url, auth=auth, timeout=10) as client:
        yield client


@pytest.fixture
def revenuecat(server: SandboxServer, state: SandboxState) -> Iterator[httpx2.Client]:
    headers = {"Authorization": f"Bearer {SANDBOX_REVENUECAT_API_KEY}"}
    with httpx2.Client(base_url=server.base_url, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
def anonymous(server: SandboxServer, state: SandboxState) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=server.base_url, timeout=10) as client:
        yield client
