"""The dashboard signs in through a real OpenID Connect provider, in a real browser.

panva's `oidc-provider` runs on loopback (tests/oidc/) with the dashboard's public client registered; the service
is configured with its issuer and client id. The browser goes to the provider's own login and consent pages and
comes back with an authorization code (PKCE), which the page exchanges for an access token for this service (the
`resource`); the panels load with it. Expiry is reached with the browser's clock (Playwright's clock, fast-forwarded:
no sleeping), renewal uses the provider's refresh token, and sign-out ends the session at the provider.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import jwt
import pytest

from shared.sandbox import SandboxServer
from shared.settings import Settings
from tests.api.conftest import build_settings
from tests.oidc.support import OidcProvider, require_node, running_provider

from .support import READY_TIMEOUT_MS, LiveService, Visit, live_service, require_browser
from .test_dashboard import axe_violations

require_browser()
require_node()

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Route

ACCESS_TOKEN_TTL = 600  # seconds; the page renews 60 s before expiry (oidc-client-ts's default)
SCOPES = ("openid", "kpi:read", "offline_access")
USER_KEY_PREFIX = "oidc.user:"
REFUSED = '{"type":"about:blank","title":"Unauthorized","status":401,"detail":"audience not accepted"}'
"""A 401 problem, as the service answers a token it does not accept."""


@dataclass(frozen=True)
class SignInService:
    """The service on loopback, configured with the provider's issuer and the dashboard's client id."""

    service: LiveService
    provider: OidcProvider

    @property
    def dashboard(self) -> str:
        return self.service.base_url + "/dashboard"

    @property
    def resource(self) -> str:
        return self.service.base_url + "/mcp"


@pytest.fixture(scope="module")
def sso(sandbox_server: SandboxServer) -> Iterator[SignInService]:
    with ExitStack() as stack:
        providers: list[OidcProvider] = []

        def settings(base_url: str) -> Settings:
            provider = stack.enter_context(
                running_provider(
                    dashboard_redirect_uris=[base_url + "/dashboard/"],
                    access_token_ttl=ACCESS_TOKEN_TTL,
                    refresh_tokens=True,
                )
            )
            providers.append(provider)
            return build_settings(
                sandbox_server.base_url,
                KPI_SANDBOX=True,
                KPI_SANDBOX_URL=sandbox_server.base_url,
                KPI_PUBLIC_URL=base_url,
                KPI_JWT_ISSUER=provider.issuer,
                KPI_OIDC_CLIENT_ID=provider.dashboard_client_id,
                KPI_OIDC_SCOPES=",".join(SCOPES),
                # The JWKS by the issuer's discovery; the audience by default KPI_PUBLIC_URL + /mcp.
            )

        # The service keeps real time: the provider's tokens carry real `iat`/`exp`.
        service = stack.enter_context(live_service(settings))
        yield SignInService(service, providers[0])


class SignInVisit(Visit):
    """A dashboard visit that also goes to the provider's pages: only the dashboard's own errors are kept."""

    def on_console(self, message: ConsoleMessage) -> None:
        # The dashboard's errors only (the provider's development pages ask for web fonts, which are blocked here).
        if message.type == "error" and self.page.url.startswith(self.origin + "/"):
            self.console_errors.append(message.text)

    def on_page_error(self, error: str) -> None:
        if self.page.url.startswith(self.origin + "/"):
            self.console_errors.append(error)

    def api_calls(self) -> list[Request]:
        return [r for r in self.requests if "/api/kpi/" in r.url]

    def wait_signed_out(self, reason: str) -> None:
        self.page.wait_for_selector(f"#signin-reason[data-reason={reason}]", timeout=READY_TIMEOUT_MS)
        self.page.wait_for_selector("#screen-signin:not([hidden])", timeout=READY_TIMEOUT_MS)

    def stored_user(self) -> dict[str, Any] | None:
        """The session oidc-client-ts keeps in this tab's sessionStorage (None when signed out)."""
        return self.page.evaluate(
            f"""() => {{
              const key = Object.keys(sessionStorage).find(k => k.startsWith({USER_KEY_PREFIX!r}));
              return key ? JSON.parse(sessionStorage.getItem(key)) : null;
            }}"""
        )


