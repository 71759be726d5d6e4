"""FastAPI dependencies: the runtime the lifespan opened, the caller's principal, and the KPI reader check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from shared.auth.scopes import Principal, require_kpi_access
from shared.auth.tokens import parse_authorization_header
from shared.errors import AuthenticationError
from shared.runtime import Runtime
from shared.services.cached import CachedKpiService


def get_runtime(request: Request) -> Runtime:
    """The runtime opened by the app's lifespan."""
    runtime: Runtime = request.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_kpi_service(runtime: RuntimeDep) -> CachedKpiService:
    """The runtime's KPI service, behind its cache and single-flight."""
    return runtime.cached


KpiServiceDep = Annotated[CachedKpiService, Depends(get_kpi_service)]


async def get_principal(request: Request, runtime: RuntimeDep) -> Principal:
    """The verified caller: a bearer token in the Authorization header, never in the query string."""
    if "access_token" in request.query_params:
        raise AuthenticationError(
            "tokens are not accepted in the query string; use the Authorization header.", token_sent=True
        )
    token = parse_authorization_header(request.headers.get("authorization"))
    if token is None:
        if runtime.settings.KPI_NO_AUTH and runtime.data_source == "sandbox":
            return Principal.local("sandbox-no-auth")
        raise AuthenticationError("A bearer token is required.", token_sent=False)
    principal = await runtime.verifier.verify(token)
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def get_kpi_reader(principal: CurrentPrincipal) -> Principal:
    """The caller, if it may read KPIs (`kpi:read`, or role admin/exec)."""
    require_kpi_access(principal)
    return principal


KpiReader = Annotated[Principal, Depends(get_kpi_reader)]
