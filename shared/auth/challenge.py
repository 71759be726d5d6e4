"""`WWW-Authenticate` challenges (RFC 6750 §3, MCP 2025-11-25 authorization) shared by REST and MCP over HTTP."""

from __future__ import annotations

from shared.errors import AuthenticationError, InsufficientScopeError


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def www_authenticate(
    error: AuthenticationError | InsufficientScopeError, *, resource_metadata: str | None = None
) -> str:
    """The Bearer challenge for a 401 or 403: `invalid_token` when a bad token was sent, `insufficient_scope`
    with the `scope` needed on 403, and `resource_metadata` (RFC 9728) when given."""
    params: list[tuple[str, str]] = []
    if isinstance(error, InsufficientScopeError):
        params += [("error", "insufficient_scope"), ("scope", error.required_scope)]
        params.append(("error_description", f"Required scope: {error.required_scope}"))
    elif error.token_sent:
        params += [("error", "invalid_token"), ("error_description", error.detail)]
    else:
        params.append(("realm", "loop-kpi"))
    if resource_metadata:
        params.append(("resource_metadata", resource_metadata))
    return "Bearer " + ", ".join(f"{name}={_quote(value)}" for name, value in params)
