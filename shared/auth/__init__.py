"""Caller authentication and authorisation, shared by the REST and MCP faces (no web-framework code here)."""

from shared.auth.allowlist import UnknownOperationError, resolve_allowlist
from shared.auth.scopes import (
    KPI_READ,
    PRIVILEGED_ROLES,
    Principal,
    has_kpi_access,
    require_kpi_access,
)
from shared.auth.tokens import (
    JWKS_ALGORITHMS,
    MAX_TOKEN_LENGTH,
    MIN_SECRET_LENGTH,
    TokenVerifier,
    mint_token,
    parse_authorization_header,
)

__all__ = [
    "JWKS_ALGORITHMS",
    "KPI_READ",
    "MAX_TOKEN_LENGTH",
    "MIN_SECRET_LENGTH",
    "PRIVILEGED_ROLES",
    "Principal",
    "TokenVerifier",
    "UnknownOperationError",
    "has_kpi_access",
    "mint_token",
    "parse_authorization_header",
    "require_kpi_access",
    "resolve_allowlist",
]
