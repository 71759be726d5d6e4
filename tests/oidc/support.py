"""A real OpenID Connect provider on loopback for the sign-in tests, and a headless sign-in through its pages.

`running_provider()` starts `tests/oidc/provider.mjs` (panva's certified `oidc-provider` on Node, installed with
`npm ci --prefix tests/oidc` when `node_modules` is missing) on a port the OS picks, and yields its issuer URL.
`sign_in()` drives the provider's own login and consent pages with plain HTTP form posts, the way a person's
browser would, and returns the callback URL carrying the authorization code. See tests/oidc/README.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import IO
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx2
import pytest

HERE = Path(__file__).resolve().parent
LAUNCHER = HERE / "provider.mjs"
DASHBOARD_CLIENT_ID = "kpi-dashboard"
START_TIMEOUT = 30.0
INSTALL_TIMEOUT = 300.0
SKIP_REASON = "the OpenID Connect provider tests need Node.js 20+ and npm (apt-get install nodejs npm)"


def node_missing() -> bool:
    return shutil.which("node") is None or shutil.which("npm") is None


def require_node() -> None:
    """Skip the calling test module when Node.js cannot run the provider (one reason, one summary line)."""
    if node_missing():
        pytest.skip(SKIP_REASON, allow_module_level=True)


def ensure_installed() -> None:
    """`npm ci --prefix tests/oidc` (the versions pinned in package-lock.json) unless node_modules is there."""
    if (HERE / "node_modules" / "oidc-provider" / "package.json").is_file():
        return
    npm = shutil.which("npm")
    assert npm is not None, SKIP_REASON
    subprocess.run(
        [npm, "ci", "--prefix", str(HERE), "--no-audit", "--no-fund", "--loglevel=error"],
        check=True,
        timeout=INSTALL_TIMEOUT,
        stdout=subprocess.DEVNULL,
    )


@dataclass(frozen=True)
class OidcProvider:
    """A running provider: its issuer URL (also its base URL) and the pre-registered dashboard client's id."""

    issuer: str
    dashboard_client_id: str = DASHBOARD_CLIENT_ID

    @property
    def discovery_url(self) -> str:
        return self.issuer + "/.well-known/openid-configuration"


@contextmanager
def running_provider(
    *,
    dashboard_redirect_uris: Sequence[str] = (),
    default_resource: str | None = None,
    access_token_ttl: int = 600,
    refresh_tokens: bool = False,
) -> Generator[OidcProvider]:
    """Start the provider on 127.0.0.1 (port chosen by the OS) and stop it on exit.

    `dashboard_redirect_uris`: pre-register the public dashboard client (`kpi-dashboard`) with these redirect URIs.
    `default_resource`: the audience of access tokens when a client names no `resource`.
    `refresh_tokens`: issue refresh tokens to clients that ask for `offline_access`.
    """
    ensure_installed()
    node = shutil.which("node")
    assert node is not None, SKIP_REASON
    env = {k: v for k, v in os.environ.items() if not k.startswith("OIDC_")} | {
        "OIDC_DASHBOARD_CLIENT_ID": DASHBOARD_CLIENT_ID,
        "OIDC_DASHBOARD_REDIRECT_URIS": ",".join(dashboard_redirect_uris),
        "OIDC_ACCESS_TOKEN_TTL": str(access_token_ttl),
        "OIDC_REFRESH_TOKENS": "1" if refresh_tokens else "0",
        "DEBUG": "",
    }
    if default_resource:
        env["OIDC_DEFAULT_RESOURCE"] = default_resource
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            [node, str(LAUNCHER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=HERE
        )
        try:
            yield OidcProvider(issuer=_read_issuer(process, stderr))
        finally:
            assert process.stdin is not None
            process.stdin.close()  # the launcher exits when stdin closes; terminate() in case it does not
            process.terminate()
            process.wait(timeout=10)
            assert process.stdout is not None
            process.stdout.close()


def _read_issuer(process: subprocess.Popen[bytes], stderr: IO[bytes]) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([process.stdout], [], [], max(remaining, 0))
        if ready:
            line = process.stdout.readline()
            if line:
                issuer = json.loads(line)["issuer"]
                assert isinstance(issuer, str)
                return issuer
        if (not ready and remaining <= 0) or process.poll() is not None:
            stderr.seek(0)
            log = stderr.read().decode(errors="replace")
            raise AssertionError(f"the OpenID Connect provider did not start within {START_TIMEOUT:.0f} s:\n{log}")


_FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')
_PROMPT = re.compile(r'name="prompt" value="([a-z]+)"')
_ERROR = re.compile(r"<pre>(.*?)</pre>", re.DOTALL)


async def sign_in(
    http: httpx2.AsyncClient, authorization_url: str, *, redirect_uri: str, login: str, password: str = "secret"
) -> str:
    """Follow `authorization_url` through the provider's login page (any login name becomes the subject) and consent
    page, as a browser would (cookies in `http`), and return the URL the provider sends the browser back to:
    `redirect_uri?code=...&state=...&iss=...` (or `?error=...`). The redirect URI itself is never requested."""
    url = authorization_url
    for _ in range(20):
        response = await http.get(url, follow_redirects=False)
        while response.is_redirect:
            url = urljoin(url, response.headers["location"])
            if url.startswith(redirect_uri):
                return url
            response = await http.get(url, follow_redirects=False)
        html = response.text
        action, prompt = _FORM_ACTION.search(html), _PROMPT.search(html)
        if response.status_code != 200 or action is None or prompt is None:
            error = _ERROR.search(html)
            detail = unescape(error.group(1)) if error else html[:500]
            raise AssertionError(f"the provider answered {response.status_code} at {url}: {detail}")
        form = {"prompt": prompt.group(1)}
        if prompt.group(1) == "login":
            form |= {"login": login, "password": password}
        response = await http.post(urljoin(url, unescape(action.group(1))), data=form, follow_redirects=False)
        assert response.is_redirect, f"the provider answered {response.status_code} to the {form['prompt']} form"
        url = urljoin(url, response.headers["location"])
        if url.startswith(redirect_uri):
            return url
    raise AssertionError("the provider's sign-in did not finish within 20 pages")


CALLBACK = "http://127.0.0.1:9/callback"
"""The redirect URI of the clients `obtain_token` registers (never requested: `sign_in` stops at it)."""


def pkce_pair() -> tuple[str, str]:
    """A PKCE code verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


async def obtain_token(provider: OidcProvider, *, resource: str, scope: str, login: str) -> str:
    """An access token as a client of `provider` gets it: dynamic registration (public client), authorization code
    + PKCE for `resource` and `scope`, signed in as `login`, code exchanged at the token endpoint."""
    async with httpx2.AsyncClient() as http:
        metadata = (await http.get(provider.discovery_url)).json()
        registered = await http.post(
            metadata["registration_endpoint"],
            json={"redirect_uris": [CALLBACK], "token_endpoint_auth_method": "none", "client_name": "loop-kpi tests"},
        )
        assert registered.status_code == 201, registered.text
        client_id = registered.json()["client_id"]
        verifier, challenge = pkce_pair()
        query = {
            "client_id": client_id,
            "response_type": "code",
            "redirect_uri": CALLBACK,
            "scope": scope,
            "state": secrets.token_urlsafe(16),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": resource,
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
            "resource": resource,
        }
        response = await http.post(metadata["token_endpoint"], data=form)
        assert response.status_code == 200, response.text
        token = response.json()["access_token"]
        assert isinstance(token, str)
        return token