@contextmanager
def visit(
    browser: Browser, sso: SignInService, *, fake_clock: bool = False, also: tuple[str, ...] = ()
) -> Generator[SignInVisit]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US", timezone_id="UTC")
    page = context.new_page()
    if fake_clock:
        page.clock.install()  # starts at the real time; moves only when the test fast-forwards it
    seen = SignInVisit(page, sso.service.base_url)
    page.on("console", seen.on_console)
    page.on("pageerror", lambda error: seen.on_page_error(str(error)))
    page.on("request", lambda request: seen.requests.append(request))
    # Only the service and the provider answer: nothing else may be reached.
    origins = (sso.service.base_url, sso.provider.issuer, *also)
    allowed = "|".join(re.escape(origin) + "/" for origin in origins) + "|data:"
    page.route(re.compile(r"^(?!" + allowed + r").*"), lambda route: route.abort())
    try:
        yield seen
    finally:
        context.close()


def sign_in_with_the_provider(
    seen: SignInVisit, sso: SignInService, login: str = "ann", start: str | None = None
) -> None:
    """From the dashboard's sign-in screen (at `start`, by default the dashboard at KPI_PUBLIC_URL) through the
    provider's login and consent pages, back to the panels at KPI_PUBLIC_URL."""
    page = seen.page
    page.goto(start or sso.dashboard)
    page.wait_for_selector("#signin-idp-button:visible", timeout=READY_TIMEOUT_MS)
    page.click("#signin-idp-button")
    page.wait_for_url(sso.provider.issuer + "/**", timeout=READY_TIMEOUT_MS)
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password")
    page.click("button[type=submit]")
    page.wait_for_selector("button[type=submit]:has-text('Continue')", timeout=READY_TIMEOUT_MS)
    page.click("button[type=submit]:has-text('Continue')")
    page.wait_for_url(sso.dashboard + "/", timeout=READY_TIMEOUT_MS)
    seen.wait_all_ready()


def revoke_refresh_token(sso: SignInService, user: dict[str, Any]) -> None:
    """What the company does at the provider to end a session: revoke its refresh token."""
    response = httpx2.post(
        sso.provider.issuer + "/token/revocation",
        data={"token": user["refresh_token"], "client_id": sso.provider.dashboard_client_id},
    )
    assert response.status_code == 200


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def test_the_dashboard_signs_in_at_the_provider_and_loads_the_figures_with_the_providers_token(
    browser: Browser, sso: SignInService
) -> None:
    with visit(browser, sso) as seen:
        sign_in_with_the_provider(seen, sso)
        page = seen.page
        user = seen.stored_user()
        assert user is not None
        access_token = user["access_token"]
        token_claims = claims(access_token)
        assert token_claims["iss"] == sso.provider.issuer
        assert token_claims["aud"] == sso.resource  # RFC 8707: a token for this service, not for the provider
        assert "kpi:read" in token_claims["scope"].split()
        assert user["refresh_token"]
        # Every panel called the API with the provider's token, and only as a bearer header.
        calls = seen.api_calls()
        assert len(calls) == 4
        assert all(call.headers["authorization"] == f"Bearer {access_token}" for call in calls)
        # The code came back in the fragment (never sent to a server) and left the address bar.
        callback = next(r for r in seen.requests if r.url.startswith(sso.dashboard + "/") and r.is_navigation_request())
        assert "code=" not in callback.url
        assert urlsplit(page.url).query == "" and urlsplit(page.url).fragment == ""
        # The token was asked for with PKCE and for this service's resource.
        authorize = next(r for r in seen.requests if r.url.startswith(sso.provider.issuer + "/auth?"))
        query = urlsplit(authorize.url).query
        assert "code_challenge_method=S256" in query and "response_mode=fragment" in query
        assert parse_qs(query)["resource"] == [sso.resource]
        token_request = next(r for r in seen.requests if r.url == sso.provider.issuer + "/token")
        assert "code_verifier=" in (token_request.post_data or "")
        assert parse_qs(token_request.post_data or "")["resource"] == [sso.resource]
        # Tokens stay in this tab (sessionStorage), never in localStorage; the pasted-token key is unused.
        assert page.evaluate("localStorage.length") == 0
        assert page.evaluate("sessionStorage.getItem('loop-kpi.token')") is None
        assert page.is_visible("#sign-out")
        assert seen.console_errors == []
        # A reload keeps the session: the panels load again without the provider.
        before = len(seen.requests)
        page.reload()
        seen.wait_all_ready()
        assert not any(r.url.startswith(sso.provider.issuer) for r in seen.requests[before:])


