"""Bearer-token verification: JWTs signed with our own HS256 secret, or RS256/ES256 keys from a JWKS.

One `TokenVerifier` serves both faces. Algorithms are pinned to their key source: HS256 only ever verifies with
`KPI_JWT_SECRET`, RS256/ES256 only with keys from the JWKS (`KPI_JWKS_URL`, or the `jwks_uri` of the OpenID Connect
issuer `KPI_JWT_ISSUER` found by discovery), `none` never; the token header only chooses between the configured
paths. With an issuer, `iss` must equal it and `aud` must name this service (`token_audiences`). Scopes and roles are
read from the configured claims (`KPI_JWT_SCOPE_CLAIMS`, `KPI_JWT_ROLE_CLAIMS`; dotted paths reach nested claims). Every rejection is an `AuthenticationError` with a short reason of our own words: never the
token, a claim value or a key.

Long because every check of a token (header, algorithm, claims, JWKS refresh and its rate limit) belongs to one
verifier.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Self, cast
from urllib.parse import urlsplit

import anyio
import httpx2
import jwt
from jwt.exceptions import InvalidSubjectError
from jwt.types import Options

from shared.auth.challenge import resource_url
from shared.auth.scopes import KPI_READ, Principal
from shared.errors import AuthenticationError
from shared.settings import MIN_SECRET_LENGTH, Settings, check_https_url

__all__ = [
    "JWKS_ALGORITHMS",
    "MAX_TOKEN_LENGTH",
    "MIN_SECRET_LENGTH",
    "TokenVerifier",
    "mint_token",
    "parse_authorization_header",
    "token_audiences",
]

MAX_TOKEN_LENGTH = 8 * 1024
VERIFIED_TTL = 300.0
VERIFIED_MAX_ENTRIES = 1024
"""Tokens longer than this (in characters, which for a valid JWT are ASCII bytes) are rejected unparsed."""
JWKS_ALGORITHMS: frozenset[str] = frozenset({"RS256", "ES256"})
"""The asymmetric algorithms accepted with JWKS keys."""
HMAC_ALGORITHM = "HS256"

_MAX_JWKS_BYTES = 512 * 1024
_MAX_DISCOVERY_BYTES = 256 * 1024
_ACCEPTED_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def _reject(reason: str) -> AuthenticationError:
    return AuthenticationError(reason, token_sent=True)


def token_audiences(settings: Settings) -> tuple[str, ...]:
    """The audiences a token may carry: `KPI_JWT_AUDIENCE`, else with an issuer the MCP resource URL
    (`KPI_PUBLIC_URL` + `/mcp`, what MCP clients ask for as the RFC 8707 `resource`), else none (not checked)."""
    if settings.KPI_JWT_AUDIENCE:
        return settings.KPI_JWT_AUDIENCE
    if settings.KPI_JWT_ISSUER:
        return (resource_url(settings),)
    return ()


def discovery_urls(issuer: str) -> tuple[str, ...]:
    """Where an issuer's metadata is looked for, in order: OpenID Connect Discovery 1.0 §4
    (`{issuer}/.well-known/openid-configuration`), then RFC 8414 §3.1 (the well-known segment before the path)."""
    base = issuer.rstrip("/")
    parts = urlsplit(base)
    return (
        base + "/.well-known/openid-configuration",
        f"{parts.scheme}://{parts.netloc}/.well-known/oauth-authorization-server{parts.path}",
    )


class TokenVerifier:
    """Verifies bearer JWTs against the configured HS256 secret and/or JWKS, and returns the `Principal`."""

    def __init__(
        self,
        settings: Settings,
        *,
        http_client: httpx2.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        jwks_refetch_interval: float = 30.0,
        jwks_max_age: float = 3600.0,
    ) -> None:
        """Build from settings; `http_client` (for the JWKS) and `clock` (unix seconds: remembered tokens, the JWKS
        refresh rate limit) are injectable."""
        # The secret's length and the URLs' schemes are checked where settings are read (`Settings` validators).
        secret = settings.KPI_JWT_SECRET.get_secret_value().strip() if settings.KPI_JWT_SECRET else ""
        self._secret: str | None = secret or None
        self._jwks_url: str | None = settings.KPI_JWKS_URL  # both stripped, or None when blank (`Settings`)
        self._issuer: str | None = settings.KPI_JWT_ISSUER
        self._audience: list[str] | None = list(token_audiences(settings)) or None
        self._scope_claims = tuple(settings.KPI_JWT_SCOPE_CLAIMS)
        self._role_claims = tuple(settings.KPI_JWT_ROLE_CLAIMS)
        self._discovered_jwks_url: str | None = None
        self._discovered_at: float | None = None
        self._leeway = settings.KPI_JWT_LEEWAY
        self._timeout = httpx2.Timeout(settings.KPI_UPSTREAM_TIMEOUT, connect=settings.KPI_UPSTREAM_CONNECT_TIMEOUT)
        self._client = http_client
        self._owns_client = False
        self._clock = clock
        self._refetch_interval = jwks_refetch_interval
        self._max_age = jwks_max_age
        self._lock = anyio.Lock()
        self._keys_by_kid: dict[str, jwt.PyJWK] = {}
        self._keys_without_kid: list[jwt.PyJWK] = []
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._last_fetch_failed = False
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    @property
    def configured(self) -> bool:
        """Whether any verification method (HS256 secret, JWKS URL or OpenID Connect issuer) is configured."""
        return self._secret is not None or self._jwks_url is not None or self._issuer is not None

    @property
    def issuer(self) -> str | None:
        """The OpenID Connect issuer tokens must come from, if configured."""
        return self._issuer

    @property
    def key_source(self) -> str | None:
        """Where RS256/ES256 keys come from: `KPI_JWKS_URL`, else the issuer (by its discovery); None without."""
        return self._jwks_url or self._issuer

    @property
    def uses_jwks(self) -> bool:
        """Whether RS256/ES256 tokens are verified (keys from `KPI_JWKS_URL` or the issuer's discovery)."""
        return self._jwks_url is not None or self._issuer is not None

    async def verify(self, token: str) -> Principal:
        """Verify a bearer JWT and return its principal; raise `AuthenticationError` with a short reason otherwise.

        A token that verified is remembered until it expires (at most `VERIFIED_TTL` seconds, bounded in number),
        so a caller's repeated requests do not pay for signature checks again.
        """
        now = self._clock()
        remembered = self._verified.get(token)
        if remembered is not None:
            principal, valid_until = remembered
            if now < valid_until:
                self._verified.move_to_end(token)
                return principal
            del self._verified[token]
        principal = await self._verify(token)
        expires = principal.expires_at if principal.expires_at is not None else now
        self._verified[token] = (principal, min(expires, now + VERIFIED_TTL))
        while len(self._verified) > VERIFIED_MAX_ENTRIES:
            self._verified.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> Principal:
        if not self.configured:
            raise _reject("token verification is not configured")
        if len(token) > MAX_TOKEN_LENGTH:
            raise _reject("token too large")
        if not token or not token.isascii():
            raise _reject("malformed token")
        alg, kid = _read_header(token)
        key: str | jwt.PyJWK
        if alg == HMAC_ALGORITHM:
            if self._secret is None:
                raise _reject("no verification key configured")
            key = self._secret
        elif alg in JWKS_ALGORITHMS:
            if not self.uses_jwks:
                raise _reject("no verification key configured")
            key = await self._jwks_key(alg, kid)
        else:
            raise _reject("unsupported algorithm")
        claims = self._decode(token, key, alg)
        _check_numeric_dates(claims)
        self._check_times(claims)
        return _principal(claims, scope_claims=self._scope_claims, role_claims=self._role_claims)

    def _check_times(self, claims: Mapping[str, object]) -> None:
        """`exp`, `nbf` and `iat` against the injected clock (PyJWT would read the wall clock), with the leeway."""
        now = self._clock()
        exp, nbf, iat = (claims.get(name) for name in TIME_CLAIMS)
        if isinstance(exp, int | float) and now >= exp + self._leeway:
            raise _reject("token expired")
        for value in (nbf, iat):
            if isinstance(value, int | float) and value > now + self._leeway:
                raise _reject("token not yet valid")

    async def aclose(self) -> None:
        """Close the HTTP client this verifier created itself (an injected client is left open)."""
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None
            self._owns_client = False

    async def __aenter__(self) -> Self:
        """Use the verifier as an async context manager that closes its own client on exit."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close the HTTP client this verifier created itself."""
        await self.aclose()

    def _decode(self, token: str, key: str | jwt.PyJWK, alg: str) -> dict[str, object]:
        options: Options = {
            "require": ["sub", "exp"],
            "verify_exp": False,  # checked by `_check_times` against the injected clock
            "verify_nbf": False,
            "verify_iat": False,
            "verify_aud": self._audience is not None,
            "enforce_minimum_key_length": True,
        }
        try:
            return jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                options=options,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
            )
        except jwt.ExpiredSignatureError:
            raise _reject("token expired") from None
        except jwt.ImmatureSignatureError:
            raise _reject("token not yet valid") from None
        except jwt.InvalidSignatureError:
            raise _reject("invalid signature") from None
        except jwt.InvalidAudienceError:
            raise _reject("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise _reject("wrong issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _reject(_missing_claim_reason(exc.claim)) from None
        except InvalidSubjectError:
            raise _reject("invalid subject") from None
        except jwt.InvalidAlgorithmError:
            raise _reject("unsupported algorithm") from None
        except jwt.InvalidKeyError:
            raise _reject("unusable verification key") from None
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError):
            raise _reject("malformed token") from None

    async def _jwks_key(self, alg: str, kid: str | None) -> jwt.PyJWK:
        key = self._lookup(alg, kid)
        if key is not None and not self._stale():
            return key
        async with self._lock:
            key = self._lookup(alg, kid)
            if key is not None and not self._stale():
                return key
            await self._refresh_if_due()
            key = self._lookup(alg, kid)
        if key is not None:
            return key  # possibly from a stale key set whose refresh failed or was rate-limited
        if self._last_fetch_failed and self._fetched_at is None:
            raise _reject("signing keys unavailable")
        raise _reject("unknown signing key")

    async def signing_keys(self) -> str | None:
        """Whether JWKS-signed tokens can be verified now: None when keys are held (fetched, through the issuer's
        discovery when configured), else why not. Fetches when the keys are stale, at the verifier's usual rate
        limit, so `/readyz` never costs the identity provider more than token checks do."""
        if not self.uses_jwks:
            return None
        if self._stale():
            async with self._lock:
                if self._stale():
                    await self._refresh_if_due()
        if self._keys_by_kid or self._keys_without_kid:
            return None
        if self._jwks_url is None and self._discovered_jwks_url is None:
            return f"the issuer's discovery document could not be read (or names another issuer than {self._issuer})"
        return "the JWKS could not be fetched or holds no usable key"

    async def _refresh_if_due(self) -> None:
        """Refetch the keys unless the last attempt is younger than the refetch interval (the caller holds the lock):
        unknown kids and `/readyz` never hammer the identity provider."""
        now = self._clock()
        if self._attempted_at is None or now - self._attempted_at >= self._refetch_interval:
            self._attempted_at = now
            await self._refresh()

    def _stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._max_age

    def _lookup(self, alg: str, kid: str | None) -> jwt.PyJWK | None:
        if kid is not None:
            return self._keys_by_kid.get(kid)
        candidates = [
            key for key in (*self._keys_by_kid.values(), *self._keys_without_kid) if key.algorithm_name == alg
        ]
        return candidates[0] if len(candidates) == 1 else None

    def _http(self) -> httpx2.AsyncClient:
        if self._client is None:  # made on first use, so a verifier without a JWKS never makes one
            from shared.clients._http import tls_context  # the upstream clients' one TLS context

            self._client = httpx2.AsyncClient(timeout=self._timeout, verify=tls_context())
            self._owns_client = True
        return self._client

    async def _jwks_location(self) -> str | None:
        """`KPI_JWKS_URL`, else the issuer's `jwks_uri` from its discovery document (fetched again when older than
        the JWKS max age; on failure the last one found is kept)."""
        if self._jwks_url is not None:
            return self._jwks_url
        assert self._issuer is not None
        fresh = self._discovered_at is not None and self._clock() - self._discovered_at < self._max_age
        if not fresh:
            for url in discovery_urls(self._issuer):
                found = await self._discover(url, self._issuer)
                if found is not None:
                    self._discovered_jwks_url, self._discovered_at = found, self._clock()
                    break
        return self._discovered_jwks_url

    async def _discover(self, url: str, issuer: str) -> str | None:
        """The `jwks_uri` of the metadata document at `url`, when it is one for exactly `issuer`."""
        try:
            response = await self._http().get(url, headers={"Accept": "application/json"})
            if response.status_code != 200 or len(response.content) > _MAX_DISCOVERY_BYTES:
                return None
            document: object = response.json()
        except (httpx2.HTTPError, ValueError):
            return None
        if not isinstance(document, dict):
            return None
        metadata = cast("dict[str, object]", document)
        jwks_uri = metadata.get("jwks_uri")
        if metadata.get("issuer") != issuer or not isinstance(jwks_uri, str):
            return None  # OpenID Connect Discovery §4.3, RFC 8414 §3.3: the issuer must be identical
        try:
            check_https_url(jwks_uri, "jwks_uri")
        except ValueError:
            return None
        return jwks_uri

    async def _refresh(self) -> None:
        """Fetch the JWKS and replace the key cache; on any failure keep the previous keys."""
        jwks_url = await self._jwks_location()
        if jwks_url is None:
            self._last_fetch_failed = True
            return
        try:
            response = await self._http().get(jwks_url, headers={"Accept": "application/json"})
            if response.status_code != 200 or len(response.content) > _MAX_JWKS_BYTES:
                self._last_fetch_failed = True
                return
            document: object = response.json()
        except (httpx2.HTTPError, ValueError):
            self._last_fetch_failed = True
            return
        parsed = _parse_jwks(document)
        if parsed is None:
            self._last_fetch_failed = True
            return
        self._keys_by_kid, self._keys_without_kid = parsed
        self._fetched_at = self._clock()
        self._last_fetch_failed = False


