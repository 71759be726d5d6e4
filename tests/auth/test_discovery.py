"""The verifier finds an OpenID Connect issuer's keys by discovery, and reads the configured audience and claims."""

from __future__ import annotations

import time
from typing import Any

import httpx2
import pytest

from shared.auth.tokens import TokenVerifier, claim, discovery_urls, token_audiences
from shared.errors import AuthenticationError
from shared.settings import Settings
from tests.auth.test_tokens import FakeClock, SigningKey, rsa_key

pytestmark = pytest.mark.anyio
ISSUER = "https://idp.test/realms/kpi"
JWKS_URI = "https://idp.test/realms/kpi/protocol/openid-connect/certs"
PUBLIC_URL = "https://kpi.example.com"


@pytest.fixture(scope="module")
def rsa_signing_key() -> SigningKey:
    return rsa_key("idp-1")


def settings(**overrides: Any) -> Settings:
    return Settings.model_validate({"KPI_JWT_ISSUER": ISSUER, "KPI_PUBLIC_URL": PUBLIC_URL, **overrides})


def signed(key: SigningKey, **extra: Any) -> str:
    now = int(time.time())
    claims = {"sub": "ann", "iss": ISSUER, "aud": PUBLIC_URL + "/mcp", "iat": now, "exp": now + 600, **extra}
    return key.sign({name: value for name, value in claims.items() if value is not None})


class Idp:
    """An issuer on an httpx2.MockTransport: discovery documents by URL, the JWKS, and a log of requests."""

    def __init__(self, key: SigningKey, documents: dict[str, dict[str, Any] | None]) -> None:
        self.key = key
        self.documents = documents
        self.requested: list[str] = []

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        url = str(request.url)
        self.requested.append(url)
        if url == JWKS_URI:
            return httpx2.Response(200, json={"keys": [self.key.jwk]})
        document = self.documents.get(url)
        return httpx2.Response(404) if document is None else httpx2.Response(200, json=document)

    def client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self.handler))


OIDC = ISSUER + "/.well-known/openid-configuration"
RFC8414 = "https://idp.test/.well-known/oauth-authorization-server/realms/kpi"


def test_discovery_looks_at_openid_configuration_then_at_rfc_8414_with_the_path_after_the_well_known_segment() -> None:
    assert discovery_urls(ISSUER) == (OIDC, RFC8414)
    assert discovery_urls("https://tenant.auth0.test/") == (
        "https://tenant.auth0.test/.well-known/openid-configuration",
        "https://tenant.auth0.test/.well-known/oauth-authorization-server",
    )


@pytest.mark.parametrize(
    "documents",
    [
        pytest.param({OIDC: {"issuer": ISSUER, "jwks_uri": JWKS_URI}}, id="openid-configuration"),
        pytest.param({RFC8414: {"issuer": ISSUER, "jwks_uri": JWKS_URI}}, id="rfc-8414-fallback"),
    ],
)
async def test_the_jwks_is_found_by_discovery(rsa_signing_key: SigningKey, documents: dict[str, Any]) -> None:
    idp = Idp(rsa_signing_key, documents)
    async with idp.client() as client:
        principal = await TokenVerifier(settings(KPI_JWT_SECRET=None), http_client=client).verify(
            signed(rsa_signing_key)
        )
    assert principal.subject == "ann"
    assert idp.requested[-1] == JWKS_URI


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({"issuer": "https://evil.test", "jwks_uri": JWKS_URI}, id="another-issuer"),
        pytest.param({"issuer": ISSUER + "/", "jwks_uri": JWKS_URI}, id="issuer-with-a-trailing-slash"),
        pytest.param({"issuer": ISSUER, "jwks_uri": "http://idp.test/certs"}, id="jwks-over-plain-http"),
        pytest.param({"issuer": ISSUER}, id="no-jwks-uri"),
    ],
)
async def test_a_discovery_document_not_exactly_for_the_issuer_yields_no_keys(
    rsa_signing_key: SigningKey, document: dict[str, Any]
) -> None:
    idp = Idp(rsa_signing_key, {OIDC: document, RFC8414: document})
    async with idp.client() as client:
        with pytest.raises(AuthenticationError, match="signing keys unavailable"):
            await TokenVerifier(settings(), http_client=client).verify(signed(rsa_signing_key))
    assert JWKS_URI not in idp.requested


