"""MCP over streamable HTTP, through the mounted app in-process (`httpx2.ASGITransport`, no socket): the same bearer
auth matrix as REST, RFC 9728 metadata, the exact `/mcp` endpoint and DNS-rebinding protection."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from api.main import create_app
from shared.auth.scopes import KPI_READ
from shared.operations import operation_ids
from shared.sandbox import SandboxState
from shared.settings import Settings
from tests.conftest import clock, token

from .support import (
    BASE_URL,
    MCP_POST_HEADERS,
    MCP_URL,
    RESULT_MODELS,
    SAMPLE_ARGUMENTS,
    challenge_params,
    expired_token,
    foreign_token,
    jsonrpc,
    tampered_token,
)

OPERATIONS = operation_ids()

PRM_PATH = "/.well-known/oauth-protected-resource"
PUBLIC_URL = "https://kpi.example.com"
ISSUER = "https://auth.example.com"
TOOLS_LIST = jsonrpc("tools/list")


@asynccontextmanager
async def running(settings: Settings) -> AsyncGenerator[FastAPI]:
    """`create_app(settings)` on the fixed clock with its lifespan (runtime and MCP session manager) running."""
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        yield app


def http_client(app: FastAPI, bearer: str | None = None, base_url: str = BASE_URL) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=base_url, headers=headers)


@pytest.fixture
async def app(settings: Settings, sandbox: SandboxState) -> AsyncIterator[FastAPI]:
    async with running(settings) as started:
        yield started


# ---------------------------------------------------------------------------------------------- the auth matrix


@pytest.mark.anyio
async def test_a_request_without_a_token_gets_401_saying_to_send_a_bearer_token(app: FastAPI) -> None:
    async with http_client(app) as http:
        response = await http.post("/mcp", json=TOOLS_LIST, headers=MCP_POST_HEADERS)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    challenge = challenge_params(response.headers["www-authenticate"])
    assert "resource_metadata" not in challenge  # no issuer: no OAuth flow to send a client into
    assert "error" not in challenge  # RFC 6750 §3.1: no error code when no credentials were sent
    assert response.json()["title"] == "Unauthorized"
    assert "Authorization: Bearer <token>" in response.json()["detail"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Bearer not-a-jwt", id="garbage"),
        pytest.param(f"Bearer {expired_token()}", id="expired"),
        pytest.param(f"Bearer {foreign_token()}", id="foreign-signature"),
        pytest.param(f"Bearer {tampered_token()}", id="tampered"),
        pytest.param("Basic dXNlcjpwYXNz", id="basic-scheme"),
        pytest.param(f"Bearer {token()} extra", id="malformed-header"),
    ],
)
async def test_a_bad_token_gets_401_invalid_token(app: FastAPI, authorization: str) -> None:
    async with http_client(app) as http:
        response = await http.post(
            "/mcp", json=TOOLS_LIST, headers={**MCP_POST_HEADERS, "Authorization": authorization}
        )
    assert response.status_code == 401
    challenge = challenge_params(response.headers["www-authenticate"])
    assert challenge["error"] == "invalid_token"
    assert "resource_metadata" not in challenge
    assert authorization.split()[-1] not in response.text


@pytest.mark.anyio
async def test_an_expired_token_is_named_as_expired(app: FastAPI) -> None:
    async with http_client(app, expired_token()) as http:
        response = await http.post("/mcp", json=TOOLS_LIST, headers=MCP_POST_HEADERS)
    assert response.status_code == 401
    assert challenge_params(response.headers["www-authenticate"])["error_description"] == "token expired"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("scopes", "roles"),
    [((), ()), (("kpi:write",), ()), ((), ("user",)), (("openid", "profile"), ("user", "analyst"))],
    ids=["nothing", "other-scope", "role-user", "unrelated"],
)
async def test_a_token_without_kpi_read_gets_403_insufficient_scope(
    app: FastAPI, sandbox: SandboxState, scopes: tuple[str, ...], roles: tuple[str, ...]
) -> None:
    async with http_client(app, token(scopes=scopes, roles=roles)) as http:
        for body in (TOOLS_LIST, jsonrpc("tools/call", {"name": "kpi_mau", "arguments": {}})):
            response = await http.post("/mcp", json=body, headers=MCP_POST_HEADERS)
            assert response.status_code == 403
            assert response.headers["content-type"] == "application/problem+json"
            challenge = challenge_params(response.headers["www-authenticate"])
            assert challenge["error"] == "insufficient_scope"
            assert challenge["scope"] == KPI_READ
            assert "resource_metadata" not in challenge
            assert response.json()["required_scope"] == KPI_READ
    assert sum(sandbox.counts.values()) == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("scopes", "roles"),
    [((KPI_READ,), ()), ((), ("admin",)), ((), ("exec",)), (("openid", KPI_READ), ("user",))],
    ids=["kpi-read", "admin", "exec", "kpi-read-among-others"],
)
async def test_a_kpi_reader_gets_200_on_raw_json_rpc(
    app: FastAPI, scopes: tuple[str, ...], roles: tuple[str, ...]
) -> None:
    async with http_client(app, token(scopes=scopes, roles=roles)) as http:
        response = await http.post("/mcp", json=TOOLS_LIST, headers=MCP_POST_HEADERS)
    assert response.status_code == 200
    assert [tool["name"] for tool in response.json()["result"]["tools"]] == list(OPERATIONS)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize(
    ("scopes", "roles"), [((KPI_READ,), ()), ((), ("admin",)), ((), ("exec",))], ids=["kpi-read", "admin", "exec"]
)
async def test_a_kpi_reader_lists_and_calls_tools_with_the_sdk_client(
    app: FastAPI, mode: str, scopes: tuple[str, ...], roles: tuple[str, ...]
) -> None:
    async with http_client(app, token(scopes=scopes, roles=roles)) as http:
        with anyio.fail_after(20):
            async with Client(streamable_http_client(MCP_URL, http_client=http), mode=mode) as client:
                names = [tool.name for tool in (await client.list_tools()).tools]
                result = await client.call_tool("kpi_mau", SAMPLE_ARGUMENTS["kpi_mau"])
    assert names == list(OPERATIONS)
    assert not result.is_error, result.content
    RESULT_MODELS["kpi_mau"].model_validate(result.structured_content)


@pytest.mark.anyio
@pytest.mark.parametrize("operation", OPERATIONS)
async def test_every_tool_answers_over_http(app: FastAPI, operation: str) -> None:
    async with http_client(app, token()) as http:
        with anyio.fail_after(20):
            async with Client(streamable_http_client(MCP_URL, http_client=http)) as client:
                result = await client.call_tool(operation, SAMPLE_ARGUMENTS[operation])
    assert not result.is_error, result.content
    RESULT_MODELS[operation].model_validate(result.structured_content)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_sdk_client_cannot_connect_without_kpi_read(app: FastAPI, mode: str) -> None:
    refused = pytest.RaisesGroup(pytest.RaisesExc(MCPError, match="error response"), flatten_subgroups=True)
    async with http_client(app, token(scopes=())) as http:
        with anyio.fail_after(20), refused:
            async with Client(streamable_http_client(MCP_URL, http_client=http), mode=mode) as client:
                await client.list_tools()


@pytest.mark.anyio
@pytest.mark.parametrize("with_header", [False, True], ids=["query-only", "query-and-header"])
async def test_a_token_in_the_query_string_is_rejected_with_401(app: FastAPI, with_header: bool) -> None:
    bearer = token()
    async with http_client(app, bearer if with_header else None) as http:
        response = await http.post("/mcp", params={"access_token": bearer}, json=TOOLS_LIST, headers=MCP_POST_HEADERS)
    assert response.status_code == 401
    challenge = challenge_params(response.headers["www-authenticate"])
    assert challenge["error"] == "invalid_token"
    assert bearer not in response.text


# ---------------------------------------------------------------------------------------------- the endpoint


@pytest.mark.anyio
async def test_post_to_exactly_mcp_is_served_without_a_redirect(app: FastAPI) -> None:
    async with http_client(app, token()) as http:
        response = await http.post("/mcp", json=TOOLS_LIST, headers=MCP_POST_HEADERS)
    assert response.status_code == 200
    assert not response.is_redirect and "location" not in response.headers
    assert response.headers["content-type"].startswith("application/json")


@pytest.mark.anyio
async def test_the_legacy_initialize_handshake_works_statelessly(app: FastAPI) -> None:
    initialize = jsonrpc(
        "initialize",
        {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "pytest", "version": "0"}},
    )
    async with http_client(app, token()) as http:
        response = await http.post("/mcp", json=initialize, headers=MCP_POST_HEADERS)
        listed = await http.post("/mcp", json=jsonrpc("tools/list", id=2), headers=MCP_POST_HEADERS)
    assert response.status_code == 200
    result = response.json()["result"]
    assert result["protocolVersion"] == "2025-11-25"
    assert result["serverInfo"]["name"] == "loop-kpi"
    assert "tools" in result["capabilities"]
    assert "mcp-session-id" not in response.headers  # stateless: every request stands alone
    assert listed.status_code == 200 and len(listed.json()["result"]["tools"]) == len(OPERATIONS)


@pytest.mark.anyio
async def test_a_post_that_does_not_accept_json_is_refused(app: FastAPI) -> None:
    async with http_client(app, token()) as http:
        response = await http.post("/mcp", json=TOOLS_LIST, headers={"Accept": "text/event-stream"})
    assert response.status_code == 406


@pytest.mark.anyio
async def test_an_unknown_tool_over_http_is_a_json_rpc_invalid_params_error(app: FastAPI) -> None:
    async with http_client(app, token()) as http:
        response = await http.post(
            "/mcp", json=jsonrpc("tools/call", {"name": "kpi_nope", "arguments": {}}), headers=MCP_POST_HEADERS
        )
    assert response.status_code == 200
    assert response.json()["error"]["code"] == INVALID_PARAMS


@pytest.mark.anyio
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_an_oversized_mcp_request_is_refused_with_413(app: FastAPI, chunked: bool) -> None:
    body = json.dumps(jsonrpc("tools/call", {"name": "kpi_user_journey", "arguments": {"user_id": "u" * 400_000}}))

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65_536):
            yield body[start : start + 65_536].encode()

    async with http_client(app, token()) as http:
        content = chunks() if chunked else body.encode()
        response = await http.post("/mcp", content=content, headers=MCP_POST_HEADERS)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


# ---------------------------------------------------------------------------------------------- RFC 9728 metadata


@pytest.mark.anyio
@pytest.mark.parametrize("path", [PRM_PATH, f"{PRM_PATH}/mcp"])
async def test_protected_resource_metadata_describes_the_mcp_endpoint(
    make_settings: Callable[..., Settings], sandbox: SandboxState, path: str
) -> None:
    settings = make_settings(KPI_PUBLIC_URL=PUBLIC_URL, KPI_JWT_ISSUER=ISSUER)
    async with running(settings) as app, http_client(app, base_url=PUBLIC_URL) as http:
        response = await http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document: dict[str, Any] = response.json()
    assert document["resource"] == f"{PUBLIC_URL}/mcp"
    assert document["scopes_supported"] == [KPI_READ]
    assert document["authorization_servers"] == [ISSUER]
    assert document["bearer_methods_supported"] == ["header"]


@pytest.mark.anyio
async def test_without_an_issuer_no_protected_resource_metadata_sends_clients_into_a_dead_end(app: FastAPI) -> None:
    async with http_client(app) as http:
        for path in (PRM_PATH, f"{PRM_PATH}/mcp"):
            assert (await http.get(path)).status_code == 404


@pytest.mark.anyio
async def test_challenges_point_at_the_public_url_and_the_public_host_is_allowed(
    make_settings: Callable[..., Settings], sandbox: SandboxState
) -> None:
    settings = make_settings(KPI_PUBLIC_URL=PUBLIC_URL, KPI_JWT_ISSUER=ISSUER)
    async with running(settings) as app, http_client(app, base_url=PUBLIC_URL) as http:
        refused = await http.post("/mcp", json=TOOLS_LIST, headers=MCP_POST_HEADERS)
        metadata_url = challenge_params(refused.headers["www-authenticate"])["resource_metadata"]
        assert metadata_url == f"{PUBLIC_URL}{PRM_PATH}"
        assert (await http.get(metadata_url)).json()["resource"] == f"{PUBLIC_URL}/mcp"
        accepted = await http.post(
            "/mcp",
            json=TOOLS_LIST,
            headers={
                **MCP_POST_HEADERS,
                "Authorization": f"Bearer {token(issuer=ISSUER, audience=PUBLIC_URL + '/mcp')}",
            },
        )
    assert refused.status_code == 401
    assert accepted.status_code == 200


# ---------------------------------------------------------------------------------------------- DNS rebinding


@pytest.mark.anyio
@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example:8000"])
async def test_a_foreign_host_header_is_rejected_by_dns_rebinding_protection(app: FastAPI, host: str) -> None:
    async with http_client(app, token()) as http:
        response = await http.post("/mcp", json=TOOLS_LIST, headers={**MCP_POST_HEADERS, "Host": host})
    assert response.status_code in (421, 403)
    assert "tools" not in response.text


@pytest.mark.anyio
async def test_a_foreign_origin_is_rejected_by_dns_rebinding_protection(app: FastAPI) -> None:
    async with http_client(app, token()) as http:
        response = await http.post(
            "/mcp", json=TOOLS_LIST, headers={**MCP_POST_HEADERS, "Origin": "http://evil.example"}
        )
    assert response.status_code == 403


@pytest.mark.anyio
@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:8000", "[::1]:8000", "localhost:61234"])
async def test_loopback_hosts_are_accepted(app: FastAPI, host: str) -> None:
    async with http_client(app, token()) as http:
        response = await http.post(
            "/mcp", json=TOOLS_LIST, headers={**MCP_POST_HEADERS, "Host": host, "Origin": f"http://{host}"}
        )
    assert response.status_code == 200


# ---------------------------------------------------------------------------------------------- the allowlist


@pytest.mark.anyio
async def test_the_allowlist_from_the_environment_governs_mcp_but_not_rest(
    make_settings: Callable[..., Settings], sandbox: SandboxState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_ALLOWED_OPERATIONS", " kpi_mau , kpi_overview ")
    settings = make_settings()
    refunds = SAMPLE_ARGUMENTS["kpi_refund_analysis"]
    async with running(settings) as app, http_client(app, token()) as http:
        listed = await http.post("/mcp", json=TOOLS_LIST, headers=MCP_POST_HEADERS)
        refused = await http.post(
            "/mcp",
            json=jsonrpc("tools/call", {"name": "kpi_refund_analysis", "arguments": refunds}),
            headers=MCP_POST_HEADERS,
        )
    # The REST routes read the lifespan state, which only a server (here TestClient) hands to requests.
    with TestClient(create_app(settings, clock=clock), base_url=BASE_URL) as client:
        rest = client.post("/api/kpi/refund-analysis", json=refunds, headers={"Authorization": f"Bearer {token()}"})
    assert [tool["name"] for tool in listed.json()["result"]["tools"]] == ["kpi_overview", "kpi_mau"]
    assert refused.json()["error"]["code"] == INVALID_PARAMS
    assert rest.status_code == 200


@pytest.mark.anyio
async def test_a_get_on_the_stateless_endpoint_is_405_not_a_stream_that_never_ends(app: FastAPI) -> None:
    with anyio.fail_after(10):
        async with http_client(app, token()) as http:
            response = await http.get("/mcp", headers={"Accept": "text/event-stream"})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
