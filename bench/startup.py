"""Time from starting an MCP stdio server to its answer to `initialize` (what a host waits for at launch)."""

from __future__ import annotations

import json
import os
import selectors
import statistics
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "0"},
    },
}


def time_to_initialize(args: Sequence[str], env: dict[str, str], cwd: Path, timeout: float = 30) -> float:
    """Seconds from spawning `args` to the first line it writes back to an `initialize` sent at once."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(args), env=env, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(json.dumps(INITIALIZE).encode() + b"\n")
        proc.stdin.flush()
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                raise RuntimeError(f"{args[-1]}: no answer to initialize within {timeout} s")
        line = proc.stdout.readline()
        elapsed = time.perf_counter() - started
        answer = json.loads(line)
        if "result" not in answer:
            raise RuntimeError(f"{args[-1]}: initialize failed: {line[:300]!r}")
        return elapsed
    finally:
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def median_startup(
    ours: Sequence[str], bare: Sequence[str], env: dict[str, str], cwd: Path, runs: int
) -> tuple[float, float]:
    """Median seconds to `initialize` of `ours` and `bare`, runs interleaved so drift hits both alike."""
    time_to_initialize(ours, env, cwd)  # warm the bytecode and file caches of both
    time_to_initialize(bare, env, cwd)
    mine: list[float] = []
    base: list[float] = []
    for _ in range(runs):
        mine.append(time_to_initialize(ours, env, cwd))
        base.append(time_to_initialize(bare, env, cwd))
    return statistics.median(mine), statistics.median(base)


if __name__ == "__main__":
    import sys

    from shared.auth.tokens import mint_token

    root = Path(__file__).resolve().parent.parent
    secret = "bench-secret-0123456789abcdefghijklmnopqrstuvwxyz"
    environ = {
        **os.environ,
        "KPI_JWT_SECRET": secret,
        "KPI_ACCESS_TOKEN": mint_token(secret, subject="bench", ttl=3600),
    }
    loop_kpi = [sys.executable, "-m", "api.cli", "mcp"]
    ours_s, bare_s = median_startup(
        loop_kpi,
        [sys.executable, str(root / "bench" / "bare_mcp.py")],
        environ,
        root,
        int(sys.argv[1]) if len(sys.argv) > 1 else 9,
    )
    print(f"loop-kpi mcp {ours_s * 1000:.0f} ms, bare MCPServer {bare_s * 1000:.0f} ms, {ours_s / bare_s:.2f}x")
