"""`loop-kpi mcp` as a subprocess speaking MCP on stdin/stdout, pointed at the session sandbox: tools, the
credential from `KPI_ACCESS_TOKEN`, failed starts, and a stdout that carries nothing but JSON-RPC."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp import Client, StdioServerParameters

from server.stdio import identify
from shared.auth.scopes import KPI_READ
from shared.errors import AuthenticationError
from shared.operations import operation_ids
from shared.sandbox import FaultSpec, SandboxServer, SandboxState
from shared.settings import Settings
from tests.conftest import JWT_SECRET, token

from .support import RESULT_MODELS, SAMPLE_ARGUMENTS, expired_token, foreign_token, jsonrpc, only_text

OPERATIONS = operation_ids()

COMMAND = [sys.executable, "-m", "api.cli", "mcp"]
START_TIMEOUT = 30


@pytest.fixture
def stdio_env(sandbox_server: SandboxServer, sandbox: SandboxState) -> Callable[..., dict[str, str]]:
    """The subprocess environment: ours minus every setting, pointed at the session sandbox, plus `extra`."""

    def make(**extra: str) -> dict[str, str]:
        inherited = {name: value for name, value in os.environ.items() if name not in Settings.model_fields}
        return {
            **inherited,
            "KPI_SANDBOX_URL": sandbox_server.base_url,
            "KPI_JWT_SECRET": JWT_SECRET,
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    return make


def server_parameters(env: Mapping[str, str], cwd: Path) -> StdioServerParameters:
    """`loop-kpi mcp --sandbox`; cwd is a scratch directory so no `.env` is read (the venv makes the project importable)."""
    return StdioServerParameters(command=COMMAND[0], args=[*COMMAND[1:], "--sandbox"], env=dict(env), cwd=cwd)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_sandbox_stdio_server_lists_the_tools_and_answers_kpi_calls(
    stdio_env: Callable[..., dict[str, str]], tmp_path: Path, mode: str
) -> None:
    parameters = server_parameters(stdio_env(KPI_SANDBOX="1"), tmp_path)
    with anyio.fail_after(START_TIMEOUT):
        async with Client(parameters, mode=mode) as client:
            names = [tool.name for tool in (await client.list_tools()).tools]
            mau = await client.call_tool("kpi_mau", {})
            journey = await client.call_tool("kpi_user_journey", SAMPLE_ARGUMENTS["kpi_user_journey"])
    assert names == list(OPERATIONS)
    for name, result in (("kpi_mau", mau), ("kpi_user_journey", journey)):
        assert not result.is_error, result.content
        model = RESULT_MODELS[name].model_validate(result.structured_content)
        assert model.model_dump()["data_source"] == "sandbox"


@pytest.mark.anyio
@pytest.mark.parametrize(("scopes", "roles"), [((KPI_READ,), ()), ((), ("exec",))], ids=["kpi-read", "exec"])
async def test_a_valid_access_token_with_kpi_read_serves_the_tools(
    stdio_env: Callable[..., dict[str, str]], tmp_path: Path, scopes: tuple[str, ...], roles: tuple[str, ...]
) -> None:
    env = stdio_env(KPI_SANDBOX="1", KPI_ACCESS_TOKEN=token(scopes=scopes, roles=roles))
    with anyio.fail_after(START_TIMEOUT):
        async with Client(server_parameters(env, tmp_path)) as client:
            result = await client.call_tool("kpi_refund_analysis", SAMPLE_ARGUMENTS["kpi_refund_analysis"])
    assert not result.is_error, result.content
    RESULT_MODELS["kpi_refund_analysis"].model_validate(result.structured_content)


@pytest.mark.anyio
async def test_a_valid_access_token_without_kpi_read_starts_but_tool_calls_name_the_scope(
    stdio_env: Callable[..., dict[str, str]], tmp_path: Path, sandbox: SandboxState
) -> None:
    env = stdio_env(KPI_SANDBOX="1", KPI_ACCESS_TOKEN=token(scopes=("kpi:write",), roles=("user",)))
    with anyio.fail_after(START_TIMEOUT):
        async with Client(server_parameters(env, tmp_path)) as client:
            names = [tool.name for tool in (await client.list_tools()).tools]
            result = await client.call_tool("kpi_mau", {})
    assert names == list(OPERATIONS)
    assert result.is_error
    assert KPI_READ in only_text(result.content)
    assert sum(sandbox.counts.values()) == 0


@pytest.mark.anyio
async def test_the_allowlist_from_the_environment_governs_the_stdio_tools(
    stdio_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    env = stdio_env(KPI_SANDBOX="1", MCP_ALLOWED_OPERATIONS="kpi_user_journey,kpi_mau")
    with anyio.fail_after(START_TIMEOUT):
        async with Client(server_parameters(env, tmp_path)) as client:
            names = [tool.name for tool in (await client.list_tools()).tools]
    assert names == ["kpi_mau", "kpi_user_journey"]


BAD_STARTS: dict[str, tuple[dict[str, str], bool, str]] = {
    "garbage-token": ({"KPI_ACCESS_TOKEN": "not-a-jwt"}, True, "KPI_ACCESS_TOKEN"),
    "expired-token": ({"KPI_ACCESS_TOKEN": expired_token()}, True, "expired"),
    "foreign-token": ({"KPI_ACCESS_TOKEN": foreign_token()}, True, "signature"),
    "expired-token-live": (
        {"KPI_ACCESS_TOKEN": expired_token()},
        False,
        "token expired; mint a new one: loop-kpi token --sub",
    ),
    "no-token-without-sandbox": ({}, False, "KPI_ACCESS_TOKEN is not set; it must hold a bearer token with kpi:read"),
    "unknown-allowlisted-operation": ({"MCP_ALLOWED_OPERATIONS": "kpi_nope"}, True, "kpi_nope"),
}


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def bad_starts(sandbox_server: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every bad start at once (each costs a Python start-up), with a client's `initialize` waiting on stdin."""
    initialize = jsonrpc(
        "initialize",
        {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "pytest", "version": "0"}},
    )
    inherited = {name: value for name, value in os.environ.items() if name not in Settings.model_fields}
    cwd = tmp_path_factory.mktemp("bad-starts")
    processes: dict[str, subprocess.Popen[str]] = {}
    for case, (extra, sandbox, _) in BAD_STARTS.items():
        env = {**inherited, "KPI_SANDBOX_URL": sandbox_server.base_url, "KPI_JWT_SECRET": JWT_SECRET, **extra}
        if sandbox:
            env["KPI_SANDBOX"] = "1"
        processes[case] = subprocess.Popen(
            [*COMMAND, "--sandbox"] if sandbox else COMMAND,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
        )
    outcomes: dict[str, Outcome] = {}
    try:
        for case, process in processes.items():
            stdout, stderr = process.communicate(json.dumps(initialize) + "\n", timeout=30)
            outcomes[case] = Outcome(process.returncode, stdout, stderr)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return outcomes