def test_sign_out_ends_the_session_at_the_provider_and_returns_to_the_signed_out_screen(
    browser: Browser, sso: SignInService
) -> None:
    with visit(browser, sso) as seen:
        sign_in_with_the_provider(seen, sso)
        page = seen.page
        page.click("#sign-out")
        # RP-initiated logout: the provider's own confirmation page.
        page.wait_for_url(sso.provider.issuer + "/session/end**", timeout=READY_TIMEOUT_MS)
        page.click("button[name=logout][value=yes]")
        page.wait_for_url(sso.dashboard + "/", timeout=READY_TIMEOUT_MS)
        seen.wait_signed_out("signed-out")
        assert seen.stored_user() is None
        assert page.is_hidden("#sign-out")
        assert urlsplit(page.url).query == ""
        # The refresh token was revoked on the way out, and the provider's session is over: signing in again asks
        # for the login.
        assert any(r.url == sso.provider.issuer + "/token/revocation" for r in seen.requests)
        page.click("#signin-idp-button")
        page.wait_for_selector("input[name=login]", timeout=READY_TIMEOUT_MS)
        assert seen.console_errors == []


def test_before_the_access_token_expires_the_page_renews_it_with_the_refresh_token(
    browser: Browser, sso: SignInService
) -> None:
    with visit(browser, sso, fake_clock=True) as seen:
        sign_in_with_the_provider(seen, sso)
        page = seen.page
        first = seen.stored_user()
        assert first is not None
        # Past the renewal point (60 s before expiry), not past expiry.
        page.clock.fast_forward((ACCESS_TOKEN_TTL - 50) * 1000)
        page.wait_for_function(
            f"""() => {{
              const key = Object.keys(sessionStorage).find(k => k.startsWith({USER_KEY_PREFIX!r}));
              return key && JSON.parse(sessionStorage.getItem(key)).access_token !== {first["access_token"]!r};
            }}""",
            timeout=READY_TIMEOUT_MS,
        )
        renewed = seen.stored_user()
        assert renewed is not None
        assert claims(renewed["access_token"])["aud"] == sso.resource
        refresh = [r for r in seen.requests if r.url == sso.provider.issuer + "/token"][-1]
        assert "grant_type=refresh_token" in (refresh.post_data or "")
        # Past the first token's expiry the page is still signed in, and calls the API with the new token.
        page.clock.fast_forward(100 * 1000)
        page.fill("#journey-user", "user_00042")
        page.press("#journey-user", "Enter")
        page.wait_for_selector("#panel-journey[data-state=ready]", timeout=READY_TIMEOUT_MS)
        journey = [r for r in seen.api_calls() if "/api/kpi/user/" in r.url][-1]
        assert journey.headers["authorization"] == f"Bearer {renewed['access_token']}"
        assert page.is_visible("#screen-dashboard")
        assert seen.console_errors == []


