"""The dashboard's static side: served by the app itself, under a strict CSP, fingerprinted, cached and gzipped.

What the page does in a browser is tested in tests/browser/.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.dashboard import ASSETS, CONTENT_SECURITY_POLICY, LAZY_ASSETS, load_dashboard, mount_dashboard
from api.main import create_app
from shared.settings import Settings
from shared.ui import STATIC_DIR

ASSET_URL = re.compile(r'(?:src|href)="(/dashboard/assets/[^"]+)"')


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = FastAPI()
    mount_dashboard(app)
    with TestClient(app) as client:
        yield client


def asset_urls(client: TestClient) -> list[str]:
    return ASSET_URL.findall(client.get("/dashboard").text)


def test_the_page_is_served_with_a_strict_csp_and_revalidated(client: TestClient) -> None:
    response = client.get("/dashboard")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    csp = response.headers["content-security-policy"]
    assert csp == CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in csp and "style-src 'self';" in csp and "unsafe" not in csp
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "<script>" not in response.text and "style=" not in response.text and "<style" not in response.text


def test_the_page_loads_every_asset_by_a_fingerprinted_url(client: TestClient) -> None:
    urls = asset_urls(client)
    assert len(urls) == len(ASSETS)
    for url in urls:
        assert re.search(r"\.[0-9a-f]{12}\.(js|css)$", url), url
        response = client.get(url)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_assets_are_gzipped_when_the_client_accepts_it_and_identical_once_unzipped(client: TestClient) -> None:
    for url in asset_urls(client):
        plain = client.get(url, headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        with client.stream("GET", url, headers={"Accept-Encoding": "gzip"}) as zipped:
            body = b"".join(zipped.iter_raw())
        assert zipped.headers["content-encoding"] == "gzip"
        assert zipped.headers["vary"] == "Accept-Encoding"
        assert gzip.decompress(body) == plain.content
        assert len(body) == int(zipped.headers["content-length"]) < len(plain.content)


def test_a_changed_asset_gets_a_new_url_and_an_unknown_one_is_404(client: TestClient) -> None:
    dashboard = load_dashboard()
    assert set(dashboard.urls) == set(ASSETS + LAZY_ASSETS)
    assert client.get("/dashboard/assets/app.000000000000.js").status_code == 404
    assert client.get("/dashboard/assets/..%2Findex.html").status_code == 404


def test_a_revalidation_with_the_etag_is_answered_304(client: TestClient) -> None:
    etag = client.get("/dashboard").headers["etag"]
    response = client.get("/dashboard", headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.content == b""


def test_the_root_redirects_to_the_dashboard(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/dashboard"


def test_the_vendored_chart_library_ships_with_its_license() -> None:
    license_text = (STATIC_DIR / "uPlot.LICENSE").read_text(encoding="utf-8")
    assert "MIT License" in license_text and "Leon Sorokin" in license_text
    assert (
        (STATIC_DIR / "uPlot.iife.min.js")
        .read_text(encoding="utf-8")
        .startswith("/*! https://github.com/leeoniya/uPlot")
    )


def test_the_bundle_a_first_visit_loads_stays_small() -> None:
    dashboard = load_dashboard()
    assert dashboard.bundle_bytes(gzipped=True) < 60_000
    assert dashboard.bundle_bytes(gzipped=True) < dashboard.bundle_bytes(gzipped=False) / 2


def test_the_service_app_serves_the_dashboard_beside_the_api(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(KPI_SANDBOX=True))
    client = TestClient(app)  # no lifespan: the dashboard needs no runtime
    response = client.get("/dashboard")
    assert response.status_code == 200
    assert response.headers["x-kpi-data-source"] == "sandbox"
    assert "/dashboard" not in app.openapi()["paths"]
