"""Token attacks on every face: REST, MCP over streamable HTTP and MCP over stdio (`KPI_ACCESS_TOKEN`).

Two verifier configurations: our HS256 secret with an issuer and an audience, and a JWKS (RS256, served on loopback)
with the same issuer and audience and no secret. Each attack is refused (401) or, when the token is genuine but
grants nothing, denied (403); a stdio server refuses to start on a 401 (non-zero exit, one stderr line, nothing on
stdout). Expired tokens, foreign signatures and tokens in the query string are covered per face in tests/api and
tests/server and are not repeated here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from jwt.algorithms import RSAAlgorithm
from mcp import Client, StdioServerParameters
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shared.auth.scopes import KPI_READ
from shared.auth.tokens import MAX_TOKEN_LENGTH
from shared.sandbox import SandboxServer, SandboxState
from shared.settings import Settings
from tests.conftest import JWT_SECRET
from tests.server.support import MCP_POST_HEADERS, challenge_params, jsonrpc

from .support import (
    PROBLEM_JSON,
    ThreadServer,
    assert_no_secrets,
    capture_logs,
    hardened_settings,
    http_client,
    logged_text,
    running,
    tool_text,
)

ISSUER = "https://auth.loop-kpi.test"
AUDIENCE = "loop-kpi"
KID = "hardening-rsa-1"
MAU_ARGUMENTS = {"start_month": "2026-06-01", "end_month": "2026-11-01"}
STDIO_COMMAND = [sys.executable, "-m", "api.cli", "mcp", "--sandbox"]
STDIO_TIMEOUT = 60

Verifier = Literal["hs256", "jwks"]
Outcome = Literal[200, 401, 403]


# ---------------------------------------------------------------------------------------------- keys and tokens


@dataclass(frozen=True)
class Keys:
    """The identity provider's RSA key (published in the JWKS) and an attacker's (never published)."""

    private: rsa.RSAPrivateKey
    attacker: rsa.RSAPrivateKey

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def jwk(self) -> dict[str, Any]:
        public: dict[str, Any] = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**public, "kid": KID, "use": "sig", "alg": "RS256"}

    @property
    def attacker_jwk(self) -> dict[str, Any]:
        public: dict[str, Any] = RSAAlgorithm.to_jwk(self.attacker.public_key(), as_dict=True)
        return {**public, "kid": KID, "use": "sig", "alg": "RS256"}


KEYS = Keys(
    rsa.generate_private_key(public_exponent=65537, key_size=2048),
    rsa.generate_private_key(public_exponent=65537, key_size=2048),
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: object) -> str:
    return b64(json.dumps(value).encode())


def claims(**changes: Any) -> dict[str, Any]:
    """Claims the HS256 and the JWKS apps both accept; `None` drops a claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "mallory",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "scope": KPI_READ,
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def hs256(payload: Mapping[str, Any], *, header: Mapping[str, Any] | None = None, key: bytes = b"") -> str:
    """A compact HS256 JWS signed by hand, so nothing refuses the header or the key first."""
    signing_key = key or JWT_SECRET.encode()
    head = b64json({"alg": "HS256", "typ": "JWT", **(header or {})})
    body = b64json(dict(payload))
    signature = hmac.new(signing_key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def rs256(payload: Mapping[str, Any], *, header: Mapping[str, Any] | None = None, attacker: bool = False) -> str:
    key = KEYS.attacker if attacker else KEYS.private
    return jwt.encode(dict(payload), key, algorithm="RS256", headers={"kid": KID, **(header or {})})


def alg_none() -> str:
    return f"{b64json({'alg': 'none', 'typ': 'JWT'})}.{b64json(claims())}."


def tampered_payload() -> str:
    """A genuine token of a plain user whose payload is swapped for one claiming admin, signature kept."""
    head, _, signature = hs256(claims(scope=None, roles=["user"])).split(".")
    return f"{head}.{b64json(claims(scope=None, roles=['admin']))}.{signature}"


def oversized_but_signed() -> str:
    return hs256(claims(padding="p" * MAX_TOKEN_LENGTH))


@dataclass(frozen=True)
class Attack:
    name: str
    make: Callable[[], str]
    verifier: Verifier
    outcome: Outcome


ATTACKS: tuple[Attack, ...] = (
    # positive controls: the attacks below differ from these in one respect only
    Attack("genuine hs256 token", lambda: hs256(claims()), "hs256", 200),
    Attack("genuine rs256 token from the jwks", lambda: rs256(claims()), "jwks", 200),
    # algorithm attacks
    Attack("alg none", alg_none, "hs256", 401),
    Attack("alg none against the jwks", alg_none, "jwks", 401),
    Attack(
        "hs256 signed with the rsa public key pem",
        lambda: hs256(claims(), header={"kid": KID}, key=KEYS.public_pem),
        "jwks",
        401,
    ),
    Attack(
        "hs256 signed with the rsa public key pem, no kid",
        lambda: hs256(claims(), key=KEYS.public_pem),
        "jwks",
        401,
    ),
    Attack("rs256 by an unknown key under the known kid", lambda: rs256(claims(), attacker=True), "jwks", 401),
    Attack(
        "rs256 carrying its own jwk in the header",
        lambda: rs256(claims(), header={"jwk": KEYS.attacker_jwk}, attacker=True),
        "jwks",
        401,
    ),
    Attack(
        "rs256 pointing jku at another key set",
        lambda: rs256(claims(), header={"jku": "http://127.0.0.1:1/jwks.json"}, attacker=True),
        "jwks",
        401,
    ),
    # claims
    Attack("nbf an hour ahead", lambda: hs256(claims(nbf=int(time.time()) + 3600)), "hs256", 401),
    Attack("nbf an hour ahead, rs256", lambda: rs256(claims(nbf=int(time.time()) + 3600)), "jwks", 401),
    Attack("exp as a string of digits", lambda: hs256(claims(exp=str(int(time.time()) + 600))), "hs256", 401),
    Attack("exp as a string of digits, rs256", lambda: rs256(claims(exp=str(int(time.time()) + 600))), "jwks", 401),
    Attack("nbf as a string of digits", lambda: hs256(claims(nbf=str(int(time.time()) - 60))), "hs256", 401),
    Attack("iat as a string of digits", lambda: hs256(claims(iat=str(int(time.time())))), "hs256", 401),
    Attack("exp infinite", lambda: hs256(claims(exp=float("inf"))), "hs256", 401),
    Attack("exp true", lambda: hs256(claims(exp=True)), "hs256", 401),
    Attack("wrong issuer", lambda: hs256(claims(iss="https://evil.test")), "hs256", 401),
    Attack("wrong audience", lambda: hs256(claims(aud="someone-else")), "hs256", 401),
    Attack("wrong audience, rs256", lambda: rs256(claims(aud="someone-else")), "jwks", 401),
    Attack("audience list without ours", lambda: hs256(claims(aud=["a", "b"])), "hs256", 401),
    Attack("tampered payload claiming admin", tampered_payload, "hs256", 401),
    Attack("oversized but validly signed token", oversized_but_signed, "hs256", 401),
    Attack("100 KiB of junk", lambda: "A" * 100 * 1024, "hs256", 401),
    # scope and role spellings
    Attack("scope as a list", lambda: hs256(claims(scope=[KPI_READ])), "hs256", 200),
    Attack("scope as a string among others", lambda: hs256(claims(scope=f"openid {KPI_READ} profile")), "hs256", 200),
    Attack("scp as a list", lambda: hs256(claims(scope=None, scp=["openid", KPI_READ])), "hs256", 200),
    Attack(
        "scope list whose one item holds two names", lambda: hs256(claims(scope=[f"openid {KPI_READ}"])), "hs256", 403
    ),
    Attack(
        "scope separated by a non-breaking space", lambda: hs256(claims(scope=f"openid\u00a0{KPI_READ}")), "hs256", 403
    ),
    Attack("scope separated by a tab", lambda: hs256(claims(scope=f"openid\t{KPI_READ}")), "hs256", 403),
    Attack(
        "scope list item padded with a non-breaking space",
        lambda: hs256(claims(scope=[f"{KPI_READ}\u00a0"])),
        "hs256",
        403,
    ),
    Attack("a scope that only starts like kpi:read", lambda: hs256(claims(scope="kpi:reader")), "hs256", 403),
    Attack("scope as an object", lambda: hs256(claims(scope={KPI_READ: True})), "hs256", 403),
    Attack(
        "roles claimed in the unverified header",
        lambda: hs256(claims(scope=None), header={"roles": ["admin"], "scope": KPI_READ}),
        "hs256",
        403,
    ),
    Attack(
        "roles claimed in the unverified header, rs256",
        lambda: rs256(claims(scope=None), header={"roles": ["admin"], "role": "exec", "scope": KPI_READ}),
        "jwks",
        403,
    ),
)
ATTACK_IDS = [attack.name for attack in ATTACKS]


# ---------------------------------------------------------------------------------------------- apps


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    """A JWKS with the provider's key, on loopback (the verifier allows plain http for 127.0.0.1 only)."""

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse({"keys": [KEYS.jwk]})

    with ThreadServer(Starlette(routes=[Route("/jwks.json", jwks)])) as server:
        yield f"{server.base_url}/jwks.json"


def auth_settings(verifier: Verifier, jwks_url: str) -> dict[str, Any]:
    if verifier == "hs256":
        return {"KPI_JWT_ISSUER": ISSUER, "KPI_JWT_AUDIENCE": AUDIENCE}
    return {"KPI_JWT_SECRET": None, "KPI_JWKS_URL": jwks_url, "KPI_JWT_ISSUER": ISSUER, "KPI_JWT_AUDIENCE": AUDIENCE}


@pytest.fixture(scope="module")
async def apps(sandbox_server: SandboxServer, jwks_url: str) -> AsyncIterator[dict[Verifier, FastAPI]]:
    hs_settings = hardened_settings(sandbox_server.base_url, **auth_settings("hs256", jwks_url))
    jwks_settings = hardened_settings(sandbox_server.base_url, **auth_settings("jwks", jwks_url))
    async with running(hs_settings) as hs_app, running(jwks_settings) as jwks_app:
        yield {"hs256": hs_app, "jwks": jwks_app}


# ---------------------------------------------------------------------------------------------- REST and MCP HTTP


@pytest.mark.anyio
@pytest.mark.parametrize("attack", ATTACKS, ids=ATTACK_IDS)
async def test_each_token_attack_is_refused_over_rest_and_mcp_http(
    apps: dict[Verifier, FastAPI],
    sandbox: SandboxState,
    caplog: pytest.LogCaptureFixture,
    attack: Attack,
) -> None:
    capture_logs(caplog)
    bearer = attack.make()
    call = jsonrpc("tools/call", {"name": "kpi_mau", "arguments": MAU_ARGUMENTS})
    async with http_client(apps[attack.verifier], bearer) as http:
        with anyio.fail_after(5):  # oversized tokens included: refused in bounded time
            rest = await http.get("/api/kpi/mau", params=MAU_ARGUMENTS)
            mcp = await http.post("/mcp", json=call, headers=MCP_POST_HEADERS)

    assert rest.status_code == attack.outcome, rest.text
    assert mcp.status_code == attack.outcome, mcp.text
    if attack.outcome == 200:
        assert mcp.json()["result"]["isError"] is False
    else:
        expected = "invalid_token" if attack.outcome == 401 else "insufficient_scope"
        for response in (rest, mcp):
            assert response.headers["content-type"] == PROBLEM_JSON
            assert challenge_params(response.headers["www-authenticate"])["error"] == expected
        assert "resource_metadata" in challenge_params(mcp.headers["www-authenticate"])
        assert sandbox.counts == {}  # refused before any upstream call
    texts = [rest.text, mcp.text, str(rest.headers), str(mcp.headers), logged_text(caplog)]
    assert_no_secrets(texts, bearer if attack.outcome != 200 else "")
    # the token (or any long piece of it) never comes back, nor does the provider's public key
    assert_no_secrets([rest.text, mcp.text], *[part for part in bearer.split(".") if len(part) > 16])
    assert_no_secrets([rest.text, mcp.text, logged_text(caplog)], KEYS.public_pem.decode().splitlines()[1])


@pytest.mark.anyio
async def test_a_megabyte_token_is_refused_quickly_on_both_http_faces(apps: dict[Verifier, FastAPI]) -> None:
    bearer = "A" * (1 << 20)
    async with http_client(apps["hs256"], bearer) as http:
        with anyio.fail_after(2):
            rest = await http.get("/api/kpi/mau")
            mcp = await http.post("/mcp", json=jsonrpc("tools/list"), headers=MCP_POST_HEADERS)
    assert rest.status_code == mcp.status_code == 401
    assert len(rest.content) < 2048 and len(mcp.content) < 2048


# ---------------------------------------------------------------------------------------------- MCP stdio


def stdio_env(sandbox_url: str, verifier: Verifier, jwks_url: str, bearer: str) -> dict[str, str]:
    inherited = {name: value for name, value in os.environ.items() if name not in Settings.model_fields}
    settings: dict[str, Any] = {"KPI_JWT_SECRET": JWT_SECRET, **auth_settings(verifier, jwks_url)}
    env = {name: str(value) for name, value in settings.items() if value is not None}
    return {
        **inherited,
        **env,
        "KPI_SANDBOX": "1",
        "KPI_SANDBOX_URL": sandbox_url,
        "KPI_ACCESS_TOKEN": bearer,
        "PYTHONUNBUFFERED": "1",
    }


@dataclass(frozen=True)
class Exit:
    returncode: int
    stdout: str
    stderr: str
    bearer: str


# One stdio start per kind of refusal (an interpreter start-up costs ~2.5 s of CPU); the verifier is the one the
# HTTP faces use, so the other spellings of the same refusal are covered above.
REFUSED = [
    attack
    for attack in ATTACKS
    if attack.name
    in (
        "alg none",
        "hs256 signed with the rsa public key pem",
        "rs256 by an unknown key under the known kid",
        "rs256 carrying its own jwk in the header",
        "nbf an hour ahead",
        "exp as a string of digits",
        "wrong issuer",
        "wrong audience, rs256",
        "tampered payload claiming admin",
        "oversized but validly signed token",
    )
]
# Every accepted spelling goes through the same verifier as over HTTP; stdio checks one of each kind.
SERVED = [
    attack
    for attack in ATTACKS
    if attack.name
    in (
        "genuine rs256 token from the jwks",
        "scope as a list",
        "roles claimed in the unverified header",
        "scope list whose one item holds two names",
    )
]


@pytest.fixture(scope="module")
def refused_starts(
    sandbox_server: SandboxServer, jwks_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Exit]:
    """Every refused stdio start at once (each costs an interpreter start-up), with an `initialize` on stdin."""
    initialize = jsonrpc(
        "initialize",
        {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "pytest", "version": "0"}},
    )
    cwd = tmp_path_factory.mktemp("stdio-attacks")
    processes: dict[str, tuple[subprocess.Popen[str], str]] = {}
    for attack in REFUSED:
        bearer = attack.make()
        env = stdio_env(sandbox_server.base_url, attack.verifier, jwks_url, bearer)
        process = subprocess.Popen(
            STDIO_COMMAND,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
        )
        processes[attack.name] = (process, bearer)
    exits: dict[str, Exit] = {}
    try:
        for name, (process, bearer) in processes.items():
            stdout, stderr = process.communicate(json.dumps(initialize) + "\n", timeout=STDIO_TIMEOUT)
            exits[name] = Exit(process.returncode, stdout, stderr, bearer)
    finally:
        for process, _ in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return exits


