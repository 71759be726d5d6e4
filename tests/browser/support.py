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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from api.cli import banner
from api.main import create_app
from shared.settings import Settings
from tests.api.test_e2e_loopback import serve_in_thread

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Request, Response

READY_TIMEOUT_MS = 20_000
"""How long a panel may take to show its answer."""
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


@dataclass
class Visit:
    """One page of the dashboard with what it logged and fetched."""

    page: Page
    origin: str
    console_errors: list[str] = field(default_factory=list[str])
    requests: list[Request] = field(default_factory=list["Request"])
    answers: dict[str, Any] = field(default_factory=dict[str, Any])

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def on_page_error(self, error: str) -> None:
        self.console_errors.append(error)

    def on_response(self, response: Response) -> None:
        if "/api/kpi/" in response.url and response.ok:
            self.answers[urlsplit(response.url).path] = response.json()

    def wait_ready(self, panel: str) -> None:
        self.page.wait_for_selector(f"#panel-{panel}[data-state=ready]", timeout=READY_TIMEOUT_MS)

    def wait_all_ready(self) -> None:
        for panel in ("overview", "mau", "funnel", "refunds"):
            self.wait_ready(panel)

    def foreign_requests(self) -> list[str]:
        return [r.url for r in self.requests if not (r.url.startswith(self.origin + "/") or r.url.startswith("data:"))]