def _read_header(token: str) -> tuple[str, str | None]:
    """The `alg` and `kid` of the unverified header (`typ` is checked); nothing else in it is trusted."""
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, ValueError, TypeError):
        raise _reject("malformed token") from None
    alg = header.get("alg")
    kid = header.get("kid")
    typ = header.get("typ")
    if not isinstance(alg, str) or not alg:
        raise _reject("malformed token")
    if kid is not None and not isinstance(kid, str):
        raise _reject("malformed token")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYPES):
        raise _reject("unsupported token type")
    return alg, kid


def _parse_jwks(document: object) -> tuple[dict[str, jwt.PyJWK], list[jwt.PyJWK]] | None:
    """The usable signing keys of a JWKS document, or None when it is not a JWKS at all."""
    if not isinstance(document, dict):
        return None
    entries = cast("dict[str, object]", document).get("keys")
    if not isinstance(entries, list):
        return None
    by_kid: dict[str, jwt.PyJWK] = {}
    without_kid: list[jwt.PyJWK] = []
    for entry in cast("list[object]", entries):
        key = _parse_jwk(entry)
        if key is None:
            continue
        kid = key.key_id
        if isinstance(kid, str) and kid:
            by_kid.setdefault(kid, key)
        else:
            without_kid.append(key)
    return by_kid, without_kid


