"""The baseline of the stdio start-up rows: a bare `MCPServer` with one tool, over stdio, on the same SDK.

With `--gc-pause`, the SDK is imported with the cyclic collector paused and its objects then frozen, as
`loop-kpi mcp` does (`api/cli.py`), for the like-for-like row.
"""

from __future__ import annotations

import gc
import sys

if "--gc-pause" in sys.argv:
    gc.disable()
from mcp.server.mcpserver import MCPServer  # after the pause, when asked for

if "--gc-pause" in sys.argv:
    gc.freeze()
    gc.enable()

mcp = MCPServer("bare", log_level="WARNING")


@mcp.tool()
def ping() -> str:
    """Answer pong."""
    return "pong"


if __name__ == "__main__":
    mcp.run()
