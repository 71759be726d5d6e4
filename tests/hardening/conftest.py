"""Fixtures of the hardening tests: one event loop per module (module-wide apps), a sandbox whose own limits never
interfere with a fault under test, and no long garbage-collector pauses during timed calls."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from shared.sandbox import SandboxState

from .support import restore_sandbox, roomy_sandbox


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Module-scoped, so an app opened by a module fixture lives on the loop its tests run on."""
    return "asyncio"


@pytest.fixture(autouse=True)
def roomy(sandbox: SandboxState) -> Iterator[SandboxState]:
    """No faults, zero counters, and no sandbox-side concurrency or rate limits, around every test."""
    saved = roomy_sandbox(sandbox)
    try:
        yield sandbox
    finally:
        restore_sandbox(sandbox, saved)


@pytest.fixture(scope="module", autouse=True)
def short_gc_pauses_module() -> Iterator[None]:
    """See `short_gc_pauses`; what a module left behind is collected when it ends."""
    gc.collect()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.collect()


@pytest.fixture(autouse=True)
def short_gc_pauses(short_gc_pauses_module: None) -> None:
    """The sandbox shares this process (and its GIL) with the service under test, and a full collection of the heap
    pauses every thread for up to ~0.5 s here (hypothesis, schemathesis and the dataset make it large), longer than
    the 0.3 s upstream timeouts: freeze what exists when a test starts, so a collection only scans that test's
    objects (the frozen ones are collected when the module ends)."""
    gc.freeze()
