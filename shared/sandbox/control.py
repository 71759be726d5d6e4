"""Sandbox control endpoints under ``/_sandbox`` (no auth; the sandbox only listens on loopback)."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import cast

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .faults import FaultSpec
from .revenuecat_charts import MEASURE_SETS
from .state import SandboxState
from .variants import variant_from_json

_FLOAT_FIELDS = ("latency", "slow_body")
_BOOL_FIELDS = ("malformed_json", "wrong_shape", "reset")
_INT_FIELDS = ("status", "retry_after", "times")


def _bad(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)


def fault_from_json(body: dict[str, object]) -> FaultSpec:
    """Build a FaultSpec from the control API's JSON (``endpoint`` is ignored here)."""
    known = {f.name for f in fields(FaultSpec)} | {"endpoint"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ValueError(f"unknown fault fields: {unknown}")
    latency = body.get("latency", 0.0)
    slow_body = body.get("slow_body", 0.0)
    for name, value in (("latency", latency), ("slow_body", slow_body)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{name} must be a number")
    flags = {name: body.get(name, False) for name in _BOOL_FIELDS}
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a boolean")
    ints: dict[str, int | None] = {}
    for name in _INT_FIELDS:
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"{name} must be an integer or null")
        ints[name] = value
    return FaultSpec(
        latency=float(cast("float", latency)),
        status=ints["status"],
        retry_after=ints["retry_after"],
        malformed_json=flags["malformed_json"] is True,
        wrong_shape=flags["wrong_shape"] is True,
        reset=flags["reset"] is True,
        slow_body=float(cast("float", slow_body)),
        times=ints["times"],
    )


async def _object(request: Request) -> dict[str, object]:
    try:
        parsed: object = json.loads(await request.body())
    except ValueError:
        raise ValueError("body must be JSON") from None
    if not isinstance(parsed, dict):
        raise TypeError("body must be a JSON object")
    return cast("dict[str, object]", parsed)


def control_routes(state: SandboxState) -> list[Route]:
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def stats(request: Request) -> Response:
        return JSONResponse({"counts": state.counts})

    async def add_fault(request: Request) -> Response:
        try:
            parsed: object = json.loads(await request.body())
        except ValueError:
            return _bad("body must be JSON")
        if not isinstance(parsed, dict):
            return _bad("body must be a JSON object")
        body = cast("dict[str, object]", parsed)
        endpoint = body.get("endpoint")
        if not isinstance(endpoint, str):
            return _bad("endpoint is required")
        try:
            state.inject(endpoint, fault_from_json(body))
        except (TypeError, ValueError) as exc:
            return _bad(str(exc))
        return JSONResponse({"status": "injected", "endpoint": endpoint}, status_code=201)

    async def clear_faults(request: Request) -> Response:
        state.clear_faults()
        return JSONResponse({"status": "cleared"})

    async def add_variant(request: Request) -> Response:
        try:
            body = await _object(request)
            endpoint = body.get("endpoint")
            if not isinstance(endpoint, str):
                return _bad("endpoint is required")
            state.add_variant(endpoint, variant_from_json(body))
        except (TypeError, ValueError) as exc:
            return _bad(str(exc))
        return JSONResponse({"status": "added", "endpoint": endpoint}, status_code=201)

    async def list_variants(request: Request) -> Response:
        listed = [
            {
                "endpoint": endpoint,
                "kind": v.kind,
                "path": v.path,
                "value": v.value,
                "measure": v.measure,
                "chart": v.chart,
            }
            for endpoint, v in state.variants.active()
        ]
        return JSONResponse({"variants": listed, "chart_measure_names": state.chart_measure_names})

    async def clear_variants(request: Request) -> Response:
        state.clear_variants()
        return JSONResponse({"status": "cleared"})

    async def set_stores(request: Request) -> Response:
        try:
            body = await _object(request)
        except (TypeError, ValueError) as exc:
            return _bad(str(exc))
        ids, store = body.get("subscription_ids"), body.get("store")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in cast("list[object]", ids)):
            return _bad("subscription_ids must be a list of strings")
        if not isinstance(store, str) or not store:
            return _bad("store is required")
        state.override_store(cast("list[str]", ids), store)
        return JSONResponse({"status": "overridden", "store": store})

    async def set_measure_names(request: Request) -> Response:
        try:
            body = await _object(request)
        except (TypeError, ValueError) as exc:
            return _bad(str(exc))
        names = body.get("chart_measure_names")
        if names not in MEASURE_SETS:
            return _bad(f"chart_measure_names must be one of {sorted(MEASURE_SETS)}")
        state.chart_measure_names = "legacy" if names == "legacy" else "public"
        return JSONResponse({"status": "set", "chart_measure_names": state.chart_measure_names})

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"status": "reset"})

    return [
        Route("/_sandbox/health", health, methods=["GET"]),
        Route("/_sandbox/stats", stats, methods=["GET"]),
        Route("/_sandbox/faults", add_fault, methods=["POST"]),
        Route("/_sandbox/faults", clear_faults, methods=["DELETE"]),
        Route("/_sandbox/variants", add_variant, methods=["POST"]),
        Route("/_sandbox/variants", list_variants, methods=["GET"]),
        Route("/_sandbox/variants", clear_variants, methods=["DELETE"]),
        Route("/_sandbox/stores", set_stores, methods=["POST"]),
        Route("/_sandbox/measure-names", set_measure_names, methods=["POST"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
    ]
