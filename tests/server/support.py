"""What the MCP-face tests share: callers, the five operations' sample inputs and models, the REST twin of a call."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Generator, Mapping
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel

from server.context import current_principal
from shared.auth.scopes import KPI_READ, Principal
from shared.auth.tokens import mint_token
from shared.models import kpi as m
from shared.operations import by_id
from shared.operations import rest_request as operation_request
from shared.sandbox import (
    SANDBOX_AMPLITUDE_API_KEY,
    SANDBOX_AMPLITUDE_SECRET_KEY,
    SANDBOX_REVENUECAT_API_KEY,
)
from tests.conftest import JWT_SECRET, token

BASE_URL = "http://127.0.0.1:8000"
MCP_URL = f"{BASE_URL}/mcp"

READER = Principal(subject="reader", scopes=frozenset({KPI_READ}), roles=frozenset())

RESULT_MODELS: Mapping[str, type[BaseModel]] = {
    "kpi_overview": m.OverviewResult,
    "kpi_mau": m.MauResult,
    "kpi_conversion": m.ConversionResult,
    "kpi_user_journey": m.JourneyResult,
    "kpi_refund_analysis": m.RefundAnalysisResult,
}

SAMPLE_ARGUMENTS: Mapping[str, dict[str, Any]] = {
    "kpi_overview": {"as_of": "2026-11-15"},
    "kpi_mau": {"start_month": "2026-05-01", "end_month": "2026-11-01"},
    "kpi_conversion": {
        "steps": ["Sign Up", "View Paywall", "Start Trial"],
        "start_date": "2026-10-01",
        "end_date": "2026-10-31",
        "conversion_window_days": 14,
        "mode": "ordered",
    },
    "kpi_user_journey": {"user_id": "user_00042"},
    "kpi_refund_analysis": {
        "start_date": "2026-08-01",
        "end_date": "2026-11-20",
        "resolution": "month",
        "user_ids": ["user_00042", "user_00043"],
    },
}

SECRETS = (
    SANDBOX_AMPLITUDE_API_KEY,
    SANDBOX_AMPLITUDE_SECRET_KEY,
    SANDBOX_REVENUECAT_API_KEY,
    base64.b64encode(f"{SANDBOX_AMPLITUDE_API_KEY}:{SANDBOX_AMPLITUDE_SECRET_KEY}".encode()).decode(),
    JWT_SECRET,
)

MCP_POST_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
    "MCP-Protocol-Version": "2025-11-25",
}


def expired_token() -> str:
    """A token of ours that expired an hour ago (well past the verifier's leeway)."""
    return token(now=int(time.time()) - 7200, ttl=3600)


def foreign_token() -> str:
    """A well-formed token signed with somebody else's secret."""
    return mint_token("another-secret-that-is-long-enough-0123456789", subject="mallory")


def tampered_token() -> str:
    """A token of ours with one character of its signature changed."""
    original = token()
    at = len(original) - 10
    return original[:at] + ("B" if original[at] == "A" else "A") + original[at + 1 :]


@contextmanager
def acting_as(principal: Principal | None) -> Generator[None]:
    """Publish `principal` to the MCP tools, as the HTTP guard or the stdio entry point would, then restore."""
    reset = current_principal.set(principal)
    try:
        yield
    finally:
        current_principal.reset(reset)


def rest_request(operation: str, arguments: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """The REST call (method, path, request keywords) that asks the same as the MCP tool call."""
    return operation_request(by_id(operation), arguments)


def jsonrpc(method: str, params: Mapping[str, Any] | None = None, *, id: int = 1) -> dict[str, Any]:
    """A JSON-RPC 2.0 request body."""
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        body["params"] = dict(params)
    return body


def challenge_params(header: str) -> dict[str, str]:
    """The auth-params of a `Bearer k="v", ...` challenge."""
    scheme, _, rest = header.partition(" ")
    assert scheme == "Bearer", header
    return {key: value.replace('\\"', '"') for key, value in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest)}


def without_docs(schema: Any) -> Any:
    """What a JSON schema accepts: `schema` without its `title` and `description` keywords (field names kept)."""
    if isinstance(schema, list):
        return [without_docs(item) for item in schema]  # pyright: ignore[reportUnknownVariableType]
    if not isinstance(schema, dict):
        return schema
    kept: dict[str, Any] = {}
    for key, value in schema.items():  # pyright: ignore[reportUnknownVariableType]
        if key in ("properties", "$defs") and isinstance(value, dict):
            kept[key] = {name: without_docs(sub) for name, sub in value.items()}  # pyright: ignore[reportUnknownVariableType]
        elif key not in ("title", "description"):
            kept[key] = value if key in ("default", "examples", "const", "enum") else without_docs(value)
    return kept


def descriptions(schema: Any) -> set[str]:
    """Every `description` in a JSON schema."""
    found: set[str] = set()
    if isinstance(schema, list):
        for item in schema:  # pyright: ignore[reportUnknownVariableType]
            found |= descriptions(item)
    elif isinstance(schema, dict):
        for key, value in schema.items():  # pyright: ignore[reportUnknownVariableType]
            if key == "description" and isinstance(value, str):
                found.add(value)
            elif key in ("properties", "$defs") and isinstance(value, dict):
                for sub in value.values():  # pyright: ignore[reportUnknownVariableType]
                    found |= descriptions(sub)
            elif key not in ("default", "examples", "const", "enum"):
                found |= descriptions(value)
    return found


def only_text(result_content: list[Any]) -> str:
    """The text of a tool result made of exactly one text block."""
    assert len(result_content) == 1
    text = getattr(result_content[0], "text", None)
    assert isinstance(text, str)
    return text
