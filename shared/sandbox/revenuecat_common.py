"""RevenueCat v2 errors, ms timestamps, lists (docs/upstream-apis.md#revenuecat-errors, #revenuecat-v2-conventions)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from urllib.parse import quote

from starlette.datastructures import QueryParams
from starlette.responses import JSONResponse

CURRENCIES = ("USD", "EUR", "GBP", "AUD", "CAD", "JPY", "BRL", "KRW", "CNY", "MXN", "SEK", "PLN")
# Fixed sandbox FX rates (units of currency per USD) so non-USD requests are deterministic.
FX_PER_USD: Mapping[str, float] = {
    "USD": 1.0,
    "EUR": 0.92,
    "GBP": 0.79,
    "AUD": 1.52,
    "CAD": 1.36,
    "JPY": 151.0,
    "BRL": 5.05,
    "KRW": 1350.0,
    "CNY": 7.2,
    "MXN": 17.0,
    "SEK": 10.5,
    "PLN": 3.95,
}
DEFAULT_PAGE_LIMIT = 20
_RETRYABLE = {423, 429, 500, 502, 503, 504}
_TYPES: Mapping[int, str] = {
    400: "parameter_error",
    401: "authentication_error",
    403: "authorization_error",
    404: "resource_missing",
    409: "resource_already_exists",
    422: "unprocessable_entity_error",
    423: "resource_locked_error",
    429: "rate_limit_error",
}


class RevenueCatError(Exception):
    """A v2 error: rendered as ``{"object": "error", "type", "message", "retryable", "doc_url", ...}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str | None = None,
        param: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type or _TYPES.get(status, "server_error")
        self.param = param
        self.retry_after = retry_after

    def response(self, headers: Mapping[str, str] | None = None) -> JSONResponse:
        body: dict[str, object] = {
            "object": "error",
            "type": self.error_type,
            "message": self.message,
            "retryable": self.status in _RETRYABLE,
            "doc_url": "https://errors.rev.cat/" + self.error_type.replace("_", "-"),
        }
        if self.param is not None:
            body["param"] = self.param
        all_headers = dict(headers or {})
        if self.status in _RETRYABLE:
            body["backoff_ms"] = (self.retry_after or 1) * 1000
            if self.retry_after is not None:
                all_headers["Retry-After"] = str(self.retry_after)
        return JSONResponse(body, status_code=self.status, headers=all_headers)


def parameter_error(param: str, message: str) -> RevenueCatError:
    return RevenueCatError(400, message, param=param)


def ms(moment: datetime | None) -> int | None:
    """Epoch milliseconds (v2 timestamps), or None."""
    return None if moment is None else round(moment.timestamp() * 1000)


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 like v1: ``2019-07-26T17:40:10Z``."""
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def currency_param(params: QueryParams) -> str:
    currency = params.get("currency", "USD")
    if currency not in CURRENCIES:
        raise parameter_error("currency", f"Invalid currency {currency!r}; expected one of {', '.join(CURRENCIES)}")
    return currency


def paginate(items: Sequence[Mapping[str, object]], params: QueryParams, url: str, max_limit: int) -> dict[str, object]:
    """Cut one page of a list (``limit``, ``starting_after``) into the v2 list envelope."""
    raw = params.get("limit")
    limit = DEFAULT_PAGE_LIMIT
    if raw is not None:
        try:
            limit = int(raw)
        except ValueError:
            raise parameter_error("limit", f"limit must be an integer, got {raw!r}") from None
        if not 1 <= limit <= max_limit:
            raise parameter_error("limit", f"limit must be between 1 and {max_limit}")
    start = 0
    after = params.get("starting_after")
    if after is not None:
        ids = [str(item["id"]) for item in items]
        if after not in ids:
            raise parameter_error("starting_after", f"No item with id {after!r} in this list")
        start = ids.index(after) + 1
    page = list(items[start : start + limit])
    next_page = None
    if start + limit < len(items) and page:
        next_page = f"{url}?starting_after={quote(str(page[-1]['id']), safe='')}&limit={limit}"
    return {"object": "list", "items": page, "next_page": next_page, "url": url}
