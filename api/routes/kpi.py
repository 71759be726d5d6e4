"""`/api/kpi/*`: one route per operation of the registry (`shared.operations`), built from its declaration.

Each route checks the caller, takes the plan the fast path already made for this request (or plans it: the query
resolved and validated once), and sends the served result's pre-serialized bytes. GET operations read their query
model from the query string (or the path, for fields named in it); POST operations from the JSON body.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, get_type_hints

from fastapi import APIRouter, Body, Path, Query, Request, Response
from starlette.convertors import Convertor, register_url_convertor

from api.deps import KpiReader, get_runtime
from api.fastpath import served_response
from api.openapi import problem_responses
from api.state import set_cache_hit, take_plan
from shared.operations import OPERATIONS, REST_PREFIX, AnyOperation

PREFIX = REST_PREFIX


class _AnyConvertor(Convertor[str]):
    """A path parameter that takes every character, `/` and newlines included, so that the user id validation
    (not the router) judges it: Starlette's `path` stops at a newline and `$` lets a trailing one through."""

    regex = "(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("any", _AnyConvertor())


def path_fields(operation: AnyOperation) -> tuple[str, ...]:
    """The query-model fields an operation takes from its path (`{name}` segments)."""
    return tuple(re.findall(r"{(\w+)}", operation.path))


def _route_path(operation: AnyOperation) -> str:
    return re.sub(r"{(\w+)}", r"{\1:any}", operation.path)


def _parameters(operation: AnyOperation) -> list[inspect.Parameter]:
    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter("request", keyword, annotation=Request),
        inspect.Parameter("reader", keyword, annotation=KpiReader),
    ]
    in_path = path_fields(operation)
    if in_path:
        hints = get_type_hints(operation.query, include_extras=True)
        parameters += [inspect.Parameter(name, keyword, annotation=Annotated[hints[name], Path()]) for name in in_path]
    elif operation.method == "GET":
        parameters.append(inspect.Parameter("query", keyword, annotation=Annotated[operation.query, Query()]))
    else:
        examples = dict(operation.examples) or None
        body = Annotated[operation.query, Body(openapi_examples=examples)]
        parameters.append(inspect.Parameter("query", keyword, annotation=body))
    return parameters


def _endpoint(operation: AnyOperation) -> Callable[..., Awaitable[Response]]:
    in_path = path_fields(operation)

    async def endpoint(**values: Any) -> Response:
        request: Request = values["request"]
        cached = get_runtime(request).cached
        plan = take_plan(request.scope, operation.id)
        if plan is None:
            query = operation.query.model_validate({name: values[name] for name in in_path}) if in_path else None
            plan = cached.plan(operation, query if query is not None else values["query"])
        served = await cached.serve(plan)
        set_cache_hit(request.scope, served.hit)
        return served_response(served, cached.clock())

    endpoint.__signature__ = inspect.Signature(_parameters(operation), return_annotation=Response)
    endpoint.__name__ = operation.id
    endpoint.__doc__ = operation.description
    return endpoint


def build_router(operations: Sequence[AnyOperation] = OPERATIONS) -> APIRouter:
    """A router with one route per operation, its OpenAPI operation id, models and documented problems."""
    router = APIRouter(prefix=PREFIX, tags=["kpi"])
    for operation in operations:
        router.add_api_route(
            _route_path(operation),
            _endpoint(operation),
            methods=[operation.method],
            operation_id=operation.id,
            name=operation.id,
            response_model=operation.result,
            responses=problem_responses(*operation.errors),
            summary=operation.title,
            description=operation.description,
        )
    return router
