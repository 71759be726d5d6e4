"""What one HTTP request carries between the ASGI layers and the routes, in the ASGI scope's `state`.

The bearer guard puts the verified principal there; the fast path the plan it made on a cache miss (so the route
does not resolve the query again); whoever answers a KPI request whether it was a cache hit (read by the audit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from starlette.types import Scope

from shared.auth.scopes import Principal
from shared.operations import AnyOperation
from shared.services.cached import Plan


@dataclass(frozen=True, slots=True)
class Matched:
    """The operation a request is for (by the app's own routes), its path parameters, and whether the method
    matches too (`full`) or only the path."""

    operation: AnyOperation
    path_params: dict[str, Any]
    full: bool


_PRINCIPAL = "principal"  # the name `request.state.principal` reads
_PLAN = "loop_kpi_plan"
_CACHE_HIT = "loop_kpi_cache_hit"
_MATCH = "loop_kpi_match"


def _state(scope: Scope) -> dict[str, Any]:
    state: dict[str, Any] = scope.setdefault("state", {})
    return state


def set_principal(scope: Scope, principal: Principal) -> None:
    _state(scope)[_PRINCIPAL] = principal


def principal_of(scope: Scope) -> Principal | None:
    found = _state(scope).get(_PRINCIPAL)
    return found if isinstance(found, Principal) else None


def set_plan(scope: Scope, plan: Plan[Any]) -> None:
    _state(scope)[_PLAN] = plan


def take_plan(scope: Scope, operation_id: str) -> Plan[Any] | None:
    """The plan the fast path made for this request's operation, if any (taken: a second read gets None)."""
    found: object = _state(scope).pop(_PLAN, None)
    if not isinstance(found, Plan):
        return None
    plan = cast("Plan[Any]", found)
    return plan if plan.operation_id == operation_id else None


def set_cache_hit(scope: Scope, hit: bool) -> None:
    _state(scope)[_CACHE_HIT] = hit


def cache_hit_of(scope: Scope) -> bool | None:
    found = _state(scope).get(_CACHE_HIT)
    return found if isinstance(found, bool) else None


def set_match(scope: Scope, matched: Matched) -> None:
    """Remember which operation the request's route is (`api.fastpath.match_operation`)."""
    _state(scope)[_MATCH] = matched


def match_of(scope: Scope) -> Matched | None:
    """What `set_match` remembered, or None."""
    found = _state(scope).get(_MATCH)
    return found if isinstance(found, Matched) else None
