"""`/readyz` says whether the identity provider's signing keys are held, so a wrong issuer shows before sign-ins fail."""

from __future__ import annotations

from shared.sandbox import SandboxServer
from tests.api.conftest import build_settings, serve
from tests.oidc.support import OidcProvider, require_node

require_node()


def test_readiness_reports_the_signing_keys_found_through_the_issuers_discovery(
    sandbox_server: SandboxServer, provider: OidcProvider
) -> None:
    settings = build_settings(sandbox_server.base_url, KPI_JWT_ISSUER=provider.issuer)
    with serve(settings) as client:
        body = client.get("/readyz").json()
    assert body["signing_keys"] == {"available": True, "detail": "signing keys held"}
    assert body["status"] == "ready"


def test_an_issuer_whose_discovery_fails_makes_the_service_degraded_and_says_why(
    sandbox_server: SandboxServer, provider: OidcProvider
) -> None:
    # The provider's origin, but not its issuer: the discovery document names another issuer (or is a 404).
    settings = build_settings(sandbox_server.base_url, KPI_JWT_ISSUER=provider.issuer + "/realms/typo")
    with serve(settings) as client:
        response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "degraded"
    assert body["signing_keys"]["available"] is False
    assert "discovery document could not be read" in body["signing_keys"]["detail"]


def test_without_a_jwks_or_issuer_readiness_says_nothing_about_signing_keys(sandbox_server: SandboxServer) -> None:
    with serve(build_settings(sandbox_server.base_url)) as client:
        body = client.get("/readyz").json()
    assert body["signing_keys"] is None
