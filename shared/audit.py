"""The audit trail: one JSON line per KPI call on every face, on the `loop_kpi.audit` logger (stderr).

On stderr every audit line starts with `AUDIT_MARKER` (its own handler and formatter), and no other line can:
every other record is written by `EscapingFormatter`, which escapes CR and LF in messages (where request input
may appear) and indents tracebacks, so no line written for anything else starts with the marker or a `{`.

Fields: time, subject, operation, transport (`rest`, `mcp-http`, `mcp-stdio`, `mcp-memory`), outcome (`ok`,
`error`, `denied`), status, latency in ms, cache (`hit`, `miss`, or null). Never a token, a key or an argument value.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

AUDIT_LOGGER = logging.getLogger("loop_kpi.audit")
AUDIT_MARKER = "AUDIT "
"""What starts every audit line on stderr, and no other line."""
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

Transport = Literal["rest", "mcp-http", "mcp-stdio", "mcp-memory"]


class AuditFormatter(logging.Formatter):
    """`AUDIT {json}`: the audit record behind its marker (the JSON itself never holds a raw newline)."""

    def __init__(self) -> None:
        super().__init__(AUDIT_MARKER + "%(message)s")


class EscapingFormatter(logging.Formatter):
    """Every other log line: CR and LF in the message and its arguments escaped as `\\r` and `\\n`, and each
    line of a traceback or stack indented, so nothing from a request can start a line of its own."""

    def __init__(self, fmt: str = LOG_FORMAT) -> None:
        super().__init__(fmt)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return _escape(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return _indent(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indent(super().formatStack(stack_info))


def _escape(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _indent(text: str) -> str:
    return "\n".join("    " + _escape(line) for line in text.split("\n"))


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
