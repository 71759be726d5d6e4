"""The Inspector sign-in driver (`python -m tests.oidc.inspector_sign_in`, run by `.ci/mcp-clients.sh` (d)) checks the
authorization request the Inspector CLI builds before it signs in: these are its own checks, without Node."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from tests.oidc.inspector_sign_in import NAVIGATE, StepFailed, check_authorization_url

ISSUER = "http://127.0.0.1:41234"
RESOURCE = "http://127.0.0.1:8000/mcp"
REQUEST = {
    "response_type": "code",
    "client_id": "nYBC1TBOTw6L",
    "code_challenge": "WXSfStwVsPYUfDFDZQtRJQjVJdqsMRw8nOISyBNv-Uo",
    "code_challenge_method": "S256",
    "redirect_uri": "http://127.0.0.1:33989/oauth/callback",
    "state": "6486",
    "scope": "kpi:read offline_access",
    "prompt": "consent",
    "resource": RESOURCE,
}


def authorization_url(**changes: str | None) -> str:
    query = {k: v for k, v in (REQUEST | changes).items() if v is not None}
    return f"{ISSUER}/auth?{urlencode(query)}"


def test_the_inspectors_prompt_line_yields_the_authorization_url() -> None:
    line = f"Please navigate to: {authorization_url()}\n"
    found = NAVIGATE.search(line)
    assert found is not None
    assert found.group(1) == authorization_url()


def test_a_request_for_the_resource_with_kpi_read_and_pkce_is_accepted() -> None:
    assert check_authorization_url(authorization_url(), issuer=ISSUER, resource=RESOURCE) == (
        "nYBC1TBOTw6L",
        "http://127.0.0.1:33989/oauth/callback",
    )


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        pytest.param({"resource": None}, "resource=None", id="no-resource"),
        pytest.param({"resource": "http://127.0.0.1:8000/"}, "resource=", id="another-resource"),
        pytest.param({"scope": "openid"}, "lacks kpi:read", id="no-kpi-read"),
        pytest.param({"code_challenge_method": "plain"}, "code_challenge_method", id="plain-pkce"),
        pytest.param({"redirect_uri": "https://example.com/cb"}, "not the loopback listener", id="remote-redirect"),
        pytest.param({"client_id": None}, "no code_challenge or client_id", id="no-client-id"),
    ],
)
def test_a_request_that_would_not_get_a_token_for_the_service_is_refused(
    changes: dict[str, str | None], problem: str
) -> None:
    with pytest.raises(StepFailed, match=problem):
        check_authorization_url(authorization_url(**changes), issuer=ISSUER, resource=RESOURCE)


def test_a_request_to_another_provider_is_refused() -> None:
    with pytest.raises(StepFailed, match="not at the provider"):
        check_authorization_url(authorization_url(), issuer="http://127.0.0.1:9999", resource=RESOURCE)