@pytest.mark.parametrize("case", BAD_STARTS)
def test_a_bad_start_exits_nonzero_with_one_line_on_stderr_and_nothing_on_stdout(
    bad_starts: dict[str, Outcome], case: str
) -> None:
    extra, _, mentions = BAD_STARTS[case]
    outcome = bad_starts[case]
    assert outcome.returncode != 0
    assert outcome.stdout == ""
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1, outcome.stderr
    assert lines[0].startswith("loop-kpi mcp: ")
    assert mentions in lines[0]
    secret = extra.get("KPI_ACCESS_TOKEN")
    assert not secret or secret not in outcome.stderr
    assert JWT_SECRET not in outcome.stderr


@pytest.mark.anyio
async def test_a_token_without_a_verifier_names_both_ways_to_configure_one() -> None:
    settings = Settings.model_validate({"KPI_ACCESS_TOKEN": token()})

    with pytest.raises(AuthenticationError) as refused:
        await identify(settings)

    assert "set KPI_JWT_SECRET" in refused.value.detail and "or KPI_JWKS_URL" in refused.value.detail
    assert "KPI_JWT_ISSUER" in refused.value.detail


@pytest.mark.anyio
async def test_an_issuer_alone_is_a_verifier_for_the_stdio_token() -> None:
    # Keys come from the issuer's discovery: the token is verified, not refused as unverifiable. (An HS256 token
    # with no secret is refused by the verifier itself, before any key is fetched: nothing leaves the machine.)
    settings = Settings.model_validate({"KPI_ACCESS_TOKEN": token(), "KPI_JWT_ISSUER": "https://sso.example.com"})

    with pytest.raises(AuthenticationError) as refused:
        await identify(settings)

    assert refused.value.detail == "no verification key configured"


