"""Fixtures of the vendor-variance suite: one event loop per module (a module-wide app), a sandbox without its own
limits, and no variant left behind between tests (the session `sandbox` fixture resets them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.sandbox import SandboxState
from tests.hardening.support import restore_sandbox, roomy_sandbox


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Module-scoped, so an app opened by a module fixture lives on the loop its tests run on."""
    return "asyncio"


@pytest.fixture(autouse=True)
def roomy(sandbox: SandboxState) -> Iterator[SandboxState]:
    saved = roomy_sandbox(sandbox)
    try:
        yield sandbox
    finally:
        restore_sandbox(sandbox, saved)
