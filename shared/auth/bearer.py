"""Who is calling over HTTP: the one bearer-token check that REST and MCP over HTTP both run."""

from __future__ import annotations

from collections.abc import Iterable

from shared.auth.challenge import missing_token_detail
from shared.auth.scopes import Principal
from shared.auth.tokens import TokenVerifier, parse_authorization_header
from shared.errors import AuthenticationError, MalformedAuthorizationError

ANONYMOUS_SANDBOX = "sandbox-no-auth"


def authorization_header(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The one `Authorization` header of an ASGI request, or None; two or more are refused (400), since servers
    and proxies disagree about which one counts."""
    values = [value.decode("latin-1") for name, value in headers if name.lower() == b"authorization"]
    if len(values) > 1:
        raise MalformedAuthorizationError("send exactly one Authorization header.")
    return values[0] if values else None


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
        raise AuthenticationError(missing_token_detail(verifier.issuer), token_sent=False)
    return await verifier.verify(token)