def test_a_revoked_session_shows_the_signed_out_screen_when_the_access_token_expires(
    browser: Browser, sso: SignInService
) -> None:
    with visit(browser, sso, fake_clock=True) as seen:
        sign_in_with_the_provider(seen, sso)
        user = seen.stored_user()
        assert user is not None
        # The company revokes the session's refresh token at the provider.
        revoke_refresh_token(sso, user)
        seen.page.clock.fast_forward((ACCESS_TOKEN_TTL + 5) * 1000)
        seen.wait_signed_out("expired")
        assert seen.page.is_hidden("#screen-dashboard")
        assert seen.stored_user() is None
        assert seen.page.is_visible("#signin-idp-button")


def test_the_sign_in_screen_offers_the_company_account_first_and_still_the_paste_a_token_form(
    browser: Browser, sso: SignInService
) -> None:
    with visit(browser, sso) as seen:
        page = seen.page
        page.goto(sso.dashboard)
        page.wait_for_selector("#signin-idp-button:visible", timeout=READY_TIMEOUT_MS)
        assert page.is_visible("#signin-form")
        page.keyboard.press("Tab")  # skip link
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "signin-idp-button"
        assert axe_violations(page) == []
        assert not seen.api_calls()
        assert seen.console_errors == []


def test_a_sign_in_the_provider_did_not_complete_gets_the_sign_in_screen_with_the_reason(
    browser: Browser, sso: SignInService
) -> None:
    with visit(browser, sso) as seen:
        # What the provider sends back when the user refuses consent, here for a sign-in this tab never started.
        seen.page.goto(sso.dashboard + "/#error=access_denied&error_description=End-User+aborted&state=unknown")
        seen.wait_signed_out("failed")
        assert seen.stored_user() is None
        assert urlsplit(seen.page.url).fragment == ""
        assert not seen.api_calls()


def spoil_the_kept_access_token(page: Page) -> None:
    """As if the provider had rotated its keys: the kept token no longer verifies (its signature is altered)."""
    page.evaluate(
        f"""() => {{
          const key = Object.keys(sessionStorage).find(k => k.startsWith({USER_KEY_PREFIX!r}));
          const user = JSON.parse(sessionStorage.getItem(key));
          user.access_token = user.access_token.slice(0, -4) + "AAAA";
          sessionStorage.setItem(key, JSON.stringify(user));
        }}"""
    )


def refresh_grants(seen: SignInVisit, sso: SignInService) -> list[Request]:
    return [
        r for r in seen.requests if r.url == sso.provider.issuer + "/token" and "refresh_token" in (r.post_data or "")
    ]


def test_a_provider_token_the_service_refuses_is_renewed_once_and_the_dashboard_carries_on(
    browser: Browser, sso: SignInService
) -> None:
    with visit(browser, sso) as seen:
        sign_in_with_the_provider(seen, sso)
        page = seen.page
        spoil_the_kept_access_token(page)
        spoiled = seen.stored_user()
        assert spoiled is not None
        page.reload()
        seen.wait_all_ready()
        assert len(refresh_grants(seen, sso)) == 1  # one renewal for the four panels refused together
        renewed = seen.stored_user()
        assert renewed is not None and renewed["access_token"] != spoiled["access_token"]
        last = seen.api_calls()[-1]
        assert last.headers["authorization"] == f"Bearer {renewed['access_token']}"
        assert page.is_visible("#screen-dashboard")
        assert all("401" in error for error in seen.console_errors)  # only the refused calls