def _parse_jwk(entry: object) -> jwt.PyJWK | None:
    """One JWKS entry as an RS256/ES256 verification key, or None when it is unusable (skipped, never fatal)."""
    if not isinstance(entry, dict):
        return None
    data = cast("dict[str, object]", entry)
    if data.get("kty") not in ("RSA", "EC"):
        return None  # symmetric ("oct") or unknown key types never come from a JWKS
    if data.get("use", "sig") != "sig":
        return None
    alg = data.get("alg")
    if alg is not None and alg not in JWKS_ALGORITHMS:
        return None
    if "d" in data:
        return None  # a private key published by mistake: refuse to use it
    try:
        key = jwt.PyJWK(dict(data))
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return None
    if key.algorithm_name not in JWKS_ALGORITHMS or key.Algorithm.check_key_length(key.key) is not None:
        return None
    return key


TIME_CLAIMS = ("exp", "nbf", "iat")


def _check_numeric_dates(claims: Mapping[str, object]) -> None:
    """`exp`, `nbf` and `iat`, when present, are RFC 7519 NumericDates: JSON numbers, finite. PyJWT also accepts a
    string of digits, which the rest of the service would read as "no expiry"."""
    for name in TIME_CLAIMS:
        if name not in claims:
            continue
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise _reject(f"{name} is not a NumericDate")


