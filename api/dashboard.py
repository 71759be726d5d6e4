"""The KPI dashboard: a small single-page app served by the same app at `/dashboard` (and linked from `/`).

The page is static; it calls the same `/api/kpi/*` endpoints with the user's bearer token, so it needs no server
side of its own and no cookie. Everything it loads comes from this origin (the chart library is vendored beside
it), under a strict Content-Security-Policy with no inline script or style. Assets are fingerprinted by content
(`app.<sha>.js`), cached for a year as immutable, and served gzipped from memory; the page itself is revalidated
(`no-cache` + ETag) so a new release is picked up at once.

With an OpenID Connect issuer and the dashboard's public client id configured, `/dashboard/sign-in.json` tells the
page how to sign in (authorization code + PKCE, in the browser, with the vendored `oidc-client-ts`): the issuer, the
client id, the scopes, the resource (RFC 8707: the audience the service accepts) and the redirect URI. Nothing in it
is secret (a public client has none). The CSP then lets the page reach the issuer's origin (discovery, token,
revocation); the sign-in and sign-out pages are top-level navigations, which the CSP does not restrict.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from shared.auth.challenge import resource_url
from shared.settings import Settings
from shared.ui import STATIC_DIR

DASHBOARD_PATH = "/dashboard"
ASSETS_PATH = DASHBOARD_PATH + "/assets"
# The files the page loads, in the order it loads them; `{{name}}` in index.html becomes the fingerprinted URL.
ASSETS: tuple[str, ...] = ("uPlot.min.css", "app.css", "uPlot.iife.min.js", "kpi-render.js", "app.js")
# Served fingerprinted too, but loaded by app.js only when sign-in through an identity provider is configured.
LAZY_ASSETS: tuple[str, ...] = ("oidc-client-ts.min.js",)
SIGN_IN_CONFIG_PATH = DASHBOARD_PATH + "/sign-in.json"
MEDIA_TYPES: Mapping[str, str] = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}


def content_security_policy(connect_origins: tuple[str, ...] = ()) -> str:
    """The page's policy; `connect_origins` (the identity provider's) join 'self' in connect-src."""
    connect = " ".join(("'self'", *connect_origins))
    return (
        f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src {connect}; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


CONTENT_SECURITY_POLICY = content_security_policy()


def security_headers(csp: str = CONTENT_SECURITY_POLICY) -> Mapping[str, str]:
    return {
        "content-security-policy": csp,
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cross-origin-opener-policy": "same-origin",
    }


SECURITY_HEADERS = security_headers()
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# Below this size gzip's framing costs more than it saves.
MIN_GZIP_BYTES = 512


@dataclass(frozen=True)
class StaticFile:
    """One file held in memory, with its gzipped form and a strong validator."""

    body: bytes
    gzipped: bytes | None
    media_type: str
    etag: str

    @classmethod
    def of(cls, body: bytes, media_type: str) -> StaticFile:
        gzipped = gzip.compress(body, compresslevel=9, mtime=0) if len(body) >= MIN_GZIP_BYTES else None
        return cls(body, gzipped, media_type, f'"{hashlib.sha256(body).hexdigest()[:20]}"')

    def response(self, request: Request, cache_control: str, secure: Mapping[str, str] = SECURITY_HEADERS) -> Response:
        headers = {**secure, "cache-control": cache_control, "etag": self.etag, "vary": "Accept-Encoding"}
        if self.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        body = self.body
        if self.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
            body = self.gzipped
            headers["content-encoding"] = "gzip"
        if request.method == "HEAD":
            headers["content-length"] = str(len(body))
            return Response(status_code=200, headers=headers, media_type=self.media_type)
        return Response(body, headers=headers, media_type=self.media_type)


@dataclass(frozen=True)
class Dashboard:
    """The page and its fingerprinted assets, keyed by the name they are served under."""

    index: StaticFile
    assets: Mapping[str, StaticFile]
    urls: Mapping[str, str]

    def bundle_bytes(self, *, gzipped: bool, lazy: bool = False) -> int:
        """What a first visit transfers: the page and every asset it loads (the figure reported in the README);
        `lazy` adds what signing in through an identity provider loads."""
        names = {self.urls[name].rsplit("/", 1)[1] for name in ASSETS + (LAZY_ASSETS if lazy else ())}
        files = [self.index, *(f for served, f in self.assets.items() if served in names)]
        return sum(len(f.gzipped if gzipped and f.gzipped is not None else f.body) for f in files)


def fingerprinted(name: str, body: bytes) -> str:
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}.{hashlib.sha256(body).hexdigest()[:12]}{dot}{suffix}"


def load_dashboard(directory: Path = STATIC_DIR, *, sign_in: bool = False) -> Dashboard:
    """Read the files once; rewrite the page's `{{name}}` placeholders to the fingerprinted asset URLs, and
    `{{sign-in.json}}` to the sign-in configuration's URL when there is one (empty: the page fetches nothing)."""
    assets: dict[str, StaticFile] = {}
    urls: dict[str, str] = {}
    for name in ASSETS + LAZY_ASSETS:
        body = (directory / name).read_bytes()
        served = fingerprinted(name, body)
        assets[served] = StaticFile.of(body, MEDIA_TYPES[Path(name).suffix])
        urls[name] = f"{ASSETS_PATH}/{served}"
    page = (directory / "index.html").read_text(encoding="utf-8")
    for name, url in urls.items():
        page = page.replace("{{" + name + "}}", url)
    page = page.replace("{{sign-in.json}}", SIGN_IN_CONFIG_PATH if sign_in else "")
    if "{{" in page:
        raise ValueError("index.html names an asset that is not in ASSETS")
    return Dashboard(StaticFile.of(page.encode(), MEDIA_TYPES[".html"]), assets, urls)


