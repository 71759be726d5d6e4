"""The OpenAPI document describes the five KPI operations and their problem responses, and every `$ref` resolves."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient

from api.openapi import Problem

from .conftest import PROBLEM_JSON, ROUTE_IDS, ROUTES, Route

KPI_OPERATIONS = {"kpi_overview", "kpi_mau", "kpi_conversion", "kpi_user_journey", "kpi_refund_analysis"}
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
ALWAYS_DOCUMENTED = (401, 403, 422, 502, 503, 504)


@pytest.fixture(scope="module")
def spec(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _operations(spec: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    found: dict[str, tuple[str, str, dict[str, Any]]] = {}
    paths: dict[str, dict[str, dict[str, Any]]] = spec["paths"]
    for path, item in paths.items():
        for method, operation in item.items():
            found[str(operation.get("operationId"))] = (method.upper(), path, operation)
    return found


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        mapping = cast("dict[str, object]", node)
        for key, value in mapping.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in cast("list[object]", node):
            yield from _refs(item)


def _resolve(spec: dict[str, Any], ref: str) -> object:
    assert ref.startswith("#/"), ref
    node: Any = spec
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"unresolvable {ref}"
        node = cast("dict[str, Any]", node)[part]
    return cast("object", node)


def test_the_kpi_paths_carry_exactly_the_five_operation_ids(spec: dict[str, Any]) -> None:
    operations = _operations(spec)

    kpi = {op_id for op_id, (_, path, _) in operations.items() if path.startswith("/api/kpi/")}
    assert kpi == KPI_OPERATIONS
    assert set(operations) - KPI_OPERATIONS == {
        op_id for op_id, (_, path, _) in operations.items() if path in ("/healthz", "/readyz")
    }


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_each_operation_is_served_where_the_document_says(spec: dict[str, Any], route: Route) -> None:
    method, path, _ = _operations(spec)[route.operation_id]

    assert method == route.method
    assert route.path.startswith(path.split("{")[0])


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_each_operation_documents_its_problem_responses_as_problem_json(spec: dict[str, Any], route: Route) -> None:
    _, _, operation = _operations(spec)[route.operation_id]
    responses: dict[str, dict[str, Any]] = operation["responses"]

    for status in ALWAYS_DOCUMENTED:
        content: dict[str, Any] = responses[str(status)]["content"]
        assert content[PROBLEM_JSON]["schema"] == PROBLEM_REF
        assert responses[str(status)]["description"]
    assert "application/json" in responses["200"]["content"]


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_problem_responses_document_only_problem_json(spec: dict[str, Any], route: Route) -> None:
    _, _, operation = _operations(spec)[route.operation_id]
    responses: dict[str, dict[str, Any]] = operation["responses"]

    for status in ALWAYS_DOCUMENTED:
        assert set(responses[str(status)]["content"]) == {PROBLEM_JSON}


def test_the_user_journey_also_documents_404_and_refunds_413(spec: dict[str, Any]) -> None:
    operations = _operations(spec)

    assert "404" in operations["kpi_user_journey"][2]["responses"]
    assert "413" in operations["kpi_refund_analysis"][2]["responses"]


def test_the_problem_schema_resolves_and_matches_the_model(spec: dict[str, Any]) -> None:
    schema = _resolve(spec, PROBLEM_REF["$ref"])

    assert isinstance(schema, dict)
    problem = cast("dict[str, Any]", schema)
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert set(problem["properties"]) == set(Problem.model_fields)


def test_every_ref_in_the_document_resolves(spec: dict[str, Any]) -> None:
    refs = set(_refs(spec))

    assert PROBLEM_REF["$ref"] in refs
    for ref in refs:
        _resolve(spec, ref)


def test_conversion_documents_steps_as_a_repeatable_query_parameter(spec: dict[str, Any]) -> None:
    _, _, operation = _operations(spec)["kpi_conversion"]
    parameters: list[dict[str, Any]] = operation["parameters"]

    steps = next(p for p in parameters if p["name"] == "steps")
    assert steps["in"] == "query"
    variants: list[dict[str, Any]] = steps["schema"].get("anyOf", [steps["schema"]])
    assert any(v.get("type") == "array" and v.get("maxItems") == 10 for v in variants)


def test_refund_analysis_takes_a_json_body(spec: dict[str, Any]) -> None:
    _, _, operation = _operations(spec)["kpi_refund_analysis"]

    body: dict[str, Any] = operation["requestBody"]
    assert body["required"] is True
    schema = _resolve(spec, body["content"]["application/json"]["schema"]["$ref"])
    assert isinstance(schema, dict)
    assert set(cast("dict[str, Any]", schema)["required"]) == {"start_date", "end_date"}


def test_docs_serve_html_without_auth(client: TestClient) -> None:
    response = client.get("/docs")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in response.text


def test_the_document_needs_no_auth_and_hides_mcp(client: TestClient, spec: dict[str, Any]) -> None:
    assert client.get("/openapi.json").status_code == 200
    assert "/mcp" not in spec["paths"]
