"""The MCP App views in a real browser: a test page plays the host's side of the MCP Apps postMessage protocol
(ui/initialize, initialized, tool-input, tool-result) around a sandboxed iframe, and hands it a real tool result
from the running service's `/mcp` endpoint. The view must render the same figures as the result's
structuredContent, with the dashboard's charts, and load nothing from anywhere."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import httpx2
import pytest

from shared.ui import mcp_app_html
from tests.server.support import MCP_POST_HEADERS, SAMPLE_ARGUMENTS, jsonrpc

from .support import LiveService, require_browser
from .test_dashboard import assert_panel_shows

require_browser()

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Frame, Page

TIMEOUT_MS = 20_000
HOST_PAGE = """<!doctype html>
<html><body>
<iframe id="view" title="MCP App" sandbox="allow-scripts" width="720" height="600"></iframe>
<script>
window.hostLog = [];
window.startHost = (html, toolName, args, result, theme) => {
  const frame = document.getElementById("view");
  window.addEventListener("message", (event) => {
    if (event.source !== frame.contentWindow) return;
    const message = event.data;
    window.hostLog.push(message);
    const send = (m) => frame.contentWindow.postMessage(Object.assign({jsonrpc: "2.0"}, m), "*");
    if (message.method === "ui/initialize") {
      send({id: message.id, result: {
        protocolVersion: "2026-01-26", hostInfo: {name: "test-host", version: "1.0.0"}, hostCapabilities: {},
        hostContext: {theme, displayMode: "inline", toolInfo: {id: 7, tool: {name: toolName}}}}});
    } else if (message.method === "ui/notifications/initialized") {
      send({method: "ui/notifications/tool-input", params: {arguments: args}});
      send({method: "ui/notifications/tool-result", params: result});
    }
  });
  frame.srcdoc = html;
};
</script>
</body></html>"""


def call_tool(service: LiveService, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A real `tools/call` result from the running service, as a host would receive it."""
    headers = {**MCP_POST_HEADERS, "Authorization": f"Bearer {service.banner_token}"}
    with httpx2.Client(base_url=service.base_url, timeout=30) as http:
        response = http.post(
            "/mcp", json=jsonrpc("tools/call", {"name": name, "arguments": arguments}), headers=headers
        )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    assert not result.get("isError"), result
    return result


def host(browser: Browser, tool: str, result: dict[str, Any], theme: str = "light") -> Generator[tuple[Page, Frame]]:
    context = browser.new_context(viewport={"width": 800, "height": 700}, locale="en-US", timezone_id="UTC")
    page = context.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.set_content(HOST_PAGE)
        page.evaluate(
            "([html, tool, args, result, theme]) => startHost(html, tool, args, result, theme)",
            [mcp_app_html(tool), tool, SAMPLE_ARGUMENTS[tool], result, theme],
        )
        frame = page.frame_locator("#view")
        frame.locator("html[data-rendered=true]").wait_for(state="attached", timeout=TIMEOUT_MS)
        [view] = [f for f in page.frames if f != page.main_frame]
        yield page, view
        assert errors == []
        assert [url for url in requests if not url.startswith(("about:", "data:"))] == []
    finally:
        context.close()


@pytest.mark.parametrize("tool", list(SAMPLE_ARGUMENTS))
def test_the_view_renders_a_real_tool_result_with_the_dashboard_panels(
    browser: Browser, service: LiveService, tool: str
) -> None:
    result = call_tool(service, tool, SAMPLE_ARGUMENTS[tool])
    answer = result["structuredContent"]
    for page, view in host(browser, tool, result):
        assert view.locator("#panel-view").get_attribute("data-state") == "ready"
        assert view.locator("#sandbox-banner").is_visible()
        assert_panel_shows(view, "view", answer, {"data_source", "generated_at"})
        log: list[dict[str, Any]] = page.evaluate("window.hostLog")
        methods = [m.get("method") for m in log]
        assert methods[:2] == ["ui/initialize", "ui/notifications/initialized"]
        assert log[0]["params"]["protocolVersion"] == "2026-01-26"
        assert "ui/notifications/size-changed" in methods
        points = view.locator(".chart").first.get_attribute("data-points") if view.locator(".chart").count() else None
        match tool:
            case "kpi_mau":
                assert points == str(len(answer["months"]))
            case "kpi_conversion":
                assert points == str(len(answer["steps"]))
            case "kpi_refund_analysis":
                assert points == str(len({p["period_start"] for p in answer["periods"]}))
            case "kpi_user_journey":
                assert view.locator(".timeline > li").count() == len(answer["timeline"])
            case _:
                assert view.locator(".card").count() >= 3


def test_the_view_follows_the_hosts_dark_theme(browser: Browser, service: LiveService) -> None:
    result = call_tool(service, "kpi_mau", SAMPLE_ARGUMENTS["kpi_mau"])
    for _, view in host(browser, "kpi_mau", result, theme="dark"):
        assert view.locator("html").get_attribute("data-theme") == "dark"
        background = view.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(26, 31, 37)"  # --panel in the dark palette
