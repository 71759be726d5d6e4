"""Input limits on both faces: user ids (length, characters), funnel steps (2 to 10, each at most 128 characters),
refund-analysis user ids (at most 100), date-range lengths and request body size.

REST answers each violation with a 422 problem naming the field (413 for the body), never a 500; MCP answers the
same arguments with an `isError` result, never a crash. The REST bad-input table of tests/api/test_problems.py is
not repeated here; this adds the MCP face, the boundaries (the largest valid input is accepted) and odd characters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import anyio
import pytest
from fastapi import FastAPI

from api.main import MAX_BODY_BYTES
from shared.models import kpi as m
from shared.sandbox import SandboxServer, SandboxState
from tests.conftest import token
from tests.server.support import rest_request

from .support import assert_problem, call_tool, hardened_settings, http_client, running, tool_text

DEADLINE = 10
REFUND_RANGE = {"start_date": "2026-09-01", "end_date": "2026-10-31"}


@pytest.fixture(scope="module")
async def app(sandbox_server: SandboxServer) -> AsyncIterator[FastAPI]:
    async with running(hardened_settings(sandbox_server.base_url)) as opened:
        yield opened


@dataclass(frozen=True)
class Violation:
    """Arguments one tool refuses; REST gets the same ones through `rest_request`."""

    name: str
    tool: str
    arguments: Mapping[str, Any]
    field: str  # the field the REST problem names


def _steps(count: int, *, length: int = 12) -> list[str]:
    return [f"{i:02d}".ljust(length, "x") for i in range(count)]


VIOLATIONS: tuple[Violation, ...] = (
    Violation("user id of 257 characters", "kpi_user_journey", {"user_id": "u" * 257}, "user_id"),
    Violation("user id of 60 000 characters", "kpi_user_journey", {"user_id": "u" * 60_000}, "user_id"),
    Violation("user id with a space", "kpi_user_journey", {"user_id": "user 00042"}, "user_id"),
    Violation("user id with a NUL", "kpi_user_journey", {"user_id": "user\x0000042"}, "user_id"),
    Violation("user id with a carriage return", "kpi_user_journey", {"user_id": "user_00042\r"}, "user_id"),
    # A newline once slipped past the REST router: a trailing one was dropped (another user's journey), an inner
    # one made the path unknown (404).
    Violation("user id with a trailing newline", "kpi_user_journey", {"user_id": "user_00042\n"}, "user_id"),
    Violation("user id with a newline inside", "kpi_user_journey", {"user_id": "user\n00042"}, "user_id"),
    Violation("user id with markup", "kpi_user_journey", {"user_id": "<script>alert(1)</script>"}, "user_id"),
    Violation("user id with a question mark", "kpi_user_journey", {"user_id": "user?x=1"}, "user_id"),
    Violation("user id with a percent sign", "kpi_user_journey", {"user_id": "user%2F1"}, "user_id"),
    Violation("user id with non-ascii letters", "kpi_user_journey", {"user_id": "üser_00042"}, "user_id"),
    Violation("user id with a zero-width space", "kpi_user_journey", {"user_id": "user\u200b00042"}, "user_id"),
    Violation("eleven funnel steps", "kpi_conversion", {"steps": _steps(11)}, "steps"),
    Violation("one funnel step", "kpi_conversion", {"steps": _steps(1)}, "steps"),
    Violation("a funnel step of 129 characters", "kpi_conversion", {"steps": _steps(2, length=129)}, "steps.0"),
    Violation("a blank funnel step", "kpi_conversion", {"steps": ["Sign Up", "   "]}, "steps.1"),
    Violation(
        "a funnel over 367 days",
        "kpi_conversion",
        {"start_date": "2025-11-18", "end_date": "2026-11-19"},
        "start_date",
    ),
    Violation(
        "a conversion window of 91 days", "kpi_conversion", {"conversion_window_days": 91}, "conversion_window_days"
    ),
    Violation("MAU over 37 months", "kpi_mau", {"start_month": "2023-10-01", "end_month": "2026-10-01"}, "start_month"),
    Violation(
        "101 refund user ids",
        "kpi_refund_analysis",
        {**REFUND_RANGE, "user_ids": [f"user_{i:05d}" for i in range(101)]},
        "user_ids",
    ),
    Violation(
        "a refund user id of 257 characters",
        "kpi_refund_analysis",
        {**REFUND_RANGE, "user_ids": ["user_00042", "u" * 257]},
        "user_ids.1",
    ),
    Violation(
        "a refund user id with a space", "kpi_refund_analysis", {**REFUND_RANGE, "user_ids": ["a b"]}, "user_ids.0"
    ),
    Violation(
        "refunds over 1099 days",
        "kpi_refund_analysis",
        {"start_date": "2023-11-16", "end_date": "2026-11-19"},
        "start_date",
    ),
    Violation(
        "a refund segment of 65 characters", "kpi_refund_analysis", {**REFUND_RANGE, "segment": "s" * 65}, "segment"
    ),
)


def rest_kwargs(tool: str, arguments: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """`rest_request`, with the user id percent-encoded into the path (any character, a slash included)."""
    if tool == "kpi_user_journey":
        return "GET", "/api/kpi/user/" + quote(str(arguments["user_id"]), safe=""), {}
    return rest_request(tool, arguments)


@pytest.mark.anyio
@pytest.mark.anyio
@pytest.mark.parametrize("violation", VIOLATIONS, ids=[violation.name for violation in VIOLATIONS])
async def test_an_input_over_its_limit_is_a_422_naming_the_field_and_an_mcp_tool_error(
    app: FastAPI, sandbox: SandboxState, violation: Violation
) -> None:
    async with http_client(app, token()) as http:
        method, path, kwargs = rest_kwargs(violation.tool, violation.arguments)
        with anyio.fail_after(DEADLINE):
            response = await http.request(method, path, **kwargs)
            result = await call_tool(http, violation.tool, violation.arguments)

    problem = assert_problem(response, 422)
    assert violation.field in {error["field"] for error in problem["errors"]}, problem
    text = tool_text(result)
    assert result.is_error, text
    # Argument validation names the argument; a service check says "Invalid input"; never the SDK's bare
    # "Error executing tool <name>" that stands for an unexpected exception.
    assert "Invalid input: " in text or f"\n{violation.field.split('.')[0]}" in text, text
    assert text.strip() != f"Error executing tool {violation.tool}"
    assert sandbox.counts == {}  # refused before any upstream call


@dataclass(frozen=True)
class Boundary:
    name: str
    tool: str
    arguments: Mapping[str, Any]
    status: int


BOUNDARIES: tuple[Boundary, ...] = (
    Boundary("a user id of 256 characters", "kpi_user_journey", {"user_id": "u" * m.USER_ID_MAX_LENGTH}, 404),
    Boundary("a user id with every allowed symbol", "kpi_user_journey", {"user_id": "a_.:@$+-=|/#~!*z"}, 404),
    Boundary("ten funnel steps", "kpi_conversion", {"steps": _steps(m.MAX_FUNNEL_STEPS)}, 200),
    Boundary("two funnel steps of 128 characters", "kpi_conversion", {"steps": _steps(2, length=128)}, 200),
    Boundary("a funnel over 366 days", "kpi_conversion", {"start_date": "2025-11-20", "end_date": "2026-11-20"}, 200),
    Boundary("MAU over 36 months", "kpi_mau", {"start_month": "2023-12-01", "end_month": "2026-11-01"}, 200),
    Boundary(
        "100 refund user ids",
        "kpi_refund_analysis",
        {**REFUND_RANGE, "user_ids": [f"nobody_{i:03d}" for i in range(m.MAX_REFUND_USER_IDS)]},
        200,
    ),
    Boundary(
        "refunds over 1098 days", "kpi_refund_analysis", {"start_date": "2023-11-19", "end_date": "2026-11-20"}, 200
    ),
)


@pytest.mark.anyio
@pytest.mark.parametrize("boundary", BOUNDARIES, ids=[boundary.name for boundary in BOUNDARIES])
async def test_the_largest_valid_input_is_accepted_on_both_faces(app: FastAPI, boundary: Boundary) -> None:
    async with http_client(app, token()) as http:
        method, path, kwargs = rest_kwargs(boundary.tool, boundary.arguments)
        with anyio.fail_after(DEADLINE):
            response = await http.request(method, path, **kwargs)
            result = await call_tool(http, boundary.tool, boundary.arguments)

    assert response.status_code == boundary.status, response.text
    assert result.is_error is (boundary.status != 200), tool_text(result)
    if boundary.status == 404:
        assert "Not found: " in tool_text(result)


@pytest.mark.anyio
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_refund_body_over_the_limit_is_a_413_problem_before_it_is_parsed(
    app: FastAPI, sandbox: SandboxState, chunked: bool
) -> None:
    padding = "x" * (MAX_BODY_BYTES + 1)
    payload = f'{{"start_date": "2026-09-01", "end_date": "2026-10-31", "segment": "{padding}"}}'.encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 65_536):
            yield payload[start : start + 65_536]

    async with http_client(app, token()) as http:
        with anyio.fail_after(DEADLINE):
            response = await http.post(
                "/api/kpi/refund-analysis",
                content=chunks() if chunked else payload,
                headers={"Content-Type": "application/json"},
            )

    problem = assert_problem(response, 413)
    assert padding[:64] not in response.text
    assert problem["title"] == "Request body too large"
    assert sandbox.counts == {}


# ---------------------------------------------------------------------------------------------- extreme dates
# Dates in year 1 once made the default ranges overflow (a bare 500 on REST, a message-less tool error on MCP).

EXTREME_DATES = (
    pytest.param("kpi_conversion", {"end_date": "0001-01-05"}, "end_date", id="conversion-ending-in-year-1"),
    pytest.param("kpi_mau", {"end_month": "0001-03-01"}, "end_month", id="mau-ending-in-year-1"),
    pytest.param("kpi_mau", {"start_month": "0001-01-01"}, "start_month", id="mau-from-year-1"),
    pytest.param(
        "kpi_conversion", {"start_date": "0001-01-01", "end_date": "0001-12-31"}, "end_date", id="funnel-in-year-1"
    ),
    pytest.param(
        "kpi_refund_analysis", {"start_date": "0001-01-01", "end_date": "0001-01-31"}, "start_date", id="refunds-in-1"
    ),
    pytest.param("kpi_overview", {"as_of": "0001-01-01"}, "as_of", id="overview-of-year-1"),
    pytest.param("kpi_overview", {"as_of": "9999-12-31"}, "as_of", id="overview-of-year-9999"),
    pytest.param(
        "kpi_refund_analysis", {"start_date": "2026-01-01", "end_date": "9999-12-31"}, "end_date", id="refunds-to-9999"
    ),
)


@pytest.mark.anyio
@pytest.mark.parametrize(("tool", "arguments", "field"), EXTREME_DATES)
async def test_an_extreme_but_well_formed_date_is_a_422_naming_the_field_on_rest_and_a_tool_error_on_mcp(
    app: FastAPI, sandbox: SandboxState, tool: str, arguments: Mapping[str, Any], field: str
) -> None:
    async with http_client(app, token()) as http:
        method, path, kwargs = rest_request(tool, arguments)
        with anyio.fail_after(DEADLINE):
            response = await http.request(method, path, **kwargs)
            result = await call_tool(http, tool, arguments)

    problem = assert_problem(response, 422)
    assert field in {error["field"] for error in problem["errors"]}, problem
    assert result.is_error
    assert tool_text(result).strip() != f"Error executing tool {tool}"
    assert "Invalid input: " in tool_text(result)
    assert sandbox.counts == {}
