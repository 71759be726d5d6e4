"""The token verifier: HS256 with our secret, RS256/ES256 from a JWKS, and nothing else."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.warnings import InsecureKeyLengthWarning
from pydantic import SecretStr

from shared.auth.scopes import KPI_READ, Principal, has_kpi_access
from shared.auth.tokens import MAX_TOKEN_LENGTH, TokenVerifier, mint_token, parse_authorization_header
from shared.errors import AuthenticationError
from shared.settings import Settings

SECRET = "test-secret-0123456789-abcdefghijklmnop"
OTHER_SECRET = "another-secret-0123456789-abcdefghijkl"
JWKS_URL = "https://issuer.test/.well-known/jwks.json"
ISSUER = "https://issuer.test"
AUDIENCE = "https://kpi.test"


def make_settings(
    *,
    secret: str | None = SECRET,
    jwks_url: str | None = None,
    issuer: str | None = None,
    audience: str | None = None,
    leeway: float = 0.0,
) -> Settings:
    """Settings with every auth field given explicitly, so neither the environment nor a `.env` can leak in."""
    return Settings(
        KPI_JWT_SECRET=SecretStr(secret) if secret is not None else None,
        KPI_JWKS_URL=jwks_url,
        KPI_JWT_ISSUER=issuer,
        KPI_JWT_AUDIENCE=(audience,) if audience else (),
        KPI_JWT_LEEWAY=leeway,
    )


def now() -> int:
    return int(time.time())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: object) -> str:
    return b64(json.dumps(value).encode())


def hs256(claims: dict[str, Any], *, secret: str = SECRET, headers: dict[str, Any] | None = None) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", headers=headers)


def hmac_signed(header: str, payload: str, key: bytes) -> str:
    """A compact HS256 JWS over already-encoded segments, built by hand so nothing validates it first."""
    signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def claims(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"sub": "alice", "scope": KPI_READ, "iat": now(), "exp": now() + 600}
    base.update(extra)
    return {key: value for key, value in base.items() if value is not None}


async def rejection(verifier: TokenVerifier, token: str) -> AuthenticationError:
    """Verify a token that must be rejected; return the error after checking it leaks nothing."""
    with pytest.raises(AuthenticationError) as caught:
        await verifier.verify(token)
    error = caught.value
    assert error.token_sent is True
    assert error.status == 401
    message = str(error)
    assert not token or token not in message
    assert SECRET not in message
    for segment in token.split("."):
        if len(segment) > 8:
            assert segment not in message
    return error


# --- keys and a JWKS endpoint -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """A private key, its algorithm, its kid and its public JWK."""

    alg: str
    kid: str
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    jwk: dict[str, Any]

    def sign(self, payload: dict[str, Any], *, kid: str | None = "same", headers: dict[str, Any] | None = None) -> str:
        header = dict(headers or {})
        if kid == "same":
            header["kid"] = self.kid
        elif kid is not None:
            header["kid"] = kid
        return jwt.encode(payload, self.private, algorithm=self.alg, headers=header)

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def rsa_key(kid: str, bits: int = 2048) -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return SigningKey("RS256", kid, private, {**jwk, "kid": kid, "use": "sig", "alg": "RS256"})


def ec_key(kid: str) -> SigningKey:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return SigningKey("ES256", kid, private, {**jwk, "kid": kid})


@pytest.fixture(scope="module")
def rsa_signing_key() -> SigningKey:
    return rsa_key("rsa-1")


@pytest.fixture(scope="module")
def ec_signing_key() -> SigningKey:
    return ec_key("ec-1")


@dataclass
class FakeJwks:
    """A JWKS endpoint on an httpx2.MockTransport that counts its requests."""

    keys: list[dict[str, Any]]
    requests: int = 0
    respond: Callable[[], httpx2.Response] | None = None
    seen_urls: list[str] = field(default_factory=list[str])
    delay: float = 0.0

    async def handler(self, request: httpx2.Request) -> httpx2.Response:
        self.requests += 1
        self.seen_urls.append(str(request.url))
        if self.delay:
            await anyio.sleep(self.delay)
        if self.respond is not None:
            return self.respond()
        return httpx2.Response(200, json={"keys": self.keys})

    def client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self.handler))


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        # Tokens are minted on the wall clock (`iat` in whole seconds); the verifier checks them on this one, which
        # starts a little ahead so a token minted a moment later (the next second, on a loaded machine) is not
        # "issued in the future" with no leeway.
        self.now = time.time() + 5

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- HS256 ----------------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_valid_hs256_token_yields_its_principal() -> None:
    exp = now() + 600
    token = hs256(claims(exp=exp, jti="tok-1", roles=["user"], scope="kpi:read other"))
    principal = await TokenVerifier(make_settings()).verify(token)
    assert principal == Principal(
        subject="alice",
        scopes=frozenset({KPI_READ, "other"}),
        roles=frozenset({"user"}),
        token_id="tok-1",
        expires_at=exp,
    )


@pytest.mark.anyio
async def test_a_minted_token_round_trips_with_issuer_and_audience() -> None:
    verifier = TokenVerifier(make_settings(issuer=ISSUER, audience=AUDIENCE))
    token = mint_token(SECRET, subject="bob", roles=("exec",), scopes=(), issuer=ISSUER, audience=AUDIENCE)
    principal = await verifier.verify(token)
    assert principal.subject == "bob"
    assert principal.roles == frozenset({"exec"})
    assert principal.scopes == frozenset()
    assert principal.token_id
    assert has_kpi_access(principal)


@pytest.mark.anyio
async def test_a_token_that_expired_within_the_leeway_is_still_accepted() -> None:
    token = hs256(claims(iat=now() - 100, exp=now() - 10))
    principal = await TokenVerifier(make_settings(leeway=30)).verify(token)
    assert principal.subject == "alice"


def _tampered() -> str:
    header, _, signature = hs256(claims()).split(".")
    return f"{header}.{b64json(claims(sub='mallory', roles=['admin']))}.{signature}"


def _alg_none() -> str:
    return f"{b64json({'alg': 'none', 'typ': 'JWT'})}.{b64json(claims())}."


def _alg_none_signed() -> str:
    _, payload, signature = hs256(claims()).split(".")
    return f"{b64json({'alg': 'none'})}.{payload}.{signature}"


def _raw(header: object, payload: object = None) -> str:
    body = b64json(claims() if payload is None else payload)
    return f"{b64json(header)}.{body}.{b64(b'signature')}"


HS256_REJECTIONS = [
    pytest.param(lambda: hs256(claims(iat=now() - 7200, exp=now() - 3600)), {}, "token expired", id="expired"),
    pytest.param(lambda: hs256(claims(nbf=now() + 3600)), {}, "token not yet valid", id="nbf-in-future"),
    pytest.param(lambda: hs256(claims(iat=now() + 3600)), {}, "token not yet valid", id="iat-in-future"),
    pytest.param(lambda: hs256(claims(iss="https://evil.test")), {"issuer": ISSUER}, "wrong issuer", id="wrong-iss"),
    pytest.param(lambda: hs256(claims()), {"issuer": ISSUER}, "wrong issuer", id="missing-iss"),
    pytest.param(
        lambda: hs256(claims(aud="https://other.test")), {"audience": AUDIENCE}, "wrong audience", id="wrong-aud"
    ),
    pytest.param(lambda: hs256(claims()), {"audience": AUDIENCE}, "wrong audience", id="missing-aud"),
    pytest.param(_tampered, {}, "invalid signature", id="tampered-payload"),
    pytest.param(lambda: hs256(claims(), secret=OTHER_SECRET), {}, "invalid signature", id="other-secret"),
    pytest.param(_alg_none, {}, "unsupported algorithm", id="alg-none"),
    pytest.param(_alg_none_signed, {}, "unsupported algorithm", id="alg-none-with-signature"),
    pytest.param(lambda: _raw({"alg": "NONE"}), {}, "unsupported algorithm", id="alg-NONE"),
    pytest.param(lambda: jwt.encode(claims(), SECRET * 2, algorithm="HS512"), {}, "unsupported algorithm", id="hs512"),
    pytest.param(lambda: _raw({"alg": "PS256"}), {}, "unsupported algorithm", id="ps256"),
    pytest.param(lambda: _raw({"typ": "JWT"}), {}, "malformed token", id="no-alg"),
    pytest.param(lambda: _raw({"alg": ["HS256"]}), {}, "malformed token", id="alg-not-a-string"),
    pytest.param(lambda: _raw({"alg": "HS256", "kid": 7}), {}, "malformed token", id="kid-not-a-string"),
    pytest.param(lambda: hs256(claims(), headers={"typ": "dpop+jwt"}), {}, "unsupported token type", id="foreign-typ"),
    pytest.param(lambda: hs256(claims(sub=None)), {}, "missing subject", id="missing-sub"),
    pytest.param(lambda: hs256(claims(sub="")), {}, "missing subject", id="empty-sub"),
    pytest.param(lambda: hs256(claims(sub=42)), {}, "invalid subject", id="sub-not-a-string"),
    pytest.param(lambda: hs256(claims(exp="tomorrow")), {}, "exp is not a NumericDate", id="exp-not-a-number"),
    pytest.param(lambda: "not-a-jwt", {}, "malformed token", id="one-segment"),
    pytest.param(lambda: "a.b", {}, "malformed token", id="two-segments"),
    pytest.param(lambda: "a.b.c.d", {}, "malformed token", id="four-segments"),
    pytest.param(lambda: "", {}, "malformed token", id="empty"),
    pytest.param(lambda: "ü" + hs256(claims()), {}, "malformed token", id="non-ascii"),
    pytest.param(lambda: f"{b64(b'{not json')}.{b64json(claims())}.sig", {}, "malformed token", id="header-not-json"),
    pytest.param(
        lambda: hmac_signed(b64json({"alg": "HS256"}), b64json([1, 2]), SECRET.encode()),
        {},
        "malformed token",
        id="payload-not-an-object",
    ),
    pytest.param(
        lambda: hmac_signed(b64json({"alg": "HS256"}), b64(b"{nope"), SECRET.encode()),
        {},
        "malformed token",
        id="payload-not-json",
    ),
    pytest.param(lambda: _raw({"alg": "HS256"}, payload=[1, 2]), {}, "invalid signature", id="unsigned-junk"),
    pytest.param(
        lambda: hs256(claims(pad="x" * MAX_TOKEN_LENGTH)), {}, "token too large", id="oversized-but-validly-signed"
    ),
    pytest.param(lambda: "x" * 1_000_000, {}, "token too large", id="huge-junk"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("make_token", "settings_kwargs", "reason"), HS256_REJECTIONS)
async def test_a_bad_hs256_token_is_rejected_with_a_short_secret_free_reason(
    make_token: Callable[[], str], settings_kwargs: dict[str, Any], reason: str
) -> None:
    verifier = TokenVerifier(make_settings(**settings_kwargs))
    error = await rejection(verifier, make_token())
    assert str(error) == reason


@pytest.mark.anyio
async def test_issuer_and_audience_are_enforced_only_when_configured() -> None:
    token = hs256(claims(iss="https://anyone.test", aud="https://anything.test"))
    assert (await TokenVerifier(make_settings()).verify(token)).subject == "alice"


@pytest.mark.anyio
async def test_a_verifier_with_nothing_configured_rejects_every_token() -> None:
    verifier = TokenVerifier(make_settings(secret=None))
    assert verifier.configured is False
    error = await rejection(verifier, hs256(claims()))
    assert str(error) == "token verification is not configured"


@pytest.mark.parametrize(
    ("secret", "jwks_url", "configured"),
    [
        pytest.param(SECRET, None, True, id="secret"),
        pytest.param(None, JWKS_URL, True, id="jwks"),
        pytest.param(SECRET, JWKS_URL, True, id="both"),
        pytest.param(None, None, False, id="neither"),
        pytest.param("   ", "  ", False, id="blank-values-count-as-unset"),
    ],
)
def test_configured_reports_whether_any_verification_method_exists(
    secret: str | None, jwks_url: str | None, configured: bool
) -> None:
    assert TokenVerifier(make_settings(secret=secret, jwks_url=jwks_url)).configured is configured


@pytest.mark.parametrize(
    ("secret", "jwks_url"),
    [
        pytest.param("short", None, id="secret-shorter-than-32-bytes"),
        pytest.param(None, "http://issuer.test/jwks", id="jwks-over-plain-http"),
        pytest.param(None, "ftp://issuer.test/jwks", id="jwks-over-ftp"),
        pytest.param(None, "https:///jwks", id="jwks-without-host"),
    ],
)
def test_an_unsafe_configuration_is_refused_at_construction(secret: str | None, jwks_url: str | None) -> None:
    with pytest.raises(ValueError, match=r"KPI_JWT_SECRET|KPI_JWKS_URL") as caught:
        TokenVerifier(make_settings(secret=secret, jwks_url=jwks_url))
    assert "short" not in str(caught.value)


def test_a_jwks_on_localhost_may_use_plain_http() -> None:
    assert TokenVerifier(make_settings(secret=None, jwks_url="http://127.0.0.1:8080/jwks")).configured


# --- claims -> principal -------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("extra", "scopes", "roles", "allowed"),
    [
        pytest.param({"scope": "kpi:read"}, {KPI_READ}, set[str](), True, id="scope-string"),
        pytest.param({"scope": "a  kpi:read b"}, {"a", KPI_READ, "b"}, set[str](), True, id="scope-string-spaces"),
        pytest.param(
            {"scope": "a kpi:read\tb kpi:read\u00a0c"},
            {"a", "kpi:read\tb", "kpi:read\u00a0c"},
            set[str](),
            False,
            id="scope-string-split-on-space-only",
        ),
        pytest.param({"scope": ["kpi:read"]}, {KPI_READ}, set[str](), True, id="scope-as-list"),
        pytest.param({"scope": None, "scp": ["kpi:read", "x"]}, {KPI_READ, "x"}, set[str](), True, id="scp-list"),
        pytest.param({"scope": None, "scp": "kpi:read x"}, {KPI_READ, "x"}, set[str](), True, id="scp-string"),
        pytest.param({"scope": None, "scopes": ["kpi:read"]}, {KPI_READ}, set[str](), True, id="scopes-list"),
        pytest.param({"scope": "a", "scp": ["b"], "scopes": "c"}, {"a", "b", "c"}, set[str](), False, id="union"),
        pytest.param({"scope": None, "role": "admin"}, set[str](), {"admin"}, True, id="role-string-admin"),
        pytest.param({"scope": None, "roles": ["exec", "user"]}, set[str](), {"exec", "user"}, True, id="roles-exec"),
        pytest.param({"scope": None, "roles": ["user"]}, set[str](), {"user"}, False, id="user-role"),
        pytest.param({"scope": None}, set[str](), set[str](), False, id="no-scopes"),
        pytest.param({"scope": ""}, set[str](), set[str](), False, id="empty-scope-string"),
        pytest.param({"scope": 123, "scp": {"kpi:read": True}}, set[str](), set[str](), False, id="junk-scope-types"),
        pytest.param(
            {"scope": None, "scopes": [1, None, ["kpi:read"], {"a": 1}, " ", "kpi:read"]},
            {KPI_READ},
            set[str](),
            True,
            id="junk-inside-scope-list",
        ),
        pytest.param({"scope": None, "role": {"admin": True}}, set[str](), set[str](), False, id="junk-role-type"),
        pytest.param({"scope": None, "roles": [True, 3.5, "exec"]}, set[str](), {"exec"}, True, id="junk-in-roles"),
        pytest.param({"scope": None, "roles": "Admin"}, set[str](), {"Admin"}, False, id="roles-case-sensitive"),
    ],
)
async def test_scopes_and_roles_are_read_from_the_usual_claims_ignoring_junk(
    extra: dict[str, Any], scopes: set[str], roles: set[str], allowed: bool
) -> None:
    principal = await TokenVerifier(make_settings()).verify(hs256(claims(**extra)))
    assert principal.scopes == scopes
    assert principal.roles == roles
    assert has_kpi_access(principal) is allowed


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        pytest.param({"jti": 5}, "malformed token", id="jti-not-a-string"),
        pytest.param({"jti": ""}, None, id="empty-jti"),
        pytest.param({"exp": None}, "token has no expiry", id="no-exp"),
        pytest.param({"exp": True}, "exp is not a NumericDate", id="exp-a-bool"),
        pytest.param({"nbf": "soon"}, "nbf is not a NumericDate", id="nbf-not-a-number"),
        pytest.param({"iat": "earlier"}, "iat is not a NumericDate", id="iat-not-a-number"),
        pytest.param({"aud": 5}, None, id="junk-aud-when-no-audience-is-configured"),
    ],
)
async def test_standard_claims_of_the_wrong_type_are_rejected_or_ignored_never_a_crash(
    extra: dict[str, Any], reason: str | None
) -> None:
    verifier = TokenVerifier(make_settings())
    token = hs256(claims(**extra))
    if reason is not None:
        assert str(await rejection(verifier, token)) == reason
        return
    principal = await verifier.verify(token)
    assert principal.token_id is None
    assert principal.expires_at is None or isinstance(principal.expires_at, int)


# --- JWKS ----------------------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("key_name", ["rsa_signing_key", "ec_signing_key"])
async def test_an_asymmetric_token_verifies_with_a_key_from_the_jwks(
    key_name: str, request: pytest.FixtureRequest
) -> None:
    key: SigningKey = request.getfixturevalue(key_name)
    jwks = FakeJwks(keys=[key.jwk])
    async with jwks.client() as client:
        verifier = TokenVerifier(make_settings(secret=None, jwks_url=JWKS_URL), http_client=client)
        principal = await verifier.verify(key.sign(claims()))
        again = await verifier.verify(key.sign(claims(sub="bob")))
    assert principal.subject == "alice"
    assert again.subject == "bob"
    assert jwks.requests == 1, "keys are cached by kid"
    assert jwks.seen_urls == [JWKS_URL]


@pytest.mark.anyio
async def test_a_token_without_kid_uses_the_only_matching_jwks_key(ec_signing_key: SigningKey) -> None:
    jwks = FakeJwks(keys=[ec_signing_key.jwk])
    async with jwks.client() as client:
        verifier = TokenVerifier(make_settings(secret=None, jwks_url=JWKS_URL), http_client=client)
        principal = await verifier.verify(ec_signing_key.sign(claims(), kid=None))
    assert principal.subject == "alice"


@pytest.mark.anyio
async def test_both_methods_can_be_configured_and_the_header_picks_the_path(rsa_signing_key: SigningKey) -> None:
    jwks = FakeJwks(keys=[rsa_signing_key.jwk])
    async with jwks.client() as client:
        verifier = TokenVerifier(make_settings(jwks_url=JWKS_URL), http_client=client)
        assert (await verifier.verify(hs256(claims(sub="hs")))).subject == "hs"
        assert jwks.requests == 0, "an HS256 token never touches the JWKS"
        assert (await verifier.verify(rsa_signing_key.sign(claims(sub="rs")))).subject == "rs"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        pytest.param(None, "no verification key configured", id="jwks-only"),
        pytest.param(OTHER_SECRET, "invalid signature", id="jwks-and-a-secret"),
    ],
)
async def test_an_hs256_token_signed_with_the_rsa_public_key_is_rejected(
    rsa_signing_key: SigningKey, secret: str | None, reason: str
) -> None:
    payload = b64json(claims(sub="mallory", roles=["admin"]))
    header = b64json({"alg": "HS256", "typ": "JWT", "kid": rsa_signing_key.kid})
    token = hmac_signed(header, payload, rsa_signing_key.public_pem())
    jwks = FakeJwks(keys=[rsa_signing_key.jwk])
    async with jwks.client() as client:
        verifier = TokenVerifier(make_settings(secret=secret, jwks_url=JWKS_URL), http_client=client)
        error = await rejection(verifier, token)
    assert str(error) == reason
    assert rsa_signing_key.public_pem().decode() not in str(error)


@pytest.mark.anyio
async def test_an_asymmetric_token_is_rejected_when_only_a_secret_is_configured(rsa_signing_key: SigningKey) -> None:
    error = await rejection(TokenVerifier(make_settings()), rsa_signing_key.sign(claims()))
    assert str(error) == "no verification key configured"


@pytest.mark.anyio
async def test_an_hs256_token_is_rejected_when_only_a_jwks_is_configured() -> None:
    jwks = FakeJwks(keys=[])
    async with jwks.client() as client:
        verifier = TokenVerifier(make_settings(secret=None, jwks_url=JWKS_URL), http_client=client)
        error = await rejection(verifier, hs256(claims()))
    assert str(error) == "no verification key configured"
    assert jwks.requests == 0


@pytest.mark.anyio
async def test_a_token_whose_alg_does_not_match_its_jwks_key_is_rejected(
    rsa_signing_key: SigningKey, ec_signing_key: SigningKey
) -> None:
    forged = ec_signing_key.sign(claims(), kid=rsa_signing_key.kid)  # ES256 header, kid of the RSA key
    jwks = FakeJwks(keys=[rsa_signing_key.jwk, ec_signing_key.jwk])
    async with jwks.client() as client:
        verifier = TokenVerifier(make_settings(secret=None, jwks_url=JWKS_URL), http_client=client)
        error = await rejection(verifier, forged)
    assert str(error) == "unsupported algorithm"


@pytest.mark.anyio
async def test_a_token_signed_by_another_key_under_a_known_kid_is_rejected(rsa_signing_key: SigningKey) -> None:
    impostor = rsa_key(rsa_signing_key.kid)
    jwks = FakeJwks(keys=[rsa_signing_key.jwk])
    async with jwks.client() as client:
        verifier = TokenVerifier(make_settings(secret=None, jwks_url=JWKS_URL), http_client=client)
        error = await rejection(verifier, impostor.sign(claims()))
    assert str(error) == "invalid signature"


@pytest.mark.anyio
async def test_unusable_jwks_entries_are_skipped_not_fatal(rsa_signing_key: SigningKey) -> None:
    weak = rsa_key("weak", bits=1024)
    with pytest.warns(InsecureKeyLengthWarning):
        weak_token = weak.sign(claims())
    oct_jwk = {"kty": "oct", "kid": "oct-1", "k": b64(SECRET.encode()), "alg": "HS256"}
    junk: list[Any] = [
        "not a key",
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
        {"kty": "RSA"},
        {**rsa_signing_key.jwk, "kid": "enc-key", "use": "enc"},
        {**rsa_signing_key.jwk, "kid": "rs512-key", "alg": "RS512"},
        oct_jwk,
        weak.jwk,
    ]
    jwks = FakeJwks(keys=[*junk, rsa_signing_key.jwk])
    async with jwks.client() as client:
        verifier = TokenVerifier(make_settings(secret=None, jwks_url=JWKS_URL), http_client=client)
        assert (await verifier.verify(rsa_signing_key.sign(claims()))).subject == "alice"
        assert str(await rejection(verifier, weak_token)) == "unknown signing key"
        oct_token = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"kid": "oct-1"})
        assert str(await rejection(verifier, oct_token)) == "no verification key configured"


@pytest.mark.anyio
async def test_an_unknown_kid_triggers_one_rate_limited_refetch(rsa_signing_key: SigningKey) -> None:
    clock = FakeClock()
    rotated = rsa_key("rsa-2")
    jwks = FakeJwks(keys=[rsa_signing_key.jwk])
    async with jwks.client() as client:
        verifier = TokenVerifier(
            make_settings(secret=None, jwks_url=JWKS_URL), http_client=client, clock=clock, jwks_refetch_interval=30
        )
        await verifier.verify(rsa_signing_key.sign(claims()))
        assert jwks.requests == 1

        # A key the issuer does not publish: one refetch, then no more until the interval has passed.
        clock.advance(31)
        stranger = rsa_key("nobody").sign(claims())
        assert str(await rejection(verifier, stranger)) == "unknown signing key"
        assert jwks.requests == 2
        for _ in range(5):
            await rejection(verifier, stranger)
        assert jwks.requests == 2, "unknown kids must not hammer the JWKS endpoint"

        # The issuer rotates in a new key: still rate-limited until the interval has passed ...
        jwks.keys = [rsa_signing_key.jwk, rotated.jwk]
        clock.advance(10)
        assert str(await rejection(verifier, rotated.sign(claims()))) == "unknown signing key"
        assert jwks.requests == 2
        # ... then one refetch picks it up, and the old key still works from the cache.
        clock.advance(21)
        assert (await verifier.verify(rotated.sign(claims(sub="new")))).subject == "new"
        assert (await verifier.verify(rsa_signing_key.sign(claims(sub="old")))).subject == "old"
        assert jwks.requests == 3


@pytest.mark.anyio
async def test_concurrent_verifications_share_one_jwks_fetch(rsa_signing_key: SigningKey) -> None:
    jwks = FakeJwks(keys=[rsa_signing_key.jwk], delay=0.05)
    subjects: list[str] = []
    async with jwks.client() as client:
        verifier = TokenVerifier(make_settings(secret=None, jwks_url=JWKS_URL), http_client=client)

        async def verify_one(index: int) -> None:
            subjects.append((await verifier.verify(rsa_signing_key.sign(claims(sub=f"user-{index}")))).subject)

        async with anyio.create_task_group() as group:
            for index in range(10):
                group.start_soon(verify_one, index)
    assert sorted(subjects) == sorted(f"user-{index}" for index in range(10))
    assert jwks.requests == 1


@pytest.mark.anyio
async def test_the_key_set_is_refreshed_after_its_max_age_and_kept_if_the_refresh_fails(
    rsa_signing_key: SigningKey,
) -> None:
    clock = FakeClock()
    jwks = FakeJwks(keys=[rsa_signing_key.jwk])
    async with jwks.client() as client:
        verifier = TokenVerifier(
            make_settings(secret=None, jwks_url=JWKS_URL), http_client=client, clock=clock, jwks_max_age=600
        )
        await verifier.verify(rsa_signing_key.sign(claims(jti="1", exp=now() + 3600)))
        clock.advance(599)
        await verifier.verify(rsa_signing_key.sign(claims(jti="2", exp=now() + 3600)))
        assert jwks.requests == 1
        clock.advance(2)
        jwks.respond = lambda: httpx2.Response(503)
        assert (await verifier.verify(rsa_signing_key.sign(claims(jti="3", exp=now() + 3600)))).subject == "alice"
        assert jwks.requests == 2


def _connect_error() -> httpx2.Response:
    raise httpx2.ConnectError("connection refused")


@pytest.mark.anyio
@pytest.mark.parametrize(
    "respond",
    [
        pytest.param(lambda: httpx2.Response(500, text="oops"), id="server-error"),
        pytest.param(lambda: httpx2.Response(404), id="not-found"),
        pytest.param(_connect_error, id="connection-refused"),
        pytest.param(lambda: httpx2.Response(200, text="<html>"), id="not-json"),
        pytest.param(lambda: httpx2.Response(200, json=["keys"]), id="json-not-an-object"),
        pytest.param(lambda: httpx2.Response(200, json={"keys": "none"}), id="keys-not-a-list"),
        pytest.param(lambda: httpx2.Response(200, content=b"\xff\xfe\x00"), id="undecodable-bytes"),
        pytest.param(lambda: httpx2.Response(200, content=b" " * (600 * 1024)), id="oversized-document"),
    ],
)
async def test_a_failing_jwks_endpoint_rejects_the_token_without_crashing(
    rsa_signing_key: SigningKey, respond: Callable[[], httpx2.Response]
) -> None:
    clock = FakeClock()
    jwks = FakeJwks(keys=[rsa_signing_key.jwk], respond=respond)
    async with jwks.client() as client:
        verifier = TokenVerifier(make_settings(secret=None, jwks_url=JWKS_URL), http_client=client, clock=clock)
        token = rsa_signing_key.sign(claims())
        assert str(await rejection(verifier, token)) == "signing keys unavailable"
        await rejection(verifier, token)
        assert jwks.requests == 1, "a failing endpoint is not retried within the interval"
        clock.advance(30)
        jwks.respond = None
        assert (await verifier.verify(token)).subject == "alice"
        assert jwks.requests == 2


@pytest.mark.anyio
async def test_an_injected_http_client_is_left_open() -> None:
    async with FakeJwks(keys=[]).client() as client:
        verifier = TokenVerifier(make_settings(secret=None, jwks_url=JWKS_URL), http_client=client)
        await verifier.aclose()
        assert not client.is_closed


@pytest.mark.anyio
async def test_the_http_client_the_verifier_created_is_closed_by_aclose(rsa_signing_key: SigningKey) -> None:
    # Port 9 (discard) on loopback: the connection is refused, so the verifier creates its client and fails cleanly.
    async with TokenVerifier(make_settings(secret=None, jwks_url="http://127.0.0.1:9/jwks")) as verifier:
        assert str(await rejection(verifier, rsa_signing_key.sign(claims()))) == "signing keys unavailable"
        own_client = verifier._client
        assert own_client is not None
    assert own_client.is_closed
    assert verifier._client is None


# --- mint_token ----------------------------------------------------------------------------------------------------


def test_a_minted_token_carries_the_expected_claims() -> None:
    token = mint_token(SECRET, subject="carol", scopes=("kpi:read", "x", "x"), roles=("admin",), ttl=60, now=1_000)
    header = jwt.get_unverified_header(token)
    payload = jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "HS256"
    assert payload["sub"] == "carol"
    assert payload["scope"] == "kpi:read x"
    assert payload["roles"] == ["admin"]
    assert payload["iat"] == payload["nbf"] == 1_000
    assert payload["exp"] == 1_060


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({"secret": "short"}, ValueError, id="short-secret"),
        pytest.param({"subject": " "}, ValueError, id="blank-subject"),
        pytest.param({"ttl": 0}, ValueError, id="zero-ttl"),
        pytest.param({"scopes": ("kpi read",)}, ValueError, id="scope-with-space"),
        pytest.param({"roles": ("",)}, ValueError, id="empty-role"),
        pytest.param({"scopes": "kpi:read"}, TypeError, id="scopes-as-a-string"),
    ],
)
def test_mint_token_refuses_bad_arguments(kwargs: dict[str, Any], error: type[Exception]) -> None:
    arguments: dict[str, Any] = {"secret": SECRET, "subject": "dave", **kwargs}
    with pytest.raises(error):
        mint_token(**arguments)


# --- parse_authorization_header ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("   ", None, id="blank"),
        pytest.param("Bearer abc.def.ghi", "abc.def.ghi", id="bearer"),
        pytest.param("bearer abc.def.ghi", "abc.def.ghi", id="lowercase-scheme"),
        pytest.param("BEARER abc", "abc", id="uppercase-scheme"),
        pytest.param("  Bearer   abc  ", "abc", id="extra-whitespace"),
        pytest.param("Bearer a-b_c~d+e/f==", "a-b_c~d+e/f==", id="b64token-charset"),
    ],
)
def test_a_bearer_header_yields_its_token_or_none_when_absent(value: str | None, expected: str | None) -> None:
    assert parse_authorization_header(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Basic dXNlcjpwYXNzd29yZA==", id="basic-scheme"),
        pytest.param("Bearer", id="bearer-without-token"),
        pytest.param("Bearer    ", id="bearer-with-only-spaces"),
        pytest.param("Bearer abc def", id="two-tokens"),
        pytest.param("Bearer abc, Bearer def", id="two-credentials"),
        pytest.param("Token abc", id="other-scheme"),
        pytest.param("abc.def.ghi", id="token-without-scheme"),
        pytest.param("Bearer ab=c", id="padding-in-the-middle"),
        pytest.param('Bearer "abc"', id="quoted-token"),
    ],
)
def test_a_malformed_authorization_header_is_an_authentication_error(value: str) -> None:
    with pytest.raises(AuthenticationError) as caught:
        parse_authorization_header(value)
    assert caught.value.token_sent is True
    assert caught.value.status == 401
    for part in value.split()[1:]:
        if part.lower() != "bearer":
            assert part not in str(caught.value)


@pytest.mark.anyio
async def test_a_verified_token_is_remembered_until_it_expires_but_never_past_it() -> None:
    verifier = TokenVerifier(make_settings())
    token = hs256(claims(exp=now() + 600))
    first = await verifier.verify(token)
    assert await verifier.verify(token) is first
    expired = hs256(claims(exp=now() - 3600))
    await rejection(verifier, expired)
    verifier._verified[token] = (first, time.time() - 1)  # its remembered validity ran out
    assert (await verifier.verify(token)).subject == "alice"
