"""The audit trail: one JSON line per KPI call on every face, on the `loop_kpi.audit` logger (stderr).

Fields: time, subject, operation, transport (`rest`, `mcp-http`, `mcp-stdio`, `mcp-memory`), outcome (`ok`,
`error`, `denied`), status, latency in ms, cache (`hit`, `miss`, or null). Never a token, a key or an argument value.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Literal

AUDIT_LOGGER = logging.getLogger("loop_kpi.audit")

Transport = Literal["rest", "mcp-http", "mcp-stdio", "mcp-memory"]


def outcome_of(status: int) -> Literal["ok", "error", "denied"]:
    """`denied` for 401/403, `error` for any other 4xx/5xx, else `ok`."""
    if status in (401, 403):
        return "denied"
    return "error" if status >= 400 else "ok"


def audit(
    *,
    subject: str | None,
    operation: str,
    transport: Transport,
    status: int,
    latency: float,
    cache_hit: bool | None,
) -> None:
    """Write one audit line (cheap no-op when the audit logger is disabled)."""
    if not AUDIT_LOGGER.isEnabledFor(logging.INFO):
        return
    record = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "event": "kpi_call",
        "subject": subject,
        "operation": operation,
        "transport": transport,
        "outcome": outcome_of(status),
        "status": status,
        "latency_ms": round(latency * 1000, 2),
        "cache": None if cache_hit is None else ("hit" if cache_hit else "miss"),
    }
    AUDIT_LOGGER.info(json.dumps(record, separators=(",", ":")))
