"""OpenAPI descriptions of the problem-details responses each route documents."""

from __future__ import annotations

from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["https://loop-kpi.dev/problems/source-not-configured"])
    title: str = Field(examples=["Source not configured"])
    status: int = Field(examples=[503])
    detail: str = Field(examples=["amplitude is not configured: set AMPLITUDE_API_KEY and AMPLITUDE_SECRET_KEY."])
    instance: str | None = None
    source: str | None = Field(None, description="`amplitude` or `revenuecat` for upstream problems.")


_DESCRIPTIONS = {
    401: "No bearer token, or an invalid or expired one (`WWW-Authenticate: Bearer ...`).",
    403: "The token lacks `kpi:read` and the role is neither admin nor exec "
    '(`WWW-Authenticate: Bearer error="insufficient_scope", scope="kpi:read"`).',
    404: "Neither source knows this user.",
    413: "The request body is too large.",
    422: "Invalid input; `errors` names each field.",
    502: "An upstream failed, answered something unreadable, or rejected the service's credentials.",
    503: "A source is not configured, or an upstream is rate-limiting the service (`Retry-After`).",
    504: "An upstream did not answer in time.",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for the given statuses, each an `application/problem+json` Problem."""
    return {
        status: {
            "description": _DESCRIPTIONS[status],
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


KPI_PREFIX = "/api/kpi/"
FRESHNESS_HEADERS: dict[str, dict[str, Any]] = {
    "Age": {
        "description": "Seconds since this result was computed (0 when computed for this request).",
        "schema": {"type": "integer", "minimum": 0},
    },
    "Cache-Control": {
        "description": "`private, max-age=<seconds>`: how much longer the cached result stays fresh.",
        "schema": {"type": "string", "examples": ["private, max-age=287"]},
    },
    "X-KPI-Cache": {
        "description": "`hit` when served from the result cache, `miss` when computed for this request.",
        "schema": {"type": "string", "enum": ["hit", "miss"]},
    },
}
RETRY_AFTER_HEADER: dict[str, Any] = {
    "description": "Seconds to wait before retrying; sent when an upstream is rate-limiting the service.",
    "schema": {"type": "integer", "minimum": 0},
}


def document_kpi_responses(schema: dict[str, Any]) -> None:
    """Post-process the generated document for every operation under `/api/kpi/` (whatever declares the routes):
    optional parameters are documented as their type (not `T | null`, which Swagger UI renders without an input
    box), 2xx responses carry the freshness headers and 503s `Retry-After`."""
    paths = cast("dict[str, dict[str, Any]]", schema.get("paths", {}))
    for path, item in paths.items():
        if not path.startswith(KPI_PREFIX):
            continue
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            details = cast("dict[str, Any]", operation)
            for parameter in cast("list[dict[str, Any]]", details.get("parameters", [])):
                parameter["schema"] = _without_null(cast("dict[str, Any]", parameter.get("schema", {})))
            for status, response in cast("dict[str, dict[str, Any]]", details.get("responses", {})).items():
                if status.startswith("2"):
                    response.setdefault("headers", {}).update({k: dict(v) for k, v in FRESHNESS_HEADERS.items()})
                elif status == "503":
                    response.setdefault("headers", {})["Retry-After"] = dict(RETRY_AFTER_HEADER)


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`{"anyOf": [X, {"type": "null"}], ...}` -> X with the outer keywords (description, default, title)."""
    options = schema.get("anyOf")
    if not isinstance(options, list):
        return schema
    kept = [option for option in cast("list[Any]", options) if option != {"type": "null"}]
    if len(kept) != 1 or len(kept) == len(cast("list[Any]", options)) or not isinstance(kept[0], dict):
        return schema
    outer = {key: value for key, value in schema.items() if key != "anyOf" and not (key == "default" and value is None)}
    return {**cast("dict[str, Any]", kept[0]), **outer}
