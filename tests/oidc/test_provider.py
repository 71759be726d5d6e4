"""The test provider behaves like a company identity provider in front of a JWT resource server: what the sign-in
tests (and the dashboard's browser test) rely on."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import jwt
import pytest

from tests.oidc.support import OidcProvider, require_node, sign_in

require_node()

pytestmark = pytest.mark.anyio
CALLBACK = "http://127.0.0.1:9/callback"
RESOURCE = "http://127.0.0.1:8000/mcp"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


async def register(http: httpx2.AsyncClient, metadata: dict[str, object]) -> str:
    response = await http.post(
        str(metadata["registration_endpoint"]),
        json={"redirect_uris": [CALLBACK], "token_endpoint_auth_method": "none", "client_name": "test"},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["client_id"])


async def access_token(provider: OidcProvider, *, scope: str, login: str) -> str:
    async with httpx2.AsyncClient() as http:
        metadata = (await http.get(provider.discovery_url)).json()
        client_id = await register(http, metadata)
        verifier, challenge = pkce()
        query = {
            "client_id": client_id,
            "response_type": "code",
            "redirect_uri": CALLBACK,
            "scope": scope,
            "state": "xyz",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": RESOURCE,
        }
        url = f"{metadata['authorization_endpoint']}?{urlencode(query)}"
        callback = await sign_in(http, url, redirect_uri=CALLBACK, login=login)
        code = parse_qs(urlsplit(callback).query)["code"][0]
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "client_id": client_id,
            "code_verifier": verifier,
            "resource": RESOURCE,
        }
        response = await http.post(str(metadata["token_endpoint"]), data=form)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


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
    token = await access_token(provider, scope="openid kpi:read", login="exec-ann")
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
    claims = jwt.decode(await access_token(provider, scope="openid", login="bob"), options={"verify_signature": False})
    assert claims["aud"] == RESOURCE
    assert "scope" not in claims
    assert "roles" not in claims


async def test_authorization_without_pkce_is_refused(provider: OidcProvider) -> None:
    async with httpx2.AsyncClient() as http:
        metadata = (await http.get(provider.discovery_url)).json()
        client_id = await register(http, metadata)
        query = {"client_id": client_id, "response_type": "code", "redirect_uri": CALLBACK, "scope": "openid"}
        response = await http.get(f"{metadata['authorization_endpoint']}?{urlencode(query)}", follow_redirects=False)
    location = response.headers["location"]
    assert location.startswith(CALLBACK)
    assert parse_qs(urlsplit(location).query)["error"] == ["invalid_request"]
