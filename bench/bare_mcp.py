"""The baseline of the stdio start-up row: a bare `MCPServer` with one tool, over stdio, on the same SDK."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

mcp = MCPServer("bare", log_level="WARNING")


@mcp.tool()
def ping() -> str:
    """Answer pong."""
    return "pong"


if __name__ == "__main__":
    mcp.run()