async def read_message(stdout: BufferedByteReceiveStream) -> dict[str, Any]:
    line = await stdout.receive_until(b"\n", 1 << 22)
    message: dict[str, Any] = json.loads(line)
    return message


async def collect_responses(process: Process, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Send the requests as JSON lines, read stdout line by line until every request id has an answer."""
    assert process.stdin is not None and process.stdout is not None
    stdout = BufferedByteReceiveStream(process.stdout)
    await process.stdin.send(b"".join(json.dumps(request).encode() + b"\n" for request in requests))
    waiting = {request["id"] for request in requests if "id" in request}
    messages: list[dict[str, Any]] = []
    while waiting:
        message = await read_message(stdout)
        messages.append(message)
        waiting.discard(message.get("id"))
    await process.stdin.aclose()  # EOF: the server exits; whatever else it writes must be protocol too
    rest = bytes(stdout.buffer)
    try:
        while True:
            rest += await stdout.receive()
    except anyio.EndOfStream:
        pass
    messages.extend(json.loads(line) for line in rest.splitlines())
    return messages


@pytest.mark.anyio
async def test_stdout_carries_nothing_but_json_rpc_even_when_tools_fail(
    stdio_env: Callable[..., dict[str, str]], tmp_path: Path, sandbox: SandboxState
) -> None:
    sandbox.inject("revenuecat.chart", FaultSpec(status=500))
    requests = [
        jsonrpc(
            "initialize",
            {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "pytest", "version": "0"}},
            id=1,
        ),
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        jsonrpc("tools/list", id=2),
        jsonrpc("tools/call", {"name": "kpi_mau", "arguments": {}}, id=3),
        jsonrpc("tools/call", {"name": "kpi_user_journey", "arguments": {"user_id": "no_such_user_999"}}, id=4),
        jsonrpc(
            "tools/call", {"name": "kpi_refund_analysis", "arguments": SAMPLE_ARGUMENTS["kpi_refund_analysis"]}, id=5
        ),
        jsonrpc("tools/call", {"name": "kpi_nope", "arguments": {}}, id=6),
        jsonrpc("tools/call", {"name": "kpi_mau", "arguments": {"start_month": "not a date"}}, id=7),
    ]
    env = stdio_env(KPI_SANDBOX="1")
    with anyio.fail_after(START_TIMEOUT):
        async with await anyio.open_process(
            [*COMMAND, "--sandbox"], env=env, cwd=tmp_path, stderr=subprocess.DEVNULL
        ) as process:
            messages = await collect_responses(process, requests)
            assert await process.wait() == 0

    for message in messages:
        assert message["jsonrpc"] == "2.0"
        if "id" in message:
            assert ("result" in message) != ("error" in message), message
        else:
            assert isinstance(message["method"], str), message  # a notification
    answers = {message["id"]: message for message in messages if "id" in message}
    assert sorted(answers) == [1, 2, 3, 4, 5, 6, 7]
    assert answers[2]["result"]["tools"] and not answers[3]["result"]["isError"]
    assert answers[4]["result"]["isError"] and "Not found" in answers[4]["result"]["content"][0]["text"]
    assert answers[5]["result"]["isError"] and "Upstream failure" in answers[5]["result"]["content"][0]["text"]
    assert answers[6]["error"]["code"] == -32602
    assert answers[7]["result"]["isError"]


def test_the_stdio_entry_point_imports_no_web_stack_redis_or_sandbox() -> None:
    # What `loop-kpi mcp` imports before it serves (cli, the stdio server, its tools): a desktop host starts every
    # configured server at launch and waits for `initialize`.
    heavy = ("fastapi", "redis", "shared.shared_state", "shared.sandbox", "api.main", "api.mcp")
    code = (
        "import sys, api.cli, server.stdio; from server.tools import build_mcp; build_mcp(lambda: None); "
        f"print(','.join(name for name in {heavy!r} if name in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert loaded.stdout.strip() == ""
