"""FastAPI dependencies: the runtime the lifespan opened, and the KPI reader check.

Each is one flat function of the request: FastAPI resolves dependencies on every request, so a chain of small ones
costs more than the work they do (measured in docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from shared.auth.bearer import authenticate_bearer
from shared.auth.scopes import Principal, require_kpi_access
from shared.runtime import Runtime
from shared.services.cached import CachedKpiService


async def get_runtime(request: Request) -> Runtime:
    """The runtime opened by the app's lifespan."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_kpi_service(request: Request) -> CachedKpiService:
    """The runtime's KPI service, behind its cache and single-flight."""
    runtime: Runtime = request.app.state.runtime
    return runtime.cached


KpiServiceDep = Annotated[CachedKpiService, Depends(get_kpi_service)]


async def get_kpi_reader(request: Request) -> Principal:
    """The caller, if it may read KPIs (`kpi:read`, or role admin/exec): 401 or 403 otherwise.

    `BearerGuard` has already checked it before the body was read; the check is repeated here so a route can
    never be served without it, whatever middleware is installed.
    """
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is not None:
        require_kpi_access(principal)
        return principal
    runtime: Runtime = request.app.state.runtime
    principal = await authenticate_bearer(
        request.headers.get("authorization"),
        token_in_query="access_token" in request.query_params,
        verifier=runtime.verifier,
        allow_anonymous=runtime.anonymous_allowed,
    )
    require_kpi_access(principal)
    request.state.principal = principal
    return principal


KpiReader = Annotated[Principal, Depends(get_kpi_reader)]
