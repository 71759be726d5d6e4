"""The baseline of the REST throughput row: a bare FastAPI endpoint returning the same JSON as a dict."""

from __future__ import annotations

import json
import sys
from typing import Any

import uvicorn
from fastapi import FastAPI


def create_bare_app(body: dict[str, Any]) -> FastAPI:
    app = FastAPI()

    @app.get("/bare")
    async def bare() -> dict[str, Any]:
        return body

    return app


if __name__ == "__main__":
    path, port = sys.argv[1], int(sys.argv[2])
    with open(path, encoding="utf-8") as handle:
        payload: dict[str, Any] = json.load(handle)
    uvicorn.run(create_bare_app(payload), host="127.0.0.1", port=port, log_level="warning")
