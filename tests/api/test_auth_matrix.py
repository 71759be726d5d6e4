"""Every KPI route against every kind of credential: exact status, exact challenge shape, problem bodies, no leaks.

The app under test requires an issuer and an audience, so "wrong issuer" and "wrong audience" are real rejections;
every other token carries the right ones.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from shared.auth.tokens import mint_token
from shared.sandbox import (
    SANDBOX_AMPLITUDE_API_KEY,
    SANDBOX_AMPLITUDE_SECRET_KEY,
    SANDBOX_REVENUECAT_API_KEY,
    SandboxServer,
)
from tests.conftest import JWT_SECRET, token

from .conftest import (
    PROBLEM_TYPE,
    ROUTE_IDS,
    ROUTES,
    Route,
    assert_problem,
    bearer,
    build_settings,
    call,
    parse_challenge,
    serve,
)

ISSUER = "https://auth.loop-kpi.test"
AUDIENCE = "loop-kpi-api"
OTHER_SECRET = "an-entirely-different-secret-0123456789abcdef"
NEVER_IN_RESPONSES = (
    JWT_SECRET,
    OTHER_SECRET,
    SANDBOX_AMPLITUDE_API_KEY,
    SANDBOX_AMPLITUDE_SECRET_KEY,
    SANDBOX_REVENUECAT_API_KEY,
)

Challenge = Literal["realm", "invalid_token", "insufficient_scope"]


@dataclass(frozen=True)
class Credentials:
    headers: dict[str, str] = field(default_factory=dict[str, str])
    params: dict[str, str] = field(default_factory=dict[str, str])
    token: str | None = None


@dataclass(frozen=True)
class Case:
    name: str
    credentials: Callable[[], Credentials]
    status: Literal[200, 401, 403]
    challenge: Challenge | None


def _good(**kwargs: Any) -> str:
    return token(issuer=ISSUER, audience=AUDIENCE, **kwargs)


def _with(value: str) -> Credentials:
    return Credentials(headers=bearer(value), token=value)


def _unsigned(payload: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


def _alg_none() -> Credentials:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "tester",
        "iat": now,
        "exp": now + 600,
        "scope": "kpi:read",
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    return _with(_unsigned(claims))


def _in_query() -> Credentials:
    value = _good()
    return Credentials(params={"access_token": value}, token=value)


CASES: tuple[Case, ...] = (
    Case("no token", Credentials, 401, "realm"),
    Case("basic scheme", lambda: Credentials(headers={"Authorization": "Basic abc"}), 401, "invalid_token"),
    Case("bearer alone", lambda: Credentials(headers={"Authorization": "Bearer"}), 401, "invalid_token"),
    Case("not a jwt", lambda: _with("not-a-jwt"), 401, "invalid_token"),
    Case(
        "bad signature",
        lambda: _with(mint_token(OTHER_SECRET, subject="tester", issuer=ISSUER, audience=AUDIENCE)),
        401,
        "invalid_token",
    ),
    Case("expired", lambda: _with(_good(ttl=60, now=int(time.time()) - 3600)), 401, "invalid_token"),
    Case("wrong audience", lambda: _with(token(issuer=ISSUER, audience="someone-else")), 401, "invalid_token"),
    Case("no audience", lambda: _with(token(issuer=ISSUER)), 401, "invalid_token"),
    Case("wrong issuer", lambda: _with(token(issuer="https://evil.test", audience=AUDIENCE)), 401, "invalid_token"),
    Case("alg none", _alg_none, 401, "invalid_token"),
    Case("token in query string", _in_query, 401, "invalid_token"),
    Case("scope without kpi:read", lambda: _with(_good(scopes=("reports:read",))), 403, "insufficient_scope"),
    Case("role user", lambda: _with(_good(scopes=(), roles=("user",))), 403, "insufficient_scope"),
    Case("kpi:read", lambda: _with(_good()), 200, None),
    Case("role admin", lambda: _with(_good(scopes=(), roles=("admin",))), 200, None),
    Case("role exec", lambda: _with(_good(scopes=(), roles=("exec",))), 200, None),
)


@pytest.fixture(scope="module")
def strict_client(sandbox_server: SandboxServer) -> Iterator[TestClient]:
    """An app that requires `iss` and `aud` on every token."""
    settings = build_settings(sandbox_server.base_url, KPI_JWT_ISSUER=ISSUER, KPI_JWT_AUDIENCE=AUDIENCE)
    with serve(settings) as opened:
        yield opened


def _assert_challenge(header: str | None, expected: Challenge | None) -> None:
    if expected is None:
        assert header is None
        return
    assert header is not None
    metadata = 'resource_metadata="http://127.0.0.1:8000/.well-known/oauth-protected-resource"'  # with an issuer
    if expected == "realm":
        assert header == f'Bearer realm="loop-kpi", {metadata}'
        return
    scheme, params = parse_challenge(header)
    assert scheme == "Bearer"
    if expected == "invalid_token":
        assert set(params) == {"error", "error_description", "resource_metadata"}
        assert params["error"] == "invalid_token"
    else:
        assert set(params) == {"error", "scope", "error_description", "resource_metadata"}
        assert params["error"] == "insufficient_scope"
        assert params["scope"] == "kpi:read"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_each_route_answers_each_credential_with_the_exact_status_and_challenge(
    strict_client: TestClient, route: Route, case: Case
) -> None:
    credentials = case.credentials()

    response = call(strict_client, route, headers=credentials.headers, params=credentials.params)

    assert response.status_code == case.status, response.text
    _assert_challenge(response.headers.get("WWW-Authenticate"), case.challenge)
    if case.status == 200:
        assert response.headers["content-type"] == "application/json"
        route.model.model_validate(response.json())
    else:
        body = assert_problem(response, case.status)
        slug = "unauthorized" if case.status == 401 else "insufficient-scope"
        assert body["type"] == PROBLEM_TYPE + slug
        if case.status == 403:
            assert body["required_scope"] == "kpi:read"
    exposed = response.text + "\n".join(f"{name}: {value}" for name, value in response.headers.items())
    for secret in (*NEVER_IN_RESPONSES, *([credentials.token] if credentials.token else [])):
        assert secret not in exposed


def test_a_valid_header_does_not_excuse_a_token_in_the_query_string(strict_client: TestClient) -> None:
    response = strict_client.get("/api/kpi/mau", headers=bearer(_good()), params={"access_token": _good()})

    assert_problem(response, 401)
    _assert_challenge(response.headers.get("WWW-Authenticate"), "invalid_token")


def test_a_token_expired_within_the_leeway_is_still_accepted(strict_client: TestClient) -> None:
    response = strict_client.get("/api/kpi/mau", headers=bearer(_good(ttl=60, now=int(time.time()) - 75)))

    assert response.status_code == 200, response.text


def test_without_issuer_or_audience_configured_a_plain_token_is_accepted(client: TestClient) -> None:
    response = client.get("/api/kpi/mau", headers=bearer(token()))

    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def open_client(sandbox_server: SandboxServer) -> Iterator[TestClient]:
    """A sandbox app started with `--no-auth`."""
    url = sandbox_server.base_url
    with serve(build_settings(url, KPI_SANDBOX=True, KPI_SANDBOX_URL=url, KPI_NO_AUTH=True)) as opened:
        yield opened


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_sandbox_without_auth_serves_every_route_without_a_token(open_client: TestClient, route: Route) -> None:
    response = call(open_client, route)

    assert response.status_code == 200, response.text
    assert response.headers["X-KPI-Data-Source"] == "sandbox"


def test_sandbox_without_auth_still_rejects_a_bad_token(open_client: TestClient) -> None:
    response = open_client.get("/api/kpi/mau", headers=bearer("not-a-jwt"))

    assert_problem(response, 401)


def test_the_app_refuses_to_run_open_outside_the_sandbox(sandbox_server: SandboxServer) -> None:
    settings = build_settings(sandbox_server.base_url, KPI_NO_AUTH=True)

    with pytest.raises(ValueError, match="KPI_NO_AUTH"):
        create_app(settings)
