"""`make screenshot`: render the dashboard on sandbox data to docs/dashboard.png (the README's image), and print
the page's first paint and full load (warm) as measured by the browser's performance API.

The sandbox dataset and the service clock are the tests' (seed 42, today = 2026-11-20), so the image only changes
when the dashboard does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from api.dashboard import load_dashboard
from shared.sandbox import SandboxServer, SandboxState, generate_dataset
from shared.settings import Settings
from tests.api.conftest import build_settings
from tests.conftest import TODAY, clock

from .support import launch, live_service

PANELS = ("overview", "mau", "funnel", "refunds")
READY_TIMEOUT_MS = 30_000
MEASURE = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const paint = performance.getEntriesByType('paint').find(p => p.name === 'first-contentful-paint');
  return {first_paint_ms: paint ? paint.startTime : null, load_ms: nav.loadEventEnd,
          transferred_bytes: performance.getEntriesByType('resource').reduce((n, r) => n + r.transferSize, 0)
                             + nav.transferSize};
}"""


def wait_ready(page: Page) -> float:
    """Wait until every panel shows its answer; return when that happened (ms since navigation)."""
    for panel in PANELS:
        page.wait_for_selector(f"#panel-{panel}[data-state=ready]", timeout=READY_TIMEOUT_MS)
    ready: float = page.evaluate("performance.now()")
    return ready


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output", type=Path, nargs="?", default=Path("docs/dashboard.png"))
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args(argv)

    dataset = generate_dataset(seed=42, users=2500, end=TODAY)
    with SandboxServer(SandboxState(dataset, wall_clock=clock)) as sandbox:

        def settings(base_url: str) -> Settings:
            return build_settings(
                sandbox.base_url, KPI_SANDBOX=True, KPI_SANDBOX_URL=sandbox.base_url, KPI_PUBLIC_URL=base_url
            )

        with live_service(settings, clock=clock) as service, sync_playwright() as playwright:
            browser = launch(playwright)
            page = browser.new_page(viewport={"width": args.width, "height": 900}, locale="en-US", timezone_id="UTC")
            page.goto(service.dashboard_link)
            wait_ready(page)
            # Warm: the assets are in the browser's cache and the answers in the service's.
            page.reload()
            ready_ms = wait_ready(page)
            timings = page.evaluate(MEASURE)
            page.fill("#journey-user", "user_00042")
            page.press("#journey-user", "Enter")
            page.wait_for_selector("#panel-journey[data-state=ready]", timeout=READY_TIMEOUT_MS)
            # Down to the refund panel (in page coordinates): the journey's long timeline stays out of the picture.
            bottom: float = page.evaluate(
                "document.querySelector('#panel-refunds').getBoundingClientRect().bottom + window.scrollY"
            )
            height = int(bottom) + 16
            args.output.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(
                path=str(args.output), full_page=True, clip={"x": 0, "y": 0, "width": args.width, "height": height}
            )
            browser.close()

    dashboard = load_dashboard()
    print(f"wrote {args.output}")
    print(
        f"bundle: {dashboard.bundle_bytes(gzipped=True):,} bytes gzipped "
        f"({dashboard.bundle_bytes(gzipped=False):,} bytes uncompressed), page + assets"
    )
    print(
        f"warm load on the sandbox: first contentful paint {timings['first_paint_ms']:.0f} ms, "
        f"load event {timings['load_ms']:.0f} ms, every panel filled {ready_ms:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
