"""Who is calling over HTTP: the one bearer-token check that REST and MCP over HTTP both run."""

from __future__ import annotations

from shared.auth.scopes import Principal
from shared.auth.tokens import TokenVerifier, parse_authorization_header
from shared.errors import AuthenticationError

ANONYMOUS_SANDBOX = "sandbox-no-auth"


async def authenticate_bearer(
    authorization: str | None, *, token_in_query: bool, verifier: TokenVerifier, allow_anonymous: bool = False
) -> Principal:
    """The verified caller from an `Authorization: Bearer` header; a token in the query string is refused (it
    ends up in logs and browser history). `allow_anonymous` (sandbox `--no-auth` only) admits callers without one."""
    if token_in_query:
        raise AuthenticationError(
            "tokens are not accepted in the query string; use the Authorization header.", token_sent=True
        )
    token = parse_authorization_header(authorization)
    if token is None:
        if allow_anonymous:
            return Principal.local(ANONYMOUS_SANDBOX)
        raise AuthenticationError("A bearer token is required.", token_sent=False)
    return await verifier.verify(token)
