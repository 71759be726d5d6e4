"""FastAPI dependencies: the runtime the lifespan opened, and the KPI reader check.

Each is one flat function of the request: FastAPI resolves dependencies on every request, so a chain of small ones
costs more than the work they do.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.state import principal_of, set_principal
from shared.auth.bearer import authenticate_bearer
from shared.auth.scopes import Principal, require_kpi_access
from shared.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    """The runtime opened by the app's lifespan (a plain function: routes call it directly)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _runtime_dependency(request: Request) -> Runtime:
    return get_runtime(request)  # async: FastAPI runs sync dependencies in a thread pool


RuntimeDep = Annotated[Runtime, Depends(_runtime_dependency)]


async def get_kpi_reader(request: Request) -> Principal:
    """The caller, if it may read KPIs (`kpi:read`, or role admin/exec): 401 or 403 otherwise.

    The bearer guard has already checked it before the body was read; the check is repeated here so a route can
    never be served without it, whatever middleware is installed.
    """
    principal = principal_of(request.scope)
    if principal is not None:
        require_kpi_access(principal)
        return principal
    runtime = get_runtime(request)
    principal = await authenticate_bearer(
        request.headers.get("authorization"),
        token_in_query="access_token" in request.query_params,
        verifier=runtime.verifier,
        allow_anonymous=runtime.anonymous_allowed,
    )
    require_kpi_access(principal)
    set_principal(request.scope, principal)
    return principal


KpiReader = Annotated[Principal, Depends(get_kpi_reader)]
