"""What the browser tests (and `make screenshot`) share: Debian's chromium driven by Playwright, and the service
with its dashboard on real sockets.

Playwright's own browser download cannot run here, so it drives the system binary; without it (or without the
`playwright` package) the browser tests are skipped with one line saying how to enable them.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
from collections.abc import Callable, Generator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from api.cli import banner
from api.main import create_app
from shared.settings import Settings
from tests.api.test_e2e_loopback import serve_in_thread

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
SKIP_REASON = (
    "browser tests need Debian's chromium and the playwright package: "
    "install Debian's chromium: apt-get install chromium (and `pip install -e '.[dev]'`)"
)
VENDOR = Path(__file__).with_name("vendor")


def browser_missing() -> bool:
    return shutil.which(CHROMIUM) is None or importlib.util.find_spec("playwright") is None


def require_browser() -> None:
    """Skip the calling test module when the browser cannot run (one reason, folded into one summary line)."""
    if browser_missing():
        pytest.skip(SKIP_REASON, allow_module_level=True)


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))


@dataclass(frozen=True)
class LiveService:
    """The app on loopback: its base URL and the dashboard link its sandbox banner printed."""

    base_url: str
    banner: str

    @property
    def dashboard_link(self) -> str:
        line = next(line for line in self.banner.splitlines() if line.strip().startswith("Dashboard:"))
        return line.split("Dashboard:", 1)[1].strip()

    @property
    def banner_token(self) -> str:
        return self.dashboard_link.split("#token=", 1)[1]


@contextmanager
def live_service(
    make_settings: Callable[[str], Settings], *, clock: Callable[[], datetime] | None = None
) -> Generator[LiveService]:
    """Serve `create_app` on a free loopback port; `make_settings(base_url)` builds its settings."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    with sock:
        base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        banners: list[str] = []
        app = create_app(make_settings(base_url), clock=clock, on_ready=lambda s: banners.append(banner(s)))
        with serve_in_thread(app, sock):
            yield LiveService(base_url, banners[0])