async def test_the_discovery_document_is_cached_and_fetched_again_after_the_max_age(
    rsa_signing_key: SigningKey,
) -> None:
    idp = Idp(rsa_signing_key, {OIDC: {"issuer": ISSUER, "jwks_uri": JWKS_URI}})
    clock = FakeClock()
    async with idp.client() as client:
        verifier = TokenVerifier(settings(), http_client=client, clock=clock, jwks_max_age=600)
        await verifier.verify(signed(rsa_signing_key, jti="1", exp=int(time.time()) + 3600))
        clock.advance(300)
        await verifier.verify(signed(rsa_signing_key, jti="2", exp=int(time.time()) + 3600))
        assert idp.requested.count(OIDC) == 1
        clock.advance(301)
        await verifier.verify(signed(rsa_signing_key, jti="3", exp=int(time.time()) + 3600))
    assert idp.requested.count(OIDC) == 2


async def test_kpi_jwks_url_wins_over_discovery(rsa_signing_key: SigningKey) -> None:
    idp = Idp(rsa_signing_key, {})
    async with idp.client() as client:
        await TokenVerifier(settings(KPI_JWKS_URL=JWKS_URI), http_client=client).verify(signed(rsa_signing_key))
    assert idp.requested == [JWKS_URI]


@pytest.mark.parametrize(
    ("overrides", "audiences"),
    [
        pytest.param({}, (PUBLIC_URL + "/mcp",), id="issuer-default-the-mcp-resource-url"),
        pytest.param({"KPI_JWT_AUDIENCE": "api://kpi,kpi"}, ("api://kpi", "kpi"), id="configured-list"),
        pytest.param({"KPI_JWT_ISSUER": None}, (), id="no-issuer-no-audience"),
    ],
)
def test_the_expected_audiences(overrides: dict[str, Any], audiences: tuple[str, ...]) -> None:
    assert token_audiences(settings(**overrides)) == audiences


async def test_with_an_issuer_a_token_without_the_resource_audience_is_refused(rsa_signing_key: SigningKey) -> None:
    idp = Idp(rsa_signing_key, {OIDC: {"issuer": ISSUER, "jwks_uri": JWKS_URI}})
    async with idp.client() as client:
        verifier = TokenVerifier(settings(), http_client=client)
        for token in (signed(rsa_signing_key, aud="https://other.test"), signed(rsa_signing_key, aud=None)):
            with pytest.raises(AuthenticationError, match="wrong audience"):
                await verifier.verify(token)


@pytest.mark.parametrize(
    ("claims", "name", "value"),
    [
        pytest.param({"realm_access": {"roles": ["exec"]}}, "realm_access.roles", ["exec"], id="dotted-path"),
        pytest.param({"https://kpi.example.com/roles": ["exec"]}, "https://kpi.example.com/roles", ["exec"], id="url"),
        pytest.param({"realm_access": ["exec"]}, "realm_access.roles", None, id="not-an-object"),
        pytest.param({}, "resource_access.kpi.roles", None, id="absent"),
    ],
)
def test_claims_are_read_by_name_or_dotted_path(claims: dict[str, Any], name: str, value: object) -> None:
    assert claim(claims, name) == value


@pytest.mark.parametrize(
    ("scope_claims", "scopes"),
    [
        pytest.param("scp", {"kpi:read"}, id="okta-entra-scp-list"),
        pytest.param("scope", {"openid"}, id="scope-string-only"),
    ],
)
async def test_scopes_are_read_from_the_configured_claims(
    rsa_signing_key: SigningKey, scope_claims: str, scopes: set[str]
) -> None:
    idp = Idp(rsa_signing_key, {OIDC: {"issuer": ISSUER, "jwks_uri": JWKS_URI}})
    async with idp.client() as client:
        verifier = TokenVerifier(settings(KPI_JWT_SCOPE_CLAIMS=scope_claims), http_client=client)
        principal = await verifier.verify(signed(rsa_signing_key, scp=["kpi:read"], scope="openid"))
    assert principal.scopes == scopes
