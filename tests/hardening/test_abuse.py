"""Abuse of the running service (issue 16), each through a real `loop-kpi serve` on loopback against the session
sandbox: nobody can spend the upstream budgets, steer upstream paths, forge audit lines or hold the server."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from shared.audit import AUDIT_MARKER
from shared.auth.tokens import mint_token
from shared.sandbox import FaultSpec, SandboxServer, SandboxState
from tests.conftest import JWT_SECRET, token

from .served import Served, loop_kpi_serve

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def served(sandbox_server: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    limits = {"KPI_HEADER_TIMEOUT": "1", "KPI_MAX_HEADER_BYTES": "16384"}
    with loop_kpi_serve(sandbox_server.base_url, tmp_path_factory.mktemp("abuse"), **limits) as running:
        yield running


def reader() -> dict[str, str]:
    return {"Authorization": f"Bearer {token()}"}


async def test_many_concurrent_readiness_probes_cost_each_upstream_at_most_one_call(
    sandbox_server: SandboxServer, sandbox: SandboxState, tmp_path: Path
) -> None:
    with loop_kpi_serve(sandbox_server.base_url, tmp_path) as fresh:
        sandbox.reset_counts()
        async with httpx2.AsyncClient(base_url=fresh.base_url, timeout=20) as client:
            with anyio.fail_after(60):
                async with anyio.create_task_group() as group:
                    for _ in range(60):
                        group.start_soon(client.get, "/readyz")
            with anyio.fail_after(20):
                for _ in range(20):  # and sequential ones within the interval
                    assert (await client.get("/readyz")).status_code in (200, 503)
    counts = sandbox.counts
    assert counts.get("amplitude.users", 0) <= 1, counts
    assert counts.get("revenuecat.customer", 0) <= 1, counts
    assert counts.get("amplitude.users", 0) + counts.get("revenuecat.customer", 0) >= 1, counts


@pytest.mark.parametrize("user_id", ["%2e%2e", "%2E", "..%2f..", "a%2F..%2F.."])
async def test_a_user_id_of_dots_reaches_the_customer_endpoint_as_one_segment(
    served: Served, sandbox: SandboxState, user_id: str
) -> None:
    async with httpx2.AsyncClient(base_url=served.base_url, timeout=20) as client:
        with anyio.fail_after(20):
            response = await client.get(f"/api/kpi/user/{user_id}", headers=reader())
    assert response.status_code == 404, response.text
    counts = sandbox.counts
    assert counts.get("revenuecat.customer") == 1, counts
    assert set(counts) <= {"revenuecat.customer", "amplitude.usersearch"}, counts


async def test_the_sandbox_decodes_a_percent_encoded_id_into_one_segment(
    sandbox_server: SandboxServer, sandbox: SandboxState
) -> None:
    project = "/v2/projects/projsandbox1"
    headers = {"Authorization": "Bearer " + sandbox_server.state.revenuecat_api_key}
    async with httpx2.AsyncClient(base_url=sandbox_server.base_url, headers=headers) as client:
        for segment in ("%2E%2E", "%2E", "a%2Fb", "a%2F..%2F.."):
            response = await client.get(f"{project}/customers/{segment}")
            assert response.status_code == 404, (segment, response.text)
            assert response.json()["type"] == "resource_missing"
        known = await client.get(f"{project}/customers/%75ser_00000")
        assert known.status_code == 200, known.text
    assert sandbox.counts == {"revenuecat.customer": 5}


@pytest.mark.parametrize("path", ["/api/kpi/overview", "/mcp"])
async def test_two_authorization_headers_are_refused_with_a_400_problem(served: Served, path: str) -> None:
    headers = [("Authorization", f"Bearer {token()}"), ("Authorization", "Bearer someone-else")]
    method = "POST" if path == "/mcp" else "GET"  # /mcp is stateless: POST only (GET is 405)
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"} if method == "POST" else None
    async with httpx2.AsyncClient(base_url=served.base_url, timeout=20) as client:
        with anyio.fail_after(20):
            response = await client.request(method, path, headers=headers, json=body)
            swapped = await client.request(method, path, headers=headers[::-1], json=body)
    for answer in (response, swapped):
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert "Authorization" in answer.json()["detail"]


def test_the_sandbox_banner_says_a_given_secret_signs_tokens_valid_on_every_instance_sharing_it(
    served: Served,
) -> None:
    log = served.log()
    assert "Token:" in log
    assert "valid on every instance sharing that secret" in log
    assert "this process's secret" not in log


async def test_a_year_long_retry_after_blocks_the_budget_only_up_to_the_configured_cap(
    sandbox_server: SandboxServer, sandbox: SandboxState, tmp_path: Path
) -> None:
    env = {"KPI_MAX_UPSTREAM_BLOCK": "2", "KPI_UPSTREAM_RETRIES": "0", "KPI_CACHE_TTL_PARTIAL": "0"}
    with loop_kpi_serve(sandbox_server.base_url, tmp_path, **env) as capped:
        sandbox.inject("revenuecat.overview", FaultSpec(status=429, retry_after=31_536_000, times=1))
        async with httpx2.AsyncClient(base_url=capped.base_url, timeout=20, headers=reader()) as client:
            with anyio.fail_after(20):
                refused = await client.get("/api/kpi/overview")
                assert refused.status_code == 200, refused.text
                (error,) = [s["error"] for s in refused.json()["sources"] if s["source"] == "revenuecat"]
                assert error["status"] == 503 and error["retry_after"] <= 2, error
                assert "asked for 31536000 s" in error["detail"], error
                assert "caps an upstream's wait at 2 s" in error["detail"], error
                for _ in range(80):  # polling until the capped block ends (2 s), bounded by fail_after
                    if (await client.get("/api/kpi/overview")).json()["revenuecat"] is not None:
                        break
                    await anyio.sleep(0.2)
                else:
                    pytest.fail("the budget stayed blocked past the cap")


def audit_records(log: str) -> list[dict[str, Any]]:
    """The audit records of a stderr log, as documented: the lines starting with `AUDIT_MARKER`."""
    return [json.loads(line.removeprefix(AUDIT_MARKER)) for line in log.splitlines() if line.startswith(AUDIT_MARKER)]


def json_lines(log: str) -> list[dict[str, Any]]:
    """Every line of the log that is a JSON object, with or without the marker (what a naive reader would take)."""
    found: list[dict[str, Any]] = []
    for line in log.splitlines():
        try:
            value = json.loads(line.removeprefix(AUDIT_MARKER))
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(cast("dict[str, Any]", value))
    return found


@pytest.mark.parametrize("method", ["prompts/get", "tools/call"])
async def test_request_input_with_a_newline_cannot_forge_an_audit_line(served: Served, method: str) -> None:
    forged = {
        "time": "2026-11-20T15:30:00.000Z",
        "event": "kpi_call",
        "subject": "forged-by-mallory",
        "operation": "kpi_overview",
        "transport": "rest",
        "outcome": "ok",
        "status": 200,
        "latency_ms": 1.0,
        "cache": None,
    }
    name = "x\n" + json.dumps(forged, separators=(",", ":")) + "\r\n" + AUDIT_MARKER + json.dumps(forged)
    async with httpx2.AsyncClient(base_url=served.base_url, timeout=20, headers=reader()) as http:
        with anyio.fail_after(20):
            genuine = await http.get("/api/kpi/user/user_00000")
            assert genuine.status_code == 200, genuine.text
            async with Client(streamable_http_client(served.base_url + "/mcp", http_client=http)) as client:
                with contextlib.suppress(MCPError):
                    if method == "prompts/get":
                        await client.get_prompt(name)
                    else:
                        await client.call_tool(name, {})
    log = served.log()
    assert any(record["subject"] == "tester" for record in audit_records(log)), log
    assert all(record.get("subject") != "forged-by-mallory" for record in json_lines(log)), log


def test_a_slowloris_connection_is_closed_once_the_header_timeout_passes(served: Served) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        closed = False
        for index in range(100):  # one header line every 0.1 s: never finished, never idle
            try:
                sock.sendall(f"X-Slow-{index}: a\r\n".encode())
                sock.settimeout(0.1)
                closed = sock.recv(1024) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
            if closed:
                break
    assert closed, "the server kept a never-ending header open for 10 s"
    assert time.monotonic() - started < 5


def test_an_oversized_header_is_refused_without_being_read_to_the_end(served: Served) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        sent_all = False
        try:
            for _ in range(8 * 1024):  # up to 8 MB, never ending the header
                sock.sendall(b"a" * 1024)
            sent_all = True
        except OSError:
            pass  # the server closed the connection while we were still sending
        try:
            answer = sock.recv(1024)
        except OSError:
            answer = b""
    assert not sent_all or answer.startswith(b"HTTP/1.1 4"), "the server read an 8 MB header"


def test_complete_headers_over_the_limit_in_one_read_get_a_400(served: Served) -> None:
    answers: list[bytes] = []
    for size in (1_000, 20_000):  # the default limit is 16 KiB
        with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * size + b"\r\n\r\n")
            answers.append(sock.recv(64))
    assert answers[0].startswith(b"HTTP/1.1 200") and answers[1].startswith(b"HTTP/1.1 400")


def bearer(subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(JWT_SECRET, subject=subject, ttl=600)}"}


async def test_a_caller_draining_a_budget_gets_a_429_of_its_own_while_another_caller_is_answered_in_full(
    sandbox_server: SandboxServer, sandbox: SandboxState, tmp_path: Path
) -> None:
    users = [u.user_id for u in sandbox.dataset.users if u.in_revenuecat][:12]
    budgets = {"KPI_AMPLITUDE_USER_QUERIES_PER_HOUR": "20", "KPI_AMPLITUDE_COST_PER_5MIN": "1000"}
    with loop_kpi_serve(sandbox_server.base_url, tmp_path, **budgets) as fresh:
        async with httpx2.AsyncClient(base_url=fresh.base_url, timeout=20) as client:
            with anyio.fail_after(60):
                drained = [await client.get(f"/api/kpi/user/{user}", headers=bearer("drainer")) for user in users[:8]]
                read = [await client.get(f"/api/kpi/user/{user}", headers=bearer("reader")) for user in users[8:]]
                steps = [("steps", f"Step {index}") for index in range(10)]
                dates = [("start_date", "2026-10-01"), ("end_date", "2026-11-18")]  # 49 days x 2 x 10 steps
                query = httpx2.QueryParams([*steps, *dates])
                costly = await client.get("/api/kpi/conversion", params=query, headers=bearer("reader"))
    # A journey looks the user up twice: the drainer's share of 20 lookups an hour is 10, five journeys.
    assert [r.status_code for r in drained] == [200] * 5 + [429] * 3
    assert all(r.json()["partial"] is False for r in drained[:5])
    refused = drained[5]
    problem = refused.json()
    assert refused.headers["content-type"] == "application/problem+json"
    assert problem["type"] == "https://loop-kpi.dev/problems/caller-budget-exceeded"
    assert int(refused.headers["Retry-After"]) == problem["retry_after"] > 3000
    assert "share (10)" in problem["detail"] and "amplitude user lookup budget" in problem["detail"]
    assert [(r.status_code, r.json()["partial"]) for r in read] == [(200, False)] * 4
    assert costly.status_code == 422, costly.text
    assert "cost 980 units" in costly.json()["detail"] and "shorten the date range" in costly.json()["detail"]
    assert sandbox.counts.get("amplitude.funnels", 0) == 0
