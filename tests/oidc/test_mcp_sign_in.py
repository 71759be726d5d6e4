"""Remote MCP clients sign in with a real OpenID Connect provider, and both faces refuse what they must.

The service runs as `loop-kpi serve` does (uvicorn on a real socket, sandbox upstreams) with `KPI_JWT_ISSUER` pointing
at the test provider (tests/oidc/README.md). The MCP SDK's own OAuth client starts with nothing but the `/mcp` URL:
401 with `resource_metadata`, the RFC 9728 metadata, the provider's discovery, dynamic registration, authorization
code + PKCE through the provider's login and consent pages, the token for the resource, then `kpi_overview`.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from api.main import create_app
from shared.auth.challenge import PRM_PATH
from shared.auth.tokens import TokenVerifier
from shared.sandbox import SandboxServer
from shared.settings import Settings
from tests.api.conftest import build_settings
from tests.api.test_e2e_loopback import serve_in_thread
from tests.conftest import clock
from tests.oidc.support import OidcProvider, obtain_token, require_node, running_provider, sign_in
from tests.server.support import MCP_POST_HEADERS, challenge_params, jsonrpc

require_node()

pytestmark = pytest.mark.anyio
REDIRECT_URI = "http://127.0.0.1:9/mcp-client/callback"
TOKEN_TTL = 600


class OffsetClock:
    """The service's token clock: the wall clock plus an offset a test may advance (no sleeps)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Service:
    base_url: str
    token_clock: OffsetClock

    @property
    def mcp_url(self) -> str:
        return self.base_url + "/mcp"


@contextmanager
def serve(make: Callable[[str], Settings], token_clock: OffsetClock) -> Generator[Service]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    with sock:
        base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        app = create_app(make(base_url), clock=clock, token_clock=token_clock)
        with serve_in_thread(app, sock):
            yield Service(base_url, token_clock)


@pytest.fixture(scope="module")
def other_provider() -> Iterator[OidcProvider]:
    """A second, unrelated provider: its tokens come from another issuer."""
    with running_provider() as running:
        yield running


@pytest.fixture(scope="module")
def service(provider: OidcProvider, sandbox_server: SandboxServer) -> Iterator[Service]:
    def settings(base_url: str) -> Settings:
        return build_settings(
            sandbox_server.base_url,
            KPI_SANDBOX=True,  # as `loop-kpi serve --sandbox`
            KPI_SANDBOX_URL=sandbox_server.base_url,
            KPI_PUBLIC_URL=base_url,
            KPI_JWT_ISSUER=provider.issuer,
        )

    with serve(settings, OffsetClock()) as running:
        yield running


@pytest.fixture
def live(service: Service) -> Iterator[Service]:
    service.token_clock.offset = 0.0
    yield service
    service.token_clock.offset = 0.0


@dataclass
class MemoryStorage:
    """The OAuth client's token storage (`mcp.client.auth.TokenStorage`), in memory."""

    tokens: OAuthToken | None = None
    client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


@dataclass
class Person:
    """Who sits at the browser: follows the authorization URL through the provider's pages as `login`."""

    login: str
    authorization_urls: list[str] = field(default_factory=list[str])
    callbacks: list[str] = field(default_factory=list[str])

    async def redirect(self, url: str) -> None:
        self.authorization_urls.append(url)
        async with httpx2.AsyncClient() as browser:
            self.callbacks.append(await sign_in(browser, url, redirect_uri=REDIRECT_URI, login=self.login))

    async def callback(self) -> AuthorizationCodeResult:
        query = {name: values[0] for name, values in parse_qs(urlsplit(self.callbacks[-1]).query).items()}
        return AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))


async def test_the_mcp_sdks_oauth_client_signs_in_from_the_mcp_url_alone_and_calls_kpi_overview(
    live: Service, provider: OidcProvider
) -> None:
    person = Person("analyst-ann")
    storage = MemoryStorage()
    oauth = OAuthClientProvider(
        live.mcp_url,
        OAuthClientMetadata(
            redirect_uris=[REDIRECT_URI],  # pyright: ignore[reportArgumentType]  (pydantic parses the str)
            token_endpoint_auth_method="none",
            grant_types=["authorization_code"],
            response_types=["code"],
            client_name="loop-kpi test MCP client",
        ),
        storage,
        redirect_handler=person.redirect,
        callback_handler=person.callback,
    )
    seen: list[tuple[str, str, int]] = []

    async def record(response: httpx2.Response) -> None:
        seen.append((response.request.method, str(response.request.url).split("?")[0], response.status_code))

    async with (
        httpx2.AsyncClient(auth=oauth, event_hooks={"response": [record]}, timeout=30) as http,
        Client(streamable_http_client(live.mcp_url, http_client=http)) as client,
    ):
        result = await client.call_tool("kpi_overview", {})

    assert result.is_error is False, result.content
    assert result.structured_content is not None
    assert result.structured_content["data_source"] == "sandbox"
    # The client found everything itself: 401 on /mcp, our metadata, the provider's metadata, registration, token.
    assert seen[0] == ("POST", live.mcp_url, 401)
    assert ("GET", live.base_url + PRM_PATH, 200) in seen
    assert ("POST", provider.issuer + "/reg", 201) in seen
    assert ("POST", provider.issuer + "/token", 200) in seen
    assert seen[-1] == ("POST", live.mcp_url, 200)
    authorization = parse_qs(urlsplit(person.authorization_urls[0]).query)
    assert authorization["resource"] == [live.mcp_url]
    assert authorization["scope"] == ["kpi:read"]
    assert authorization["code_challenge_method"] == ["S256"]
    assert storage.client_info is not None
    assert storage.client_info.client_id
    assert storage.tokens is not None


