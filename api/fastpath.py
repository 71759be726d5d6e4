"""Warm answers without the framework: a GET whose result is cached is answered from the pre-serialized bytes.

It sits behind the bearer guard (the caller is already authenticated and authorized) and in front of FastAPI. It
finds the request's operation through the app's own routes, parses the query with the operation's query model and
asks the cache only; anything it is not sure about (an odd query string, invalid input) goes on to the route, which
gives the canonical answer or error. On a miss it leaves its plan in the request state, so the route does not
resolve the query again. The routes' own answers are byte-for-byte the same (`served_response`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs

from pydantic import BaseModel, ValidationError
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from api.state import Matched, match_of, set_cache_hit, set_match, set_plan
from shared.errors import KpiError
from shared.operations import AnyOperation
from shared.runtime import Runtime
from shared.services.cached import Plan, Served

OperationRoute = tuple[BaseRoute, AnyOperation]


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


def match_operation(routes: Sequence[OperationRoute], scope: Scope) -> Matched | None:
    """The operation whose route matches the request (path and method first, else path alone); remembered in the
    request state, so the guard and the fast path match once per request."""
    remembered = match_of(scope)
    if remembered is not None:
        return remembered
    partial: Matched | None = None
    for route, operation in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            found = Matched(operation, dict(child.get("path_params", {})), full=True)
            set_match(scope, found)
            return found
        if match is Match.PARTIAL and partial is None:
            partial = Matched(operation, dict(child.get("path_params", {})), full=False)
    if partial is not None:
        set_match(scope, partial)
    return partial


def _query_model(raw: bytes, model: type[BaseModel], given: dict[str, Any]) -> BaseModel | None:
    """The query string (plus path parameters) as `model`, or None when it is anything but plain (repeated
    scalars, blanks, unknown names) or invalid."""
    values = parse_qs(raw.decode("latin-1"), keep_blank_values=True)
    data: dict[str, object] = dict(given)
    for name, found in values.items():
        field = model.model_fields.get(name)
        if field is None or name in given or any(not value for value in found):
            return None
        repeated = str(field.annotation).startswith("list[")
        if not repeated and len(found) != 1:
            return None
        data[name] = found if repeated else found[0]
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


class CachedAnswers:
    """Answers warm GETs of KPI operations straight from the cache."""

    def __init__(
        self, app: ASGIApp, *, get_runtime: Callable[[], Runtime], routes: Callable[[], Sequence[OperationRoute]]
    ) -> None:
        self.app = app
        self.get_runtime = get_runtime
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            found = match_operation(self.routes(), scope)
            plan = self._plan(found, scope) if found is not None and found.full else None
            if plan is not None:
                cached = self.get_runtime().cached
                served = await cached.peek(plan)
                if served is not None:
                    set_cache_hit(scope, True)
                    await served_response(served, cached.clock())(scope, receive, send)
                    return
                set_plan(scope, plan)
        await self.app(scope, receive, send)

    def _plan(self, found: Matched, scope: Scope) -> Plan[Any] | None:
        operation = found.operation
        query = _query_model(scope.get("query_string", b""), operation.query, found.path_params)
        if query is None:
            return None
        try:
            return self.get_runtime().cached.plan(operation, query)
        except KpiError:
            return None  # invalid input: the route answers with the canonical problem
