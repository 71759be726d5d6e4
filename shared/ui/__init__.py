"""The KPI views both faces show: the dashboard's static files, and the self-contained MCP App documents built
from the same files (no web framework here: the host serves the files, the MCP server embeds them)."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent
MCP_APP_PARTS: tuple[str, ...] = ("uPlot.min.css", "app.css", "uPlot.iife.min.js", "kpi-render.js", "mcp-app.js")


def mcp_app_html(tool: str, directory: Path = STATIC_DIR) -> str:
    """The self-contained MCP App document for one tool: the dashboard's CSS and views inlined (hosts render it
    in a sandboxed iframe with no origin to load from), plus the MCP Apps postMessage bridge."""
    page = (directory / "mcp-app.html").read_text(encoding="utf-8").replace("{{tool}}", tool)
    for name in MCP_APP_PARTS:
        text = (directory / name).read_text(encoding="utf-8")
        # Nothing inlined may close its <script>/<style> element early.
        if "</script" in text.lower() or "</style" in text.lower():
            raise ValueError(f"{name} cannot be inlined: it contains a closing tag")
        page = page.replace("{{" + name + "}}", text)
    if "{{" in page:
        raise ValueError("mcp-app.html names a part that is not in MCP_APP_PARTS")
    return page
