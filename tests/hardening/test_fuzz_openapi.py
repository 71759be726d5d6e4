"""Schemathesis against the app's own OpenAPI document, in-process, with a valid bearer token and real sandbox data.

Every operation gets generated inputs, valid and invalid (`max_examples` per operation, `KPI_FUZZ_EXAMPLES`
to raise it); every answer must be free of 5xx, use a documented status and content type (problems are
`application/problem+json`) and match its documented schema. What it found is pinned down by the tests at the
bottom.

The schema is read from an app built at import time (never started: `app.openapi()` needs no lifespan); the
requests go to a second app, pointed at the session sandbox, whose lifespan a `TestClient` holds open.
(`schemathesis.pytest.from_fixture` would load it lazily, but schemathesis 4.32 reads `request.node._nodeid`,
which pytest 9 no longer has.)
"""

# pyright: reportUnknownMemberType=false, reportUnknownVariableType=false, reportUntypedFunctionDecorator=false
# (schemathesis types its checks and `Case` with a type parameter it leaves unknown, and `parametrize` is untyped)

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis import Case, CheckFunction
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.main import create_app
from shared.clients.amplitude import amplitude_date
from shared.sandbox import SandboxServer, SandboxState
from tests.api.conftest import build_settings
from tests.conftest import clock, token

from .support import ROOMIER_BUDGETS, assert_problem

# CI runs a fixed, reproducible sample; `KPI_FUZZ_EXAMPLES=500` explores further, with fresh random inputs.
EXAMPLES = int(os.environ.get("KPI_FUZZ_EXAMPLES", "25"))
DERANDOMIZE = "KPI_FUZZ_EXAMPLES" not in os.environ
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
schema = schemathesis.openapi.from_dict(create_app(build_settings("http://127.0.0.1:9")).openapi())


@pytest.fixture(scope="module")
def client(sandbox_server: SandboxServer) -> Iterator[TestClient]:
    app = create_app(build_settings(sandbox_server.base_url, **ROOMIER_BUDGETS), clock=clock)
    with TestClient(app, raise_server_exceptions=False) as opened:
        yield opened


def send(client: TestClient, case: Case[Any]) -> Any:
    kwargs: dict[str, Any] = case.as_transport_kwargs(
        base_url=str(client.base_url), headers={"Authorization": f"Bearer {token()}"}
    )
    return client.request(
        kwargs["method"],
        kwargs["url"],
        headers=kwargs["headers"],
        params=kwargs.get("params"),
        json=kwargs.get("json"),
        content=kwargs.get("data"),
    )


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=DERANDOMIZE,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
def test_every_generated_request_gets_a_documented_non_5xx_answer_matching_its_schema(
    client: TestClient, case: Case[Any]
) -> None:
    response = send(client, case)
    case.validate_response(response, checks=CHECKS)


# ---------------------------------------------------------------------------------------------- what it found
# Three bugs, fixed since: a date before the year 1000 went to Amplitude as a 3-digit year (a 502); dates in year 1
# made the default ranges overflow (a 500); a JSON body that is not UTF-8 was an undocumented 400.


def test_amplitude_dates_are_always_eight_digits() -> None:
    assert amplitude_date(date(321, 2, 19)) == "03210219"
    assert amplitude_date(date(9999, 12, 31)) == "99991231"


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/kpi/overview", {"as_of": "0999-12-31"}, "as_of"),
        ("/api/kpi/mau", {"start_month": "0321-01-01", "end_month": "0321-02-01"}, "end_month"),
        ("/api/kpi/conversion", {"start_date": "0321-02-01", "end_date": "0321-02-19"}, "end_date"),
    ],
    ids=["overview", "mau", "conversion"],
)
def test_a_date_from_before_any_data_is_a_422_naming_the_field_not_an_upstream_failure(
    client: TestClient, sandbox: SandboxState, path: str, params: dict[str, str], field: str
) -> None:
    response = client.get(path, params=params, headers={"Authorization": f"Bearer {token()}"})
    problem = assert_problem(response, 422)
    assert field in {error["field"] for error in problem["errors"]}
    assert sandbox.counts == {}


def test_a_json_body_that_is_not_utf8_is_a_422_naming_the_body(client: TestClient) -> None:
    response = client.post(
        "/api/kpi/refund-analysis",
        content=b'"\xff"',
        headers={"Authorization": f"Bearer {token()}", "Content-Type": "application/json"},
    )
    problem = assert_problem(response, 422)
    assert {error["field"] for error in problem["errors"]} == {"body"}