@pytest.mark.parametrize("attack", REFUSED, ids=[attack.name for attack in REFUSED])
def test_a_stdio_server_refuses_to_start_on_each_rejected_token(
    refused_starts: dict[str, Exit], attack: Attack
) -> None:
    outcome = refused_starts[attack.name]
    assert outcome.returncode != 0
    assert outcome.stdout == ""
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1, outcome.stderr
    assert lines[0].startswith("loop-kpi mcp: KPI_ACCESS_TOKEN rejected: ")
    assert len(lines[0]) < 200
    assert_no_secrets([outcome.stderr], *[part for part in outcome.bearer.split(".") if len(part) > 16])


@pytest.mark.anyio
async def test_a_stdio_server_serves_genuine_tokens_and_denies_those_without_kpi_read(
    sandbox_server: SandboxServer, jwks_url: str, tmp_path: Path
) -> None:
    results: dict[str, tuple[bool, str]] = {}

    async def session(attack: Attack) -> None:
        env = stdio_env(sandbox_server.base_url, attack.verifier, jwks_url, attack.make())
        parameters = StdioServerParameters(command=STDIO_COMMAND[0], args=STDIO_COMMAND[1:], env=env, cwd=tmp_path)
        async with Client(parameters) as client:
            result = await client.call_tool("kpi_mau", MAU_ARGUMENTS)
        results[attack.name] = (bool(result.is_error), tool_text(result))

    with anyio.fail_after(STDIO_TIMEOUT):
        async with anyio.create_task_group() as group:
            for attack in SERVED:
                group.start_soon(session, attack)

    for attack in SERVED:
        is_error, text = results[attack.name]
        if attack.outcome == 200:
            assert not is_error, (attack.name, text)
        else:
            assert is_error and KPI_READ in text, (attack.name, text)