async def test_the_protected_resource_metadata_names_the_issuer_and_kpi_read(
    live: Service, provider: OidcProvider
) -> None:
    async with httpx2.AsyncClient() as http:
        document = (await http.get(live.base_url + PRM_PATH)).json()
    assert document["resource"] == live.mcp_url
    assert document["authorization_servers"] == [provider.issuer]
    assert document["scopes_supported"] == ["kpi:read"]


async def call_both_faces(live: Service, token: str) -> dict[str, httpx2.Response]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(base_url=live.base_url, headers=headers) as http:
        return {
            "rest": await http.get("/api/kpi/overview"),
            "mcp": await http.post("/mcp", json=jsonrpc("tools/list"), headers=MCP_POST_HEADERS),
        }


def assert_refused(live: Service, responses: dict[str, httpx2.Response], status: int, **expected: str) -> None:
    for face, response in responses.items():
        assert response.status_code == status, (face, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        challenge = challenge_params(response.headers["www-authenticate"])
        assert challenge["resource_metadata"] == live.base_url + PRM_PATH, face
        for name, value in expected.items():
            assert challenge[name] == value, (face, challenge)


async def test_a_token_for_another_audience_is_refused_on_both_faces(live: Service, provider: OidcProvider) -> None:
    token = await obtain_token(provider, resource="https://reports.example.com/api", scope="kpi:read", login="ann")
    assert_refused(
        live, await call_both_faces(live, token), 401, error="invalid_token", error_description="wrong audience"
    )


async def test_a_token_from_another_issuer_is_refused_on_both_faces(
    live: Service, other_provider: OidcProvider
) -> None:
    token = await obtain_token(other_provider, resource=live.mcp_url, scope="kpi:read", login="ann")
    assert_refused(live, await call_both_faces(live, token), 401, error="invalid_token")


async def test_an_expired_token_is_refused_on_both_faces(live: Service, provider: OidcProvider) -> None:
    token = await obtain_token(provider, resource=live.mcp_url, scope="kpi:read", login="ann")
    assert {face: r.status_code for face, r in (await call_both_faces(live, token)).items()} == {
        "rest": 200,
        "mcp": 200,
    }
    live.token_clock.offset = TOKEN_TTL + 60  # past `exp` and the 30 s leeway
    assert_refused(
        live, await call_both_faces(live, token), 401, error="invalid_token", error_description="token expired"
    )


async def test_a_token_without_kpi_read_is_refused_with_insufficient_scope_on_both_faces(
    live: Service, provider: OidcProvider
) -> None:
    token = await obtain_token(provider, resource=live.mcp_url, scope="openid", login="ann")
    assert_refused(live, await call_both_faces(live, token), 403, error="insufficient_scope", scope="kpi:read")


async def test_a_token_carrying_the_exec_role_instead_of_kpi_read_is_accepted_on_both_faces(
    live: Service, provider: OidcProvider
) -> None:
    token = await obtain_token(provider, resource=live.mcp_url, scope="openid", login="exec-eve")
    responses = await call_both_faces(live, token)
    assert {face: response.status_code for face, response in responses.items()} == {"rest": 200, "mcp": 200}


@pytest.mark.parametrize(
    ("role_claims", "roles"),
    [
        pytest.param(("realm_access.roles",), {"exec"}, id="keycloak-dotted-path"),
        pytest.param(("groups",), set[str](), id="a-claim-the-token-lacks"),
    ],
)
async def test_roles_are_read_from_the_configured_claims_including_dotted_paths(
    provider: OidcProvider, role_claims: tuple[str, ...], roles: set[str]
) -> None:
    resource = "https://kpi.example.com/mcp"
    settings: dict[str, Any] = {
        "KPI_JWT_ISSUER": provider.issuer,
        "KPI_PUBLIC_URL": "https://kpi.example.com",
        "KPI_JWT_ROLE_CLAIMS": ",".join(role_claims),
    }
    token = await obtain_token(provider, resource=resource, scope="openid", login="exec-eve")
    async with TokenVerifier(Settings.model_validate(settings)) as verifier:
        principal = await verifier.verify(token)
    assert principal.subject == "exec-eve"
    assert principal.roles == roles


async def test_the_issuer_in_the_discovery_document_must_equal_the_configured_one(provider: OidcProvider) -> None:
    token = await obtain_token(provider, resource="https://kpi.example.com/mcp", scope="kpi:read", login="ann")
    settings = {"KPI_JWT_ISSUER": provider.issuer + "/", "KPI_PUBLIC_URL": "https://kpi.example.com"}
    async with TokenVerifier(Settings.model_validate(settings)) as verifier:
        with pytest.raises(Exception, match="signing keys unavailable"):
            await verifier.verify(token)
