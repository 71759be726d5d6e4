"""`WWW-Authenticate` challenges (RFC 6750 §3, MCP 2025-11-25 authorization) shared by REST and MCP over HTTP.

With an OpenID Connect issuer configured, challenges carry `resource_metadata` (RFC 9728): the document naming the
issuer, from which an OAuth client (a remote MCP client) starts authorization code + PKCE. Without one the service
names no authorization server, publishes no metadata and challenges without `resource_metadata`, so a client is not
sent into an OAuth flow that cannot finish; the problem body says to send a bearer token instead.
"""

from __future__ import annotations

from shared.errors import AuthenticationError, InsufficientScopeError
from shared.settings import Settings

MCP_PATH = "/mcp"
"""The MCP endpoint's path; `KPI_PUBLIC_URL` + this is the protected resource (and the tokens' default audience)."""
PRM_PATH = "/.well-known/oauth-protected-resource"
"""Where the RFC 9728 protected resource metadata of the MCP endpoint is served (with an issuer only)."""


def resource_url(settings: Settings) -> str:
    """The MCP endpoint's public URL: the protected resource's identifier, what MCP clients and the dashboard ask
    for as RFC 8707 `resource`, and the audience tokens carry by default."""
    return settings.KPI_PUBLIC_URL + MCP_PATH


def challenge_metadata_url(settings: Settings) -> str | None:
    """The `resource_metadata` URL for challenges: set only when an issuer is configured (the metadata is served)."""
    return settings.KPI_PUBLIC_URL + PRM_PATH if settings.KPI_JWT_ISSUER else None


def missing_token_detail(issuer: str | None) -> str:
    """What a caller without a token is told (the problem's `detail`): sign in with the issuer, or send a token."""
    if issuer:
        return (
            f"A bearer token is required: sign in with {issuer} (OAuth authorization code + PKCE; the "
            "WWW-Authenticate resource_metadata names the resource and scope) and send Authorization: Bearer <token>."
        )
    return (
        "A bearer token is required: send Authorization: Bearer <token>, with a token from the service's operator "
        "(`loop-kpi token`). This service names no OAuth authorization server, so an OAuth sign-in cannot start."
    )


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
