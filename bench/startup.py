"""Time from starting an MCP stdio server to its answer to `initialize` (what a host waits for at launch).

Run alone (`python -m bench.startup [runs]`), it also prints the CPU time each server had used when it answered
(Linux: summed over its threads from /proc), which drifts far less than wall time on a shared, loaded machine.
"""

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


def cpu_seconds(pid: int) -> float | None:
    """CPU time used so far by every thread of a running process (Linux), or None where /proc cannot say."""
    total = 0
    try:
        for thread in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{thread}/schedstat") as stat:
                total += int(stat.read().split()[0])  # nanoseconds on a CPU
    except (OSError, ValueError, IndexError):
        return None
    return total / 1e9


def time_to_initialize(args: Sequence[str], env: dict[str, str], cwd: Path, timeout: float = 30) -> float:
    """Seconds from spawning `args` to the first line it writes back to an `initialize` sent at once."""
    return startup(args, env, cwd, timeout)[0]


def startup(args: Sequence[str], env: dict[str, str], cwd: Path, timeout: float = 30) -> tuple[float, float | None]:
    """(wall seconds, CPU seconds of the server) from spawning `args` to its answer to an `initialize` sent at once."""
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
        cpu = cpu_seconds(proc.pid)
        answer = json.loads(line)
        if "result" not in answer:
            raise RuntimeError(f"{args[-1]}: initialize failed: {line[:300]!r}")
        return elapsed, cpu
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
    (mine, _), (base, _) = median_startups(ours, bare, env, cwd, runs)
    return mine, base


def median_startups(
    ours: Sequence[str], bare: Sequence[str], env: dict[str, str], cwd: Path, runs: int
) -> tuple[tuple[float, float | None], tuple[float, float | None]]:
    """((wall, CPU) of `ours`, (wall, CPU) of `bare`): medians, runs interleaved so drift hits both alike."""
    startup(ours, env, cwd)  # warm the bytecode and file caches of both
    startup(bare, env, cwd)
    mine: list[tuple[float, float | None]] = []
    base: list[tuple[float, float | None]] = []
    for _ in range(runs):
        mine.append(startup(ours, env, cwd))
        base.append(startup(bare, env, cwd))
    return _medians(mine), _medians(base)


def _medians(samples: list[tuple[float, float | None]]) -> tuple[float, float | None]:
    cpu = [c for _, c in samples if c is not None]
    return statistics.median(w for w, _ in samples), statistics.median(cpu) if len(cpu) == len(samples) else None


if __name__ == "__main__":
    import sys

    from shared.auth.tokens import mint_token

    root = Path(__file__).resolve().parent.parent
    secret = "bench-secret-0123456789abcdefghijklmnopqrstuvwxyz"
    environ = {name: value for name, value in os.environ.items() if not name.startswith("KPI_")}
    environ |= {"KPI_JWT_SECRET": secret, "KPI_ACCESS_TOKEN": mint_token(secret, subject="bench", ttl=3600)}
    loop_kpi = [sys.executable, "-m", "api.cli", "mcp"]
    (ours_s, ours_cpu), (bare_s, bare_cpu) = median_startups(
        loop_kpi,
        [sys.executable, str(root / "bench" / "bare_mcp.py")],
        environ,
        root,
        int(sys.argv[1]) if len(sys.argv) > 1 else 9,
    )
    print(f"loop-kpi mcp {ours_s * 1000:.0f} ms, bare MCPServer {bare_s * 1000:.0f} ms, {ours_s / bare_s:.2f}x")
    if ours_cpu is not None and bare_cpu is not None:
        print(
            f"CPU to initialize: loop-kpi mcp {ours_cpu * 1000:.0f} ms, bare MCPServer {bare_cpu * 1000:.0f} ms, "
            f"{ours_cpu / bare_cpu:.2f}x"
        )
