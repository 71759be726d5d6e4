"""The KPI dashboard: a small single-page app served by the same app at `/dashboard` (and linked from `/`).

The page is static; it calls the same `/api/kpi/*` endpoints with the user's bearer token, so it needs no server
side of its own and no cookie. Everything it loads comes from this origin (the chart library is vendored beside
it), under a strict Content-Security-Policy with no inline script or style. Assets are fingerprinted by content
(`app.<sha>.js`), cached for a year as immutable, and served gzipped from memory; the page itself is revalidated
(`no-cache` + ETag) so a new release is picked up at once.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from shared.ui import STATIC_DIR

DASHBOARD_PATH = "/dashboard"
ASSETS_PATH = DASHBOARD_PATH + "/assets"
# The files the page loads, in the order it loads them; `{{name}}` in index.html becomes the fingerprinted URL.
ASSETS: tuple[str, ...] = ("uPlot.min.css", "app.css", "uPlot.iife.min.js", "kpi-render.js", "app.js")
MEDIA_TYPES: Mapping[str, str] = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Mapping[str, str] = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}
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

    def response(self, request: Request, cache_control: str) -> Response:
        headers = {**SECURITY_HEADERS, "cache-control": cache_control, "etag": self.etag, "vary": "Accept-Encoding"}
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

    def bundle_bytes(self, *, gzipped: bool) -> int:
        """What a first visit transfers: the page and every asset (the figure reported in the README)."""
        files = [self.index, *self.assets.values()]
        return sum(len(f.gzipped if gzipped and f.gzipped is not None else f.body) for f in files)


def fingerprinted(name: str, body: bytes) -> str:
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}.{hashlib.sha256(body).hexdigest()[:12]}{dot}{suffix}"


def load_dashboard(directory: Path = STATIC_DIR) -> Dashboard:
    """Read the files once; rewrite the page's `{{name}}` placeholders to the fingerprinted asset URLs."""
    assets: dict[str, StaticFile] = {}
    urls: dict[str, str] = {}
    for name in ASSETS:
        body = (directory / name).read_bytes()
        served = fingerprinted(name, body)
        assets[served] = StaticFile.of(body, MEDIA_TYPES[Path(name).suffix])
        urls[name] = f"{ASSETS_PATH}/{served}"
    page = (directory / "index.html").read_text(encoding="utf-8")
    for name, url in urls.items():
        page = page.replace("{{" + name + "}}", url)
    if "{{" in page:
        raise ValueError("index.html names an asset that is not in ASSETS")
    return Dashboard(StaticFile.of(page.encode(), MEDIA_TYPES[".html"]), assets, urls)


def mount_dashboard(app: FastAPI) -> Dashboard:
    """Serve the dashboard at `/dashboard`, its assets under `/dashboard/assets/`, and redirect `/` to it."""
    dashboard = load_dashboard()

    async def read_dashboard(request: Request) -> Response:
        return dashboard.index.response(request, REVALIDATE)

    async def read_asset(request: Request) -> Response:
        asset = dashboard.assets.get(request.path_params["name"])
        if asset is None:
            return Response("Not found", status_code=404, media_type="text/plain", headers=dict(SECURITY_HEADERS))
        return asset.response(request, IMMUTABLE)

    async def read_root(request: Request) -> Response:
        return RedirectResponse(DASHBOARD_PATH, status_code=307)

    app.add_route("/", read_root, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_route(DASHBOARD_PATH, read_dashboard, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_route(DASHBOARD_PATH + "/", read_dashboard, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_route(ASSETS_PATH + "/{name}", read_asset, methods=["GET", "HEAD"], include_in_schema=False)
    return dashboard
