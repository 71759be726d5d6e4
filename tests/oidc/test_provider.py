"""The test provider behaves like a company identity provider in front of a JWT resource server: what the sign-in
tests (and the dashboard's browser test) rely on."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import jwt
import pytest

from tests.oidc.support import CALLBACK, OidcProvider, obtain_token, require_node

require_node()

pytestmark = pytest.mark.anyio
RESOURCE = "http://127.0.0.1:8000/mcp"


async def test_discovery_names_the_issuer_registration_and_kpi_read(provider: OidcProvider) -> None:
    async with httpx2.AsyncClient() as http:
        oidc = (await http.get(provider.discovery_url)).json()
        oauth = (await http.get(provider.issuer + "/.well-known/oauth-authorization-server")).json()
    assert oidc["issuer"] == oauth["issuer"] == provider.issuer
    assert oidc["registration_endpoint"].startswith(provider.issuer)
    assert "kpi:read" in oidc["scopes_supported"]
    assert oidc["code_challenge_methods_supported"] == ["S256"]


async def test_access_token_is_an_rs256_jwt_for_the_requested_resource_with_kpi_read_and_roles(
    provider: OidcProvider,
) -> None:
    token = await obtain_token(provider, resource=RESOURCE, scope="openid kpi:read", login="exec-ann")
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (header["alg"], header["typ"]) == ("RS256", "at+jwt")
    assert claims["iss"] == provider.issuer
    assert claims["aud"] == RESOURCE
    assert claims["sub"] == "exec-ann"
    assert claims["scope"] == "kpi:read"
    assert claims["roles"] == ["exec"]
    assert claims["realm_access"] == {"roles": ["exec"]}


async def test_a_client_asking_only_openid_gets_a_token_without_kpi_read_or_roles(provider: OidcProvider) -> None:
    claims = jwt.decode(
        await obtain_token(provider, resource=RESOURCE, scope="openid", login="bob"),
        options={"verify_signature": False},
    )
    assert claims["aud"] == RESOURCE
    assert "scope" not in claims
    assert "roles" not in claims


async def test_authorization_without_pkce_is_refused(provider: OidcProvider) -> None:
    async with httpx2.AsyncClient() as http:
        metadata = (await http.get(provider.discovery_url)).json()
        registered = await http.post(
            metadata["registration_endpoint"], json={"redirect_uris": [CALLBACK], "token_endpoint_auth_method": "none"}
        )
        client_id = registered.json()["client_id"]
        query = {"client_id": client_id, "response_type": "code", "redirect_uri": CALLBACK, "scope": "openid"}
        response = await http.get(f"{metadata['authorization_endpoint']}?{urlencode(query)}", follow_redirects=False)
    location = response.headers["location"]
    assert location.startswith(CALLBACK)
    assert parse_qs(urlsplit(location).query)["error"] == ["invalid_request"]
