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


def median_startups(
    commands: Sequence[Sequence[str]], env: dict[str, str], cwd: Path, runs: int
) -> list[tuple[float, float | None]]:
    """(wall, CPU) medians of each command's start-up, runs interleaved so drift hits them alike."""
    for args in commands:  # warm the bytecode and file caches of each
        startup(args, env, cwd)
    samples: list[list[tuple[float, float | None]]] = [[] for _ in commands]
    for _ in range(runs):
        for args, taken in zip(commands, samples, strict=True):
            taken.append(startup(args, env, cwd))
    return [_medians(taken) for taken in samples]


def _medians(samples: list[tuple[float, float | None]]) -> tuple[float, float | None]:
    cpu = [c for _, c in samples if c is not None]
    return statistics.median(w for w, _ in samples), statistics.median(cpu) if len(cpu) == len(samples) else None


def startup_env(secret: str) -> dict[str, str]:
    """The environment `loop-kpi mcp` is started with: a signing secret and a token minted with it, no other
    KPI_ setting, and bytecode caching on, as in any installation (`PYTHONDONTWRITEBYTECODE`, set on some
    machines, would make every start compile the project's own modules again: about 40 ms here, none of which a
    desktop user pays after the first start; the SDK's modules were compiled by pip)."""
    from shared.auth.tokens import mint_token

    env = {name: value for name, value in os.environ.items() if not name.startswith("KPI_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env | {"KPI_JWT_SECRET": secret, "KPI_ACCESS_TOKEN": mint_token(secret, subject="bench", ttl=3600)}


def servers(python: str, root: Path) -> dict[str, list[str]]:
    """The servers timed: ours, the bare one-tool MCPServer, and the bare one with the start-up collection pause
    `loop-kpi mcp` makes (like for like: what is left is our own work)."""
    bare = [python, str(root / "bench" / "bare_mcp.py")]
    return {
        "loop-kpi mcp": [python, "-m", "api.cli", "mcp"],
        "bare MCPServer": bare,
        "bare, GC paused": [*bare, "--gc-pause"],
    }


if __name__ == "__main__":
    import sys

    root = Path(__file__).resolve().parent.parent
    timed = servers(sys.executable, root)
    results = median_startups(
        list(timed.values()),
        startup_env("bench-secret-0123456789abcdefghijklmnopqrstuvwxyz"),
        root,
        int(sys.argv[1]) if len(sys.argv) > 1 else 9,
    )
    (ours, ours_cpu), *_ = results
    for name, (wall, cpu) in zip(timed, results, strict=True):
        spent = f", CPU {cpu * 1000:.0f} ms" if cpu is not None else ""
        print(f"{name}: {wall * 1000:.0f} ms{spent}; loop-kpi mcp / this = {ours / wall:.2f}x")
