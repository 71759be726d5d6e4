"""The one scope policy of the KPI service: who may read KPIs, on either face.

A caller may read KPIs with the `kpi:read` scope, or with one of the privileged roles (`admin`, `exec`), which imply
it. Every face calls `require_kpi_access`: the HTTP bearer guard (REST and MCP over HTTP) and the MCP tools.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import InsufficientScopeError

__all__ = [
    "KPI_READ",
    "PRIVILEGED_ROLES",
    "Principal",
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
