"""`/docs` and `/redoc` work offline: every asset they load is served by the app itself. The OpenAPI document
gives optional parameters an input box (no `T | null`) and documents the freshness and `Retry-After` headers.
`/` points at the documentation."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from .conftest import ROUTE_IDS, ROUTES, Route, call, reader

# Attributes and script settings that make a browser load something.
_URL_IN_PAGE = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|\burl:\s*["']([^"']+)["']""")


def _page_urls(html: str) -> list[str]:
    return [a or b for a, b in _URL_IN_PAGE.findall(html)]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_documentation_pages_load_only_same_origin_assets_and_each_is_served(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text

    urls = _page_urls(html)
    assert len(urls) >= 3, urls  # script, favicon, and the OpenAPI document (plus the stylesheet for Swagger UI)
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
    scripts = [u for u in urls if u.endswith(".js")]
    assert scripts
    for script in scripts:
        assert "javascript" in client.get(script).headers["content-type"]


@pytest.fixture(scope="module")
def spec(client: TestClient) -> dict[str, Any]:
    document: dict[str, Any] = client.get("/openapi.json").json()
    return document


def _operation(spec: dict[str, Any], route: Route) -> dict[str, Any]:
    for path, item in spec["paths"].items():
        for operation in item.values():
            if operation.get("operationId") == route.operation_id:
                assert route.path.startswith(str(path).split("{")[0])
                found: dict[str, Any] = operation
                return found
    raise AssertionError(route.operation_id)


def test_the_steps_parameter_is_a_plain_list_of_strings(spec: dict[str, Any]) -> None:
    conversion = _operation(spec, next(r for r in ROUTES if r.operation_id == "kpi_conversion"))
    parameters = {p["name"]: p for p in conversion["parameters"]}

    steps = parameters["steps"]["schema"]
    assert steps["type"] == "array" and steps["items"]["type"] == "string"
    assert "anyOf" not in steps
    assert parameters["start_date"]["schema"] == {**parameters["start_date"]["schema"], "type": "string"}
    assert parameters["start_date"]["schema"]["format"] == "date"
    assert not any("anyOf" in p["schema"] for p in conversion["parameters"])


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_each_operation_documents_its_freshness_and_retry_after_headers(spec: dict[str, Any], route: Route) -> None:
    responses: dict[str, dict[str, Any]] = _operation(spec, route)["responses"]

    assert {"Age", "Cache-Control", "X-KPI-Cache"} <= set(responses["200"]["headers"])
    assert responses["200"]["headers"]["X-KPI-Cache"]["schema"]["enum"] == ["hit", "miss"]
    assert set(responses["503"]["headers"]) == {"Retry-After"}


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_the_documented_freshness_headers_are_the_ones_sent(client: TestClient, route: Route) -> None:

    response = call(client, route, headers=reader())

    assert response.status_code == 200
    assert {"age", "cache-control", "x-kpi-cache"} <= set(response.headers)
