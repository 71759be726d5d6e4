"""The dashboard in a real browser (Debian's chromium, driven by Playwright) on the sandbox.

Every figure on the page carries the field of the API answer it shows (`data-field`) and that field's value
(`data-value`); the tests compare both with the answers the page received, and the text with the format.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import httpx2
import pytest

from tests.conftest import JWT_SECRET, token

from .support import READY_TIMEOUT_MS, VENDOR, LiveService, Visit, require_browser

require_browser()

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Frame, Page

DASH = "\u2014"
NBSP = "\u00a0"


@contextmanager
def visit(
    browser: Browser, service: LiveService, *, width: int = 1280, color_scheme: str = "light"
) -> Generator[Visit]:
    context = browser.new_context(
        viewport={"width": width, "height": 900},
        locale="en-US",
        timezone_id="UTC",
        color_scheme="dark" if color_scheme == "dark" else "light",
    )
    page = context.new_page()
    seen = Visit(page, service.base_url)
    page.on("console", seen.on_console)
    page.on("pageerror", lambda error: seen.on_page_error(str(error)))
    page.on("request", lambda request: seen.requests.append(request))
    page.on("response", seen.on_response)
    # Anything not for this origin is answered by nobody (and recorded above): the page must work offline.
    page.route(re.compile(r"^(?!" + re.escape(service.base_url) + r"/|data:).*"), lambda route: route.abort())
    try:
        yield seen
    finally:
        context.close()


def figures(page: Page | Frame, panel: str) -> list[dict[str, str]]:
    """Every figure of a panel (the provenance's too): its field, format, value and text."""
    return page.eval_on_selector_all(
        f"#panel-{panel} [data-field]",
        "nodes => nodes.map(n => ({field: n.dataset.field, format: n.dataset.format, value: n.dataset.value,"
        " text: n.textContent}))",
    )


def resolve(answer: Any, path: str) -> Any:
    value: Any = answer
    for part in path.split("/"):
        value = cast("list[Any]", value)[int(part)] if isinstance(value, list) else value[part]
    return value


def expected_text(value: Any, fmt: str) -> str | None:
    """The exact text a figure must show, or None where only a rounded number is checked."""
    if value is None:
        return DASH
    match fmt:
        case "int":
            return f"{value:,}"
        case "signed":
            return ("+" if value > 0 else "") + f"{value:,}"
        case "pct" | "signedpct":
            sign = "+" if fmt == "signedpct" and value > 0 else ""
            return sign + f"{value:,.2f}".rstrip("0").rstrip(".") + f"{NBSP}%"
        case "money":
            return ("-" if value < 0 else "") + f"${abs(value):,.2f}"
        case "datetime":
            return re.sub(r"(\.\d+)?(Z|\+00:00)$", " UTC", str(value).replace("T", " "))
        case "bool":
            return "yes" if value else "no"
        case "date" | "text":
            return str(value)
        case _:
            return None


def assert_panel_shows(page: Page | Frame, panel: str, answer: Any, required: set[str]) -> None:
    shown = figures(page, panel)
    fields = {f["field"] for f in shown}
    assert required <= fields, sorted(required - fields)
    for figure in shown:
        value = resolve(answer, figure["field"])
        assert json.loads(figure["value"]) == value, figure
        text = expected_text(value, figure["format"])
        if text is not None:
            assert figure["text"] == text, figure
        else:
            assert figure["format"] == "duration" and re.fullmatch(r"[\d.,]+\xa0(s|min|h|d)", figure["text"]), figure


def signed_in(browser: Browser, service: LiveService, **kwargs: Any) -> Iterator[Visit]:
    with visit(browser, service, **kwargs) as seen:
        seen.page.goto(service.dashboard_link)
        seen.wait_all_ready()
        yield seen


@pytest.fixture(scope="module")
def dashboard(browser: Browser, service: LiveService) -> Iterator[Visit]:
    """One visit through the banner's link, shared by the tests that only read the page."""
    yield from signed_in(browser, service)


def test_the_banner_link_signs_in_and_the_token_leaves_the_address_bar_but_never_the_origin(
    dashboard: Visit, service: LiveService
) -> None:
    page = dashboard.page
    assert page.url == service.base_url + "/dashboard"
    assert page.evaluate("sessionStorage.getItem('loop-kpi.token')") == service.banner_token
    assert page.is_visible("#sandbox-banner")
    assert dashboard.foreign_requests() == []
    assert dashboard.console_errors == []
    api_calls = [r for r in dashboard.requests if "/api/kpi/" in r.url]
    assert len(api_calls) == 4
    for request in dashboard.requests:
        assert service.banner_token not in request.url
        expected = f"Bearer {service.banner_token}" if request in api_calls else None
        assert request.headers.get("authorization") == expected


def test_the_overview_cards_show_the_api_answer(dashboard: Visit) -> None:
    answer = dashboard.answers["/api/kpi/overview"]
    required = {"as_of", "amplitude/dau", "amplitude/mau", "amplitude/new_users", "revenuecat/mrr"}
    required |= {f"revenuecat/{name}" for name in ("revenue_28d", "active_subscriptions", "active_trials")}
    assert_panel_shows(dashboard.page, "overview", answer, required | {"data_source", "generated_at"})
    assert answer["data_source"] == "sandbox"


def test_the_mau_chart_has_a_bar_per_month_and_marks_the_partial_month(dashboard: Visit) -> None:
    page = dashboard.page
    answer = dashboard.answers["/api/kpi/mau"]
    months = answer["months"]
    required = {f"months/{i}/{name}" for i in range(len(months)) for name in ("month", "active_users", "change")}
    assert_panel_shows(page, "mau", answer, required)
    assert page.get_attribute("#panel-mau .chart", "data-points") == str(len(months))
    assert months[-1]["partial"] and not any(m["partial"] for m in months[:-1])
    assert page.locator("#panel-mau tbody tr.incomplete").count() == 1
    assert "partial" in page.inner_text("#panel-mau tbody tr.incomplete")
    assert "Partial month" in page.inner_text("#panel-mau .legend")


def test_the_funnel_shows_every_step_with_step_and_overall_conversion(dashboard: Visit) -> None:
    page = dashboard.page
    answer = dashboard.answers["/api/kpi/conversion"]
    steps = answer["steps"]
    required = {
        f"steps/{i}/{name}"
        for i in range(len(steps))
        for name in ("event_type", "users", "step_conversion_pct", "cumulative_conversion_pct")
    }
    assert_panel_shows(page, "funnel", answer, required | {"overall_conversion_pct", "trial_conversion/trials"})
    assert page.get_attribute("#panel-funnel .chart", "data-points") == str(len(steps))


def test_the_refund_rates_follow_the_picker_and_mark_incomplete_periods(dashboard: Visit) -> None:
    page = dashboard.page
    answer = dashboard.answers["/api/kpi/refund-analysis"]
    assert (answer["resolution"], answer["segment"], answer["end_date"]) == ("month", None, "2026-11-20")
    assert_panel_shows(page, "refunds", answer, {"summary/refund_rate_pct", "periods/0/refund_rate_pct"})
    assert page.get_attribute("#panel-refunds .chart", "data-points") == str(len(answer["periods"]))
    incomplete = sum(p["incomplete"] for p in answer["periods"])
    assert incomplete >= 1
    assert page.locator("#panel-refunds tbody tr.incomplete").count() == incomplete

    page.select_option("#refunds-resolution", "week")
    page.select_option("#refunds-segment", "store")
    with page.expect_response(lambda r: r.url.endswith("/api/kpi/refund-analysis")) as answered:
        page.click("#refunds-form button[type=submit]")
    segmented = answered.value.json()
    page.wait_for_selector("#panel-refunds[data-state=ready]")
    assert (segmented["resolution"], segmented["segment"]) == ("week", "store")
    periods = segmented["periods"]
    starts = {p["period_start"] for p in periods}
    segments = {p["segment"] for p in periods}
    assert_panel_shows(page, "refunds", segmented, {f"periods/{i}/segment" for i in range(len(periods))})
    assert page.get_attribute("#panel-refunds .chart", "data-points") == str(len(starts))
    assert page.get_attribute("#panel-refunds .chart", "data-series") == str(min(len(segments), 6))
    assert page.locator("#panel-refunds tbody tr").count() == len(periods)
    assert dashboard.console_errors == []


def test_the_user_lookup_shows_the_journey_as_a_timeline(dashboard: Visit) -> None:
    page = dashboard.page
    page.fill("#journey-user", "user_00042")
    page.press("#journey-user", "Enter")
    dashboard.wait_ready("journey")
    answer = dashboard.answers["/api/kpi/user/user_00042"]
    timeline = answer["timeline"]
    assert len(timeline) > 3
    assert page.locator("#panel-journey .timeline > li").count() == len(timeline)
    required = {f"timeline/{i}/{name}" for i in range(len(timeline)) for name in ("at", "title")}
    assert_panel_shows(page, "journey", answer, required | {"user_id"})

    page.fill("#journey-user", "nobody_here")
    page.press("#journey-user", "Enter")
    page.wait_for_selector("#panel-journey[data-state=error]")
    assert "404" in page.inner_text("#panel-journey [data-slot=status]")
    assert [e for e in dashboard.console_errors if "404" not in e] == []


def test_provenance_is_one_click_away(dashboard: Visit) -> None:
    page = dashboard.page
    details = page.locator("#panel-mau details.provenance")
    answer = details.get_by_label("The API's answer as JSON")
    provenance = details.get_by_label("Provenance as JSON")
    assert not answer.is_visible()
    details.locator("summary").click()
    assert json.loads(answer.inner_text()) == dashboard.answers["/api/kpi/mau"]
    assert json.loads(provenance.inner_text()) == dashboard.answers["/api/kpi/mau"]["provenance"]
    assert "sandbox" in details.inner_text()


def test_independent_api_calls_answer_the_figures_the_page_shows(dashboard: Visit, service: LiveService) -> None:
    headers = {"Authorization": f"Bearer {service.banner_token}"}
    with httpx2.Client(base_url=service.base_url, headers=headers, timeout=20) as http:
        for path in ("/api/kpi/overview", "/api/kpi/mau", "/api/kpi/conversion"):
            fresh = http.get(path).json()
            shown = dashboard.answers[path]
            assert {k: v for k, v in fresh.items() if k != "generated_at"} == {
                k: v for k, v in shown.items() if k != "generated_at"
            }


def test_without_a_token_the_sign_in_screen_shows_and_a_pasted_token_works(
    browser: Browser, service: LiveService
) -> None:
    with visit(browser, service) as seen:
        page = seen.page
        page.goto(service.base_url + "/")
        page.wait_for_selector("#screen-signin:not([hidden])")
        assert page.get_attribute("#signin-reason", "data-reason") == "signed-out"
        assert not any("/api/kpi/" in r.url for r in seen.requests)
        page.keyboard.press("Tab")  # skip link
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "signin-token"
        page.keyboard.type(token())
        page.keyboard.press("Enter")
        seen.wait_all_ready()
        page.click("#sign-out")
        page.wait_for_selector("#screen-signin:not([hidden])")
        assert page.evaluate("sessionStorage.getItem('loop-kpi.token')") is None
        assert seen.console_errors == []
        assert seen.foreign_requests() == []


def test_a_token_without_kpi_read_gets_the_no_access_screen(browser: Browser, service: LiveService) -> None:
    with visit(browser, service) as seen:
        seen.page.goto(f"{service.base_url}/dashboard#token={token(scopes=('reports:read',))}")
        seen.page.wait_for_selector("#screen-forbidden:not([hidden])", timeout=READY_TIMEOUT_MS)
        assert seen.page.is_hidden("#screen-dashboard")
        assert "kpi:read" in seen.page.inner_text("#screen-forbidden")
        seen.page.click("#forbidden-switch")
        seen.page.wait_for_selector("#screen-signin:not([hidden])")


def test_an_expired_token_gets_the_sign_in_screen_with_the_reason(browser: Browser, service: LiveService) -> None:
    expired = token(now=int(time.time()) - 7200, ttl=60)
    assert JWT_SECRET not in expired
    with visit(browser, service) as seen:
        seen.page.goto(f"{service.base_url}/dashboard#token={expired}")
        seen.page.wait_for_selector("#signin-reason[data-reason=expired]", timeout=READY_TIMEOUT_MS)
        assert seen.page.is_visible("#screen-signin")
        assert seen.page.evaluate("sessionStorage.getItem('loop-kpi.token')") is None


def axe_violations(page: Page) -> list[dict[str, Any]]:
    # Evaluated through the DevTools protocol, so the page's CSP (rightly) does not apply to the test's own script.
    page.evaluate((VENDOR / "axe.min.js").read_text(encoding="utf-8"))
    result: dict[str, Any] = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize(("width", "color_scheme"), [(1280, "light"), (360, "dark")])
def test_the_dashboard_has_no_serious_accessibility_violations_and_fits_the_screen(
    browser: Browser, service: LiveService, width: int, color_scheme: str
) -> None:
    for seen in signed_in(browser, service, width=width, color_scheme=color_scheme):
        page = seen.page
        page.fill("#journey-user", "user_00042")
        page.press("#journey-user", "Enter")
        seen.wait_ready("journey")
        page.click("#panel-mau details.provenance summary")
        assert axe_violations(page) == []
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert seen.console_errors == []


def test_the_sign_in_screen_has_no_serious_accessibility_violations(browser: Browser, service: LiveService) -> None:
    with visit(browser, service, width=360) as seen:
        seen.page.goto(service.base_url + "/dashboard")
        seen.page.wait_for_selector("#screen-signin:not([hidden])")
        assert axe_violations(seen.page) == []
