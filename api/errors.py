"""Every error leaves the REST face as RFC 9457 problem details (`application/problem+json`).

`KpiError` carries its own status and title; request validation becomes a 422 naming the fields; anything
unexpected becomes a bare 500 problem whose body says nothing about the cause (it is logged instead).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from shared.auth.challenge import www_authenticate
from shared.errors import (
    AuthenticationError,
    CallerBudgetExceededError,
    InsufficientScopeError,
    InvalidInputError,
    KpiError,
    UpstreamRateLimitedError,
)

PROBLEM_JSON = "application/problem+json"
logger = logging.getLogger("loop_kpi.api")


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_JSON


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    type_uri: str = "about:blank",
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ProblemResponse:
    """A problem-details response."""
    body: dict[str, Any] = {"type": type_uri, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update({key: value for key, value in extra.items() if value is not None})
    return ProblemResponse(body, status_code=status, headers=headers)


def kpi_error_response(
    error: KpiError, *, instance: str | None = None, resource_metadata: str | None = None
) -> ProblemResponse:
    """Render a `KpiError` with the headers its status calls for (challenges, Retry-After)."""
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {"source": error.source}
    if isinstance(error, AuthenticationError):
        headers["WWW-Authenticate"] = www_authenticate(error, resource_metadata=resource_metadata)
    elif isinstance(error, InsufficientScopeError):
        headers["WWW-Authenticate"] = www_authenticate(error, resource_metadata=resource_metadata)
        extra["required_scope"] = error.required_scope
    elif isinstance(error, UpstreamRateLimitedError | CallerBudgetExceededError):
        headers["Retry-After"] = str(error.retry_after)
        extra["retry_after"] = error.retry_after
    elif isinstance(error, InvalidInputError) and error.field:
        extra["errors"] = [{"field": error.field, "message": error.detail}]
    return problem(
        error.status, error.title, error.detail, type_uri=error.type_uri, instance=instance, headers=headers, **extra
    )


def _field_name(error: Any) -> str:
    location: Sequence[Any] = error.get("loc", ())
    if error.get("type") == "json_invalid":
        return "body"
    parts = [str(part) for part in location if part not in ("query", "body", "path", "header")]
    return ".".join(parts) or "body"


def validation_problem(errors: Sequence[Any], *, instance: str | None = None) -> ProblemResponse:
    """A 422 problem naming each invalid field (values are not echoed back)."""
    fields = [{"field": _field_name(err), "message": str(err.get("msg", "invalid"))} for err in errors]
    names = ", ".join(dict.fromkeys(item["field"] for item in fields))
    return problem(
        422,
        "Invalid input",
        f"Invalid value for: {names}." if names else "Invalid input.",
        type_uri="https://loop-kpi.dev/problems/invalid-input",
        instance=instance,
        errors=fields,
    )


def http_error_response(exc: StarletteHTTPException, *, instance: str) -> Response:
    """The problem details of an HTTP error raised by the framework or a middleware (404, 405, 413, ...)."""
    if exc.status_code == 400:
        # FastAPI's only 400: a request body it could not decode (e.g. not UTF-8). Same answer as invalid JSON.
        return validation_problem(
            [{"type": "json_invalid", "loc": ("body",), "msg": str(exc.detail)}], instance=instance
        )
    titles = {404: "Not found", 405: "Method not allowed", 413: "Request body too large"}
    return problem(
        exc.status_code,
        titles.get(exc.status_code, "HTTP error"),
        str(exc.detail),
        instance=instance,
        headers=dict(exc.headers or {}),
    )


def add_exception_handlers(app: FastAPI) -> None:
    """Install the problem-details handlers on the app."""

    async def on_kpi_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, KpiError)
        return kpi_error_response(exc, instance=request.url.path)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return validation_problem(exc.errors(), instance=request.url.path)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return http_error_response(exc, instance=request.url.path)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        response = problem(500, "Internal error", "The service failed unexpectedly; the error was logged.")
        runtime = getattr(request.app.state, "runtime", None)
        if getattr(runtime, "data_source", None) == "sandbox":
            # This answer is sent by the outermost error middleware, outside DataSourceHeader.
            response.headers["X-KPI-Data-Source"] = "sandbox"
        return response

    app.add_exception_handler(KpiError, on_kpi_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