def _missing_claim_reason(claim: str) -> str:
    if claim == "aud":
        return "wrong audience"
    if claim == "iss":
        return "wrong issuer"
    if claim == "sub":
        return "missing subject"
    if claim == "exp":
        return "token has no expiry"
    return "missing required claim"


def _strings(value: object) -> frozenset[str]:
    """Names from a string separated by the space character only (RFC 6749 §3.3: a tab or a non-breaking space is
    part of a name, not a separator) or a list of names (each taken as it is; one holding a space is no name);
    anything else is ignored."""
    if isinstance(value, str):
        return frozenset(name for name in value.split(" ") if name)
    if isinstance(value, list):
        items = cast("list[object]", value)
        return frozenset(item for item in items if isinstance(item, str) and item and " " not in item)
    return frozenset()


def claim(claims: Mapping[str, object], name: str) -> object:
    """The claim `name`: a top-level claim of exactly that name (Auth0's namespaced claims are URLs with dots), else
    the dotted path through nested objects (`realm_access.roles`); None when absent."""
    if name in claims:
        return claims[name]
    value: object = dict(claims)
    for part in name.split("."):
        value = _member(value, part)
    return value


def _member(value: object, key: str) -> object:
    return cast("dict[str, object]", value).get(key) if isinstance(value, dict) else None


