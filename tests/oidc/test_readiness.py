"""`/readyz` says whether the identity provider's signing keys are held, so a wrong issuer shows before sign-ins fail."""

from __future__ import annotations

import logging
from collections.abc import Generator
from contextlib import contextmanager

import anyio
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from shared.sandbox import SandboxServer
from shared.settings import Settings
from tests.api.conftest import build_settings, serve
from tests.conftest import clock
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


@contextmanager
def started_checking(settings: Settings) -> Generator[TestClient]:
    """The app as `loop-kpi serve` builds it, once its start-up check of the signing keys has finished."""
    app = create_app(settings, clock=clock, check_signing_keys=True)
    with TestClient(app) as client:
        checked: anyio.Event = app.state.signing_keys_checked

        async def wait() -> None:
            with anyio.fail_after(20):
                await checked.wait()

        client.portal.call(wait)  # pyright: ignore[reportOptionalMemberAccess] - set while the client is open
        yield client


def test_serve_fetches_the_signing_keys_at_start_up_and_logs_it(
    sandbox_server: SandboxServer, provider: OidcProvider, caplog: pytest.LogCaptureFixture
) -> None:
    settings = build_settings(sandbox_server.base_url, KPI_JWT_ISSUER=provider.issuer)
    with caplog.at_level(logging.INFO, logger="loop_kpi"), started_checking(settings):
        said = [record.getMessage() for record in caplog.records if record.name == "loop_kpi"]
    assert f"signing keys of {provider.issuer} found" in said


def test_a_wrong_issuer_is_logged_at_start_up_and_the_service_still_serves(
    sandbox_server: SandboxServer, provider: OidcProvider, caplog: pytest.LogCaptureFixture
) -> None:
    typo = provider.issuer + "/realms/typo"
    settings = build_settings(sandbox_server.base_url, KPI_JWT_ISSUER=typo)
    with caplog.at_level(logging.INFO, logger="loop_kpi"), started_checking(settings) as client:
        assert client.get("/healthz").status_code == 200
    warnings = [r.getMessage() for r in caplog.records if r.name == "loop_kpi" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"signing keys of {typo} unavailable: the issuer's discovery document")


def test_without_the_start_up_check_nothing_is_fetched_before_a_token_or_readyz(
    sandbox_server: SandboxServer, provider: OidcProvider, caplog: pytest.LogCaptureFixture
) -> None:
    settings = build_settings(sandbox_server.base_url, KPI_JWT_ISSUER=provider.issuer)
    with caplog.at_level(logging.INFO, logger="loop_kpi"), serve(settings):
        pass
    assert not [r for r in caplog.records if "signing keys" in r.getMessage()]
