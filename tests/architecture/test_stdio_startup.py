"""What `loop-kpi mcp` (stdio) imports before it has answered `initialize` and `tools/list`, read from the real
process (`python -X importtime` logs every module as it is imported), beside a bare one-tool `MCPServer` on the same
SDK: no web framework or server beyond what the SDK itself imports, no Redis client, no sandbox, and none of the
upstream runtime (clients, service, cache), which the first tool call opens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from shared.auth.tokens import mint_token
from shared.settings import Settings
from tests.conftest import JWT_SECRET

ROOT = Path(__file__).resolve().parents[2]
BARE = ROOT / "bench" / "bare_mcp.py"
TIMEOUT = 60

NEVER = ("fastapi", "redis", "shared.sandbox", "shared.shared_state", "api.main", "api.mcp")
"""Not imported at all before the first tool call."""
WEB_STACK = ("starlette", "uvicorn", "sse_starlette", "httptools", "uvloop", "websockets", "watchfiles")
"""Imported by the SDK's `MCPServer` itself (for its HTTP transports), so allowed only as far as the bare server."""
ON_FIRST_CALL = ("shared.runtime", "shared.services.kpi", "shared.services.cached", "shared.clients", "shared.budget")
"""The upstream runtime: opened by the first request that needs it."""

REQUESTS = [
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    },
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
]


def imported_by_first_answers(command: Sequence[str], env: dict[str, str], cwd: Path) -> set[str]:
    """The modules `command` had imported when it answered `initialize` and `tools/list` (then it is killed)."""
    process = subprocess.Popen(
        [sys.executable, "-X", "importtime", *command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(b"".join(json.dumps(request).encode() + b"\n" for request in REQUESTS))
        process.stdin.flush()
        answered = {json.loads(process.stdout.readline()).get("id") for _ in range(2)}
        assert answered == {1, 2}
    finally:
        process.kill()
    _, log = process.communicate(timeout=TIMEOUT)
    modules: set[str] = set()
    for line in log.decode().splitlines():
        if line.startswith("import time:") and "|" in line:
            modules.add(line.rsplit("|", 1)[1].strip())
    assert "mcp" in modules, log.decode()[-2000:]
    return modules


def within(module: str, packages: Sequence[str]) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> tuple[set[str], set[str]]:
    """(ours, bare): `loop-kpi mcp --sandbox` with a verified token (the sandbox would start on the first call)."""
    cwd = tmp_path_factory.mktemp("stdio-startup")  # no `.env` here
    env = {name: value for name, value in os.environ.items() if name not in Settings.model_fields}
    env |= {"KPI_JWT_SECRET": JWT_SECRET, "KPI_ACCESS_TOKEN": mint_token(JWT_SECRET, subject="arch", ttl=600)}
    ours = imported_by_first_answers(["-m", "api.cli", "mcp", "--sandbox"], env, cwd)
    bare = imported_by_first_answers([str(BARE)], env, cwd)
    return ours, bare


def test_the_stdio_server_answers_initialize_without_the_web_stack_redis_or_the_sandbox(
    started: tuple[set[str], set[str]],
) -> None:
    ours, bare = started
    assert sorted(module for module in ours if within(module, NEVER)) == []
    assert sorted(module for module in ours - bare if within(module, WEB_STACK)) == []


def test_the_upstream_runtime_waits_for_the_first_request_that_needs_it(started: tuple[set[str], set[str]]) -> None:
    ours, _ = started
    assert "server.stdio" in ours and "shared.operations" in ours  # the check reads the right process
    assert sorted(module for module in ours if within(module, ON_FIRST_CALL)) == []


def test_the_check_sees_what_the_bare_server_imports(started: tuple[set[str], set[str]]) -> None:
    _, bare = started
    assert any(within(module, WEB_STACK) for module in bare)  # else the allowance above would be vacuous
    assert not any(within(module, ("shared", "server", "api")) for module in bare)


def test_without_a_token_to_verify_the_jwt_library_is_not_imported(tmp_path: Path) -> None:
    # mcp.json's `loop-kpi mcp --sandbox` with no KPI_ACCESS_TOKEN: a local caller, nothing to verify.
    env = {name: value for name, value in os.environ.items() if name not in Settings.model_fields}
    ours = imported_by_first_answers(["-m", "api.cli", "mcp", "--sandbox"], env, tmp_path)
    assert "server.stdio" in ours
    assert sorted(module for module in ours if within(module, ("jwt", "cryptography.x509"))) == []


def test_with_a_token_the_jwt_library_verifies_it_at_start_up(started: tuple[set[str], set[str]]) -> None:
    ours, _ = started
    assert "jwt" in ours and "shared.auth.tokens" in ours