def redirect_uri(settings: Settings) -> str:
    """Where the identity provider sends the browser back after sign-in and sign-out (register it there)."""
    return settings.KPI_PUBLIC_URL + DASHBOARD_PATH + "/"


def sign_in_configured(settings: Settings | None) -> bool:
    """Whether the dashboard signs in through an identity provider (an issuer and a public client id are set)."""
    return settings is not None and bool(settings.KPI_JWT_ISSUER and settings.KPI_OIDC_CLIENT_ID)


def sign_in_config(settings: Settings | None, dashboard: Dashboard) -> dict[str, Any] | None:
    """What the page needs to sign in through the identity provider, or None when that is not configured (then the
    page offers only the paste-a-token path). Public by nature: no secret, nothing a public client must hide."""
    if settings is None or not sign_in_configured(settings):
        return None
    return {
        "issuer": settings.KPI_JWT_ISSUER,
        "client_id": settings.KPI_OIDC_CLIENT_ID,
        "scopes": list(settings.KPI_OIDC_SCOPES),
        # RFC 8707: the token must be for this service (the audience it accepts, its MCP resource URL).
        "resource": resource_url(settings),
        "redirect_uri": redirect_uri(settings),
        "post_logout_redirect_uri": redirect_uri(settings),
        "library": dashboard.urls[LAZY_ASSETS[0]],
    }


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def mount_dashboard(app: FastAPI, settings: Settings | None = None) -> Dashboard:
    """Serve the dashboard at `/dashboard`, its assets under `/dashboard/assets/`, its sign-in configuration at
    `/dashboard/sign-in.json` (404 when none), and redirect `/` to it."""
    dashboard = load_dashboard(sign_in=sign_in_configured(settings))
    config = sign_in_config(settings, dashboard)
    secure = security_headers(content_security_policy((origin_of(config["issuer"]),) if config else ()))
    config_file = StaticFile.of(json.dumps(config).encode(), "application/json") if config else None

    async def read_dashboard(request: Request) -> Response:
        return dashboard.index.response(request, REVALIDATE, secure)

    async def read_asset(request: Request) -> Response:
        asset = dashboard.assets.get(request.path_params["name"])
        if asset is None:
            return Response("Not found", status_code=404, media_type="text/plain", headers=dict(secure))
        return asset.response(request, IMMUTABLE, secure)

    async def read_sign_in_config(request: Request) -> Response:
        if config_file is None:
            return Response("Not found", status_code=404, media_type="text/plain", headers=dict(secure))
        return config_file.response(request, REVALIDATE, secure)

    async def read_root(request: Request) -> Response:
        return RedirectResponse(DASHBOARD_PATH, status_code=307)

    app.add_route("/", read_root, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_route(DASHBOARD_PATH, read_dashboard, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_route(DASHBOARD_PATH + "/", read_dashboard, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_route(SIGN_IN_CONFIG_PATH, read_sign_in_config, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_route(ASSETS_PATH + "/{name}", read_asset, methods=["GET", "HEAD"], include_in_schema=False)
    return dashboard
