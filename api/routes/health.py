"""Liveness and readiness probes (no authentication, no secrets)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.deps import RuntimeDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class SourceState(BaseModel):
    source: Literal["amplitude", "revenuecat"]
    configured: bool
    reachable: bool | None
    detail: str | None


class RedisState(BaseModel):
    reachable: bool
    detail: str


class SigningKeysState(BaseModel):
    """Whether tokens signed by the identity provider can be verified (only when a JWKS or issuer is configured)."""

    available: bool
    detail: str


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "down"]
    data_source: Literal["live", "sandbox"]
    sources: list[SourceState]
    redis: RedisState | None = None
    signing_keys: SigningKeysState | None = None


@router.get("/healthz", response_model=Health, summary="Liveness")
async def read_health() -> Health:
    """The process is up and serving."""
    return Health()


def _not_configured(source: str, missing: list[str]) -> str:
    names = [name for name in missing if name.startswith(source.upper())]
    return f"not configured: set {' and '.join(names)}" if names else "not configured"


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "No source is both configured and reachable."}},
    summary="Readiness",
)
async def read_readiness(runtime: RuntimeDep) -> JSONResponse:
    """Which sources are configured and answered a cheap probe (cached for 30 s), whether Redis (when configured)
    is reachable, and whether the identity provider's signing keys are held (when a JWKS or issuer is configured:
    without them every token it signs is refused)."""
    missing = runtime.settings.missing_upstream_variables()
    states = [
        SourceState(
            source=s.source,
            configured=s.configured,
            reachable=s.reachable,
            detail=s.detail if s.configured else _not_configured(s.source, missing),
        )
        for s in await runtime.readiness()
    ]
    up = [s.configured and bool(s.reachable) for s in states]
    status: Literal["ready", "degraded", "down"] = "ready" if all(up) else "degraded" if any(up) else "down"
    redis = None
    if runtime.redis is not None:
        reachable = await runtime.redis.ping()
        detail = "cache, single-flight and budgets shared" if reachable else "unreachable: serving from local state"
        redis = RedisState(reachable=reachable, detail=detail)
        if not reachable and status == "ready":
            status = "degraded"
    signing_keys = None
    if runtime.verifier.uses_jwks:
        problem = await runtime.verifier.signing_keys()
        signing_keys = SigningKeysState(available=problem is None, detail=problem or "signing keys held")
        if problem is not None and status == "ready":
            status = "degraded"
    body = Readiness(
        status=status, data_source=runtime.data_source, sources=states, redis=redis, signing_keys=signing_keys
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=503 if status == "down" else 200)