def _principal(
    claims: Mapping[str, object],
    *,
    scope_claims: Sequence[str],
    role_claims: Sequence[str],
) -> Principal:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip():
        raise _reject("missing subject")
    scopes = frozenset[str]().union(*(_strings(claim(claims, name)) for name in scope_claims))
    roles = frozenset[str]().union(*(_strings(claim(claims, name)) for name in role_claims))
    jti = claims.get("jti")
    exp = claims.get("exp")
    expires_at = math.floor(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None
    return Principal(
        subject=subject,
        scopes=scopes,
        roles=roles,
        token_id=jti if isinstance(jti, str) and jti else None,
        expires_at=expires_at,
    )


def mint_token(
    secret: str,
    *,
    subject: str,
    scopes: Sequence[str] = (KPI_READ,),
    roles: Sequence[str] = (),
    ttl: int = 3600,
    issuer: str | None = None,
    audience: str | None = None,
    now: int | None = None,
) -> str:
    """Mint an HS256 bearer token that `TokenVerifier` accepts with the same (stripped) secret."""
    key = secret.strip()
    if len(key.encode()) < MIN_SECRET_LENGTH:
        raise ValueError(f"The HS256 secret must be at least {MIN_SECRET_LENGTH} bytes long.")
    if not subject.strip():
        raise ValueError("The token subject must not be empty.")
    if ttl <= 0:
        raise ValueError("The token ttl must be a positive number of seconds.")
    if isinstance(scopes, str) or isinstance(roles, str):
        raise TypeError("scopes and roles are sequences of names, not a single string.")
    if any(not name or name.split() != [name] for name in (*scopes, *roles)):
        raise ValueError("Scope and role names must be non-empty and contain no whitespace.")
    issued_at = int(time.time()) if now is None else now
    payload: dict[str, object] = {
        "sub": subject,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + ttl,
        "jti": secrets.token_urlsafe(16),
    }
    if scopes:
        payload["scope"] = " ".join(dict.fromkeys(scopes))
    if roles:
        payload["roles"] = list(dict.fromkeys(roles))
    if issuer is not None:
        payload["iss"] = issuer
    if audience is not None:
        payload["aud"] = audience
    return jwt.encode(payload, key, algorithm=HMAC_ALGORITHM, headers={"typ": "JWT"})


def parse_authorization_header(value: str | None) -> str | None:
    """The token of a `Bearer <token>` Authorization header; None when absent, `AuthenticationError` when malformed."""
    if value is None or not value.strip():
        return None
    parts = value.split()
    if len(parts) != 2 or parts[0].lower() != "bearer" or not _BEARER_TOKEN.fullmatch(parts[1]):
        raise AuthenticationError(
            "Malformed Authorization header: expected 'Bearer <token>'.",
            token_sent=True,
        )
    return parts[1]
