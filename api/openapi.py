"""OpenAPI descriptions of the problem-details responses each route documents."""

from __future__ import annotations

from typing import Any

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
