"""The dashboard's sign-in configuration (`/dashboard/sign-in.json`): what the page needs to sign in through the
company's identity provider, public by nature, and absent unless an issuer and the dashboard's client id are set.

The sign-in itself, in a real browser against a real provider, is tested in tests/browser/test_sign_in.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator
from contextlib import contextmanager

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.dashboard import CONTENT_SECURITY_POLICY, mount_dashboard
from api.main import create_app
from shared.settings import Settings
from tests.conftest import JWT_SECRET

ISSUER = "https://login.example.com/realms/company"
PUBLIC_URL = "https://kpi.example.com"
SIGN_IN = "/dashboard/sign-in.json"


@contextmanager
def dashboard_client(settings: Settings) -> Generator[TestClient]:
    app = FastAPI()
    mount_dashboard(app, settings)
    with TestClient(app) as client:
        yield client


def connect_src(csp: str) -> str:
    match = re.search(r"connect-src ([^;]+);", csp)
    assert match is not None, csp
    return match.group(1)


def test_with_an_issuer_and_a_client_id_the_page_gets_what_it_needs_to_sign_in_and_nothing_secret(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        KPI_JWT_ISSUER=ISSUER,
        KPI_OIDC_CLIENT_ID="kpi-dashboard",
        KPI_OIDC_SCOPES="openid,kpi:read,offline_access",
        KPI_PUBLIC_URL=PUBLIC_URL + "/",
    )
    with dashboard_client(settings) as client:
        response = client.get(SIGN_IN)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.headers["cache-control"] == "no-cache"
        config = response.json()
        library = config.pop("library")
        assert config == {
            "issuer": ISSUER,
            "client_id": "kpi-dashboard",
            "scopes": ["openid", "kpi:read", "offline_access"],
            "resource": PUBLIC_URL + "/mcp",
            "redirect_uri": PUBLIC_URL + "/dashboard/",
            "post_logout_redirect_uri": PUBLIC_URL + "/dashboard/",
        }
        assert re.fullmatch(r"/dashboard/assets/oidc-client-ts\.min\.[0-9a-f]{12}\.js", library)
        assert client.get(library).status_code == 200
        secrets = (JWT_SECRET, settings.revenuecat_key(), *settings.amplitude_credentials())
        assert all(secret and secret not in response.text for secret in secrets)
        # The page may reach the provider (discovery, token, revocation), and nothing else beyond its own origin.
        page = client.get("/dashboard")
        assert f'<meta name="loop-kpi-sign-in" content="{SIGN_IN}">' in page.text
        csp = page.headers["content-security-policy"]
        assert connect_src(csp) == "'self' https://login.example.com"
        assert "script-src 'self';" in csp and "frame-src" not in csp and "default-src 'none'" in csp


@pytest.mark.parametrize(
    "overrides",
    [{}, {"KPI_JWT_ISSUER": ISSUER}, {"KPI_OIDC_CLIENT_ID": "kpi-dashboard"}],
    ids=["neither", "issuer-only", "client-id-only"],
)
def test_without_an_issuer_and_a_client_id_there_is_no_sign_in_configuration_and_the_csp_stays_self_only(
    make_settings: Callable[..., Settings], overrides: dict[str, str]
) -> None:
    with dashboard_client(make_settings(**overrides)) as client:
        assert client.get(SIGN_IN).status_code == 404
        page = client.get("/dashboard")
        assert '<meta name="loop-kpi-sign-in" content="">' in page.text  # the page fetches nothing
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert connect_src(CONTENT_SECURITY_POLICY) == "'self'"


def test_the_service_serves_the_sign_in_configuration_without_a_token(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(KPI_SANDBOX=True, KPI_JWT_ISSUER=ISSUER, KPI_OIDC_CLIENT_ID="kpi-dashboard")
    app = create_app(settings)
    client = TestClient(app)  # no lifespan: the page's configuration needs no runtime (nor the issuer's discovery)
    response = client.get(SIGN_IN)
    assert response.status_code == 200
    assert response.json()["resource"] == settings.KPI_PUBLIC_URL + "/mcp"
    assert SIGN_IN not in app.openapi()["paths"]