def test_a_refused_provider_token_without_a_usable_refresh_token_ends_the_session(
    browser: Browser, sso: SignInService
) -> None:
    with visit(browser, sso) as seen:
        sign_in_with_the_provider(seen, sso)
        page = seen.page
        user = seen.stored_user()
        assert user is not None
        revoke_refresh_token(sso, user)
        spoil_the_kept_access_token(page)
        page.reload()
        seen.wait_signed_out("expired")
        assert page.inner_text("#signin-reason").endswith("Sign in again. (invalid signature)")
        assert len(refresh_grants(seen, sso)) == 1
        assert seen.stored_user() is None
        assert page.evaluate("sessionStorage.getItem('loop-kpi.token')") is None


def test_a_renewed_token_refused_again_ends_the_session_after_one_renewal(browser: Browser, sso: SignInService) -> None:
    with visit(browser, sso) as seen:
        sign_in_with_the_provider(seen, sso)
        page = seen.page
        # From here the service refuses every token (as if its audience setting had changed under the session).
        page.route(
            re.compile(re.escape(sso.service.base_url) + "/api/kpi/.*"),
            lambda route: route.fulfill(status=401, body=REFUSED, content_type="application/problem+json"),
        )
        page.reload()
        seen.wait_signed_out("expired")
        assert page.inner_text("#signin-reason").endswith("(audience not accepted)")
        assert len(refresh_grants(seen, sso)) == 1
        assert seen.stored_user() is None


def test_a_token_renewed_ahead_of_expiry_gets_its_own_renewal_after_a_refusal(
    browser: Browser, sso: SignInService
) -> None:
    with visit(browser, sso, fake_clock=True) as seen:
        sign_in_with_the_provider(seen, sso)
        page = seen.page
        token_endpoint = sso.provider.issuer + "/token"
        refusals = [0]  # how many of the next API calls the service refuses

        def maybe_refuse(route: Route) -> None:
            if refusals[0] > 0:
                refusals[0] -= 1
                route.fulfill(status=401, body=REFUSED, content_type="application/problem+json")
            else:
                route.continue_()

        page.route(re.compile(re.escape(sso.service.base_url) + "/api/kpi/.*"), maybe_refuse)

        def refused_once_then_renewed() -> None:
            """The journey call is refused once; the page renews and loads the panels again with the new token."""
            refusals[0] = 1
            with (
                page.expect_response(
                    lambda r: "/api/kpi/overview" in r.url and r.status == 200, timeout=READY_TIMEOUT_MS
                ),
                page.expect_request(lambda r: r.url == token_endpoint, timeout=READY_TIMEOUT_MS),
            ):
                page.fill("#journey-user", "user_00042")
                page.press("#journey-user", "Enter")
            seen.wait_all_ready()

        refused_once_then_renewed()
        assert len(refresh_grants(seen, sso)) == 1
        # Past the renewal point: the page renews ahead of expiry (a new token lineage) ...
        with page.expect_request(lambda r: r.url == token_endpoint, timeout=READY_TIMEOUT_MS):
            page.clock.fast_forward((ACCESS_TOKEN_TTL - 50) * 1000)
        assert len(refresh_grants(seen, sso)) == 2
        # ... so a refusal of that token gets a renewal again, not the signed-out screen.
        refused_once_then_renewed()
        assert len(refresh_grants(seen, sso)) == 3
        assert page.is_visible("#screen-dashboard")


def test_a_sign_in_started_at_another_address_of_the_service_completes_at_the_registered_one(
    browser: Browser, sso: SignInService
) -> None:
    # The provider knows the dashboard at KPI_PUBLIC_URL (127.0.0.1); the user typed localhost.
    elsewhere = sso.service.base_url.replace("127.0.0.1", "localhost")
    with visit(browser, sso, also=(elsewhere,)) as seen:
        page = seen.page
        sign_in_with_the_provider(seen, sso, start=elsewhere + "/dashboard/")
        assert page.url == sso.dashboard + "/"
        assert any(r.url.startswith(elsewhere + "/dashboard/sign-in.json") for r in seen.requests)
        user = seen.stored_user()
        assert user is not None and claims(user["access_token"])["aud"] == sso.resource
        assert seen.console_errors == []
