"""Warm answers without the framework: a GET whose result is cached is answered from the pre-serialized bytes.

It sits behind `BearerGuard` (the caller is already authenticated and authorized) and in front of FastAPI. It
parses the query with the same pydantic models the routes use and asks the cache only; anything it is not sure
about (a miss, an odd query string, invalid input) goes on to the routes, which give the canonical answer or error.
The routes' own cached answers are byte-for-byte the same (`served_response`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from pydantic import BaseModel, ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.errors import KpiError
from shared.models import kpi as m
from shared.runtime import Runtime
from shared.services.cached import CachedKpiService, Plan, Served

USER_PREFIX = "/api/kpi/user/"


def served_response(served: Served[Any], now: float) -> Response:
    """The pre-serialized body, with its freshness: `Age` since it was computed and the `max-age` left."""
    return Response(
        served.body,
        media_type="application/json",
        headers={
            "Cache-Control": f"private, max-age={served.max_age(now)}",
            "Age": str(served.age(now)),
            "X-KPI-Cache": "hit" if served.hit else "miss",
        },
    )


def _query_model(raw: bytes, model: type[BaseModel]) -> BaseModel | None:
    """The query string as `model`, or None when it is anything but plain (repeated scalars, blanks, unknowns)."""
    values = parse_qs(raw.decode("latin-1"), keep_blank_values=True)
    data: dict[str, object] = {}
    for name, given in values.items():
        field = model.model_fields.get(name)
        if field is None or any(not value for value in given):
            return None
        repeated = str(field.annotation).startswith("list[")
        if not repeated and len(given) != 1:
            return None
        data[name] = given if repeated else given[0]
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


def _plan(cached: CachedKpiService, path: str, query_string: bytes) -> Plan[Any] | None:
    if path == "/api/kpi/overview":
        query = _query_model(query_string, m.OverviewQuery)
        return cached.plan_overview(query) if isinstance(query, m.OverviewQuery) else None
    if path == "/api/kpi/mau":
        query = _query_model(query_string, m.MauQuery)
        return cached.plan_mau(query) if isinstance(query, m.MauQuery) else None
    if path == "/api/kpi/conversion":
        query = _query_model(query_string, m.ConversionQuery)
        return cached.plan_conversion(query) if isinstance(query, m.ConversionQuery) else None
    if path.startswith(USER_PREFIX) and not query_string:
        return cached.plan_user_journey(path[len(USER_PREFIX) :])
    return None


class CachedAnswers:
    """Answers warm GETs under `/api/kpi/` straight from the cache."""

    def __init__(self, app: ASGIApp, *, get_runtime: Callable[[], Runtime]) -> None:
        self.app = app
        self.get_runtime = get_runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"].startswith("/api/kpi/"):
            cached = self.get_runtime().cached
            try:
                plan = _plan(cached, scope["path"], scope.get("query_string", b""))
            except KpiError:
                plan = None  # invalid input: the route answers with the canonical problem
            served = await cached.peek(plan) if plan is not None else None
            if served is not None:
                await served_response(served, cached.clock())(scope, receive, send)
                return
        await self.app(scope, receive, send)
