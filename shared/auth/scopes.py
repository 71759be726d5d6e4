"""The one scope policy of the KPI service: who may read KPIs, on either face.

A caller may read KPIs with the `kpi:read` scope, or with one of the privileged roles (`admin`, `exec`), which imply
it. Both faces call `require_kpi_access`; the MCP face also hands `effective_scopes` to the SDK, whose
`required_scopes` check can only AND scopes together and knows nothing about roles.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import InsufficientScopeError

__all__ = [
    "KPI_READ",
    "PRIVILEGED_ROLES",
    "Principal",
    "effective_scopes",
    "has_kpi_access",
    "require_kpi_access",
]

KPI_READ = "kpi:read"
PRIVILEGED_ROLES: frozenset[str] = frozenset({"admin", "exec"})


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified caller: who it is and what its credential grants."""

    subject: str
    scopes: frozenset[str]
    roles: frozenset[str]
    token_id: str | None = None
    expires_at: int | None = None

    @classmethod
    def local(cls, subject: str) -> Principal:
        """A principal with `kpi:read`, for a local sandbox stdio session."""
        return cls(subject=subject, scopes=frozenset({KPI_READ}), roles=frozenset())


def has_kpi_access(principal: Principal) -> bool:
    """Whether the principal may read KPIs: `kpi:read` in its scopes, or a privileged role."""
    return KPI_READ in principal.scopes or not PRIVILEGED_ROLES.isdisjoint(principal.roles)


def require_kpi_access(principal: Principal) -> None:
    """Return if the principal may read KPIs; raise `InsufficientScopeError` otherwise."""
    if has_kpi_access(principal):
        return
    roles = " or ".join(sorted(PRIVILEGED_ROLES))
    raise InsufficientScopeError(
        f"This operation requires the '{KPI_READ}' scope (the {roles} role also grants it).",
        required_scope=KPI_READ,
    )


def effective_scopes(principal: Principal) -> frozenset[str]:
    """The principal's scopes, plus `kpi:read` when it holds a privileged role."""
    if PRIVILEGED_ROLES.isdisjoint(principal.roles):
        return principal.scopes
    return principal.scopes | {KPI_READ}
