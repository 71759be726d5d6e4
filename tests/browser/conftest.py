"""Fixtures of the browser tests: one chromium per module, the service on loopback over the session sandbox.

Playwright's sync API runs its own event loop, so these tests are plain (not anyio) functions, and the browser
lives per module so no event loop of it is left behind for the anyio tests that run later.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from shared.sandbox import SandboxServer
from shared.settings import Settings
from tests.api.conftest import build_settings
from tests.conftest import clock

from .support import LiveService, browser_missing, launch, live_service

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@pytest.fixture(scope="module")
def service(sandbox_server: SandboxServer) -> Iterator[LiveService]:
    """The app in sandbox mode (as `make demo` runs it) on the session sandbox, with the tests' fixed clock."""

    def settings(base_url: str) -> Settings:
        return build_settings(
            sandbox_server.base_url, KPI_SANDBOX=True, KPI_SANDBOX_URL=sandbox_server.base_url, KPI_PUBLIC_URL=base_url
        )

    with live_service(settings, clock=clock) as live:
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if browser_missing():
        pytest.skip("no browser")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()
