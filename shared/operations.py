"""The operation registry: each KPI operation declared once.

Everything that needs to know what an operation is reads it from here: the REST routes (`api/routes/kpi.py`: path,
method, operation id, summary, description, query and result models, documented errors), the MCP tools
(`server/tools.py`: name, title, description, arguments derived from the query model, output schema), the MCP
allowlist (`shared/auth/allowlist.py`), the audit trail and the fast path (which map a request to its operation
through the app's own routes), the cache (`shared/services/cached.py`: cache kind and freshness), the benchmarks and
the tests.

Adding an operation: one `Operation` here, one `KpiService` method (and its resolver in
`shared/services/inputs.py`), and their tests. Nothing else changes.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from shared.models import kpi as m
from shared.services import inputs
from shared.services.inputs import Inputs

if TYPE_CHECKING:  # the service (clients, budgets, vendor models) is imported by whoever opens a runtime, not here
    from shared.services.kpi import KpiService

QueryT = TypeVar("QueryT", bound=BaseModel)
ResultT = TypeVar("ResultT", bound=m.ResultMeta)

REST_PREFIX = "/api/kpi"
"""Where the REST face serves the operations (`REST_PREFIX + operation.path`)."""

CacheKind = str
"""Names the cache entries of an operation (`overview`, `mau`, ...); part of every cache key."""


@dataclass(frozen=True)
class CacheTtl:
    """Seconds each kind of result stays fresh; 0 disables caching of that kind."""

    overview: float = 300
    mau_current: float = 900
    mau_closed: float = 6 * 3600
    conversion: float = 600
    journey: float = 60
    refunds: float = 900
    partial: float = 30


@dataclass(frozen=True, kw_only=True)
class Operation(Generic[QueryT, ResultT]):
    """One KPI operation, as both faces and every cross-cutting part see it."""

    id: str
    """Operation id: the REST `operationId`, the MCP tool name, the allowlist and audit name."""
    title: str
    description: str
    """What it returns and its caveats; the OpenAPI description and the MCP tool description."""
    method: Literal["GET", "POST"]
    path: str
    """Below `/api/kpi`; `{name}` segments are fields of the query model, taken from the path."""
    query: type[QueryT]
    result: type[ResultT]
    resolve: Callable[[QueryT, Inputs], QueryT]
    """Defaults made concrete and input validated (`InvalidInputError`), once per request."""
    compute: Callable[[KpiService, QueryT], Awaitable[ResultT]]
    """The service method, given the resolved query."""
    cache_kind: CacheKind
    ttl: Callable[[CacheTtl, QueryT, date], float]
    """Seconds a result of the resolved query stays fresh, given today."""
    errors: tuple[int, ...] = (401, 403, 422, 502, 503, 504)
    """Problem statuses documented for the operation besides the guard's 401/403."""
    examples: Mapping[str, Any] = field(default_factory=dict[str, Any])
    """OpenAPI examples of a request body."""


def _overview_ttl(ttl: CacheTtl, query: m.OverviewQuery, today: date) -> float:
    return ttl.overview if query.as_of == today else ttl.mau_closed


def _mau_ttl(ttl: CacheTtl, query: m.MauQuery, today: date) -> float:
    return ttl.mau_current if query.end_month == today.replace(day=1) else ttl.mau_closed


OVERVIEW = Operation(
    id="kpi_overview",
    title="KPI overview",
    description=(
        "Company KPI overview: Amplitude DAU (last complete day), month-to-date MAU and new users, plus RevenueCat "
        "MRR, gross revenue of the last 28 days (USD, before store fees), active subscriptions and trials, new "
        "customers and active users (28 days). RevenueCat active users are SDK-seen ids, not comparable with "
        "Amplitude MAU. If one source fails the other's figures still come back with `partial: true` and that "
        "source's error in `sources`."
    ),
    method="GET",
    path="/overview",
    query=m.OverviewQuery,
    result=m.OverviewResult,
    resolve=inputs.resolve_overview,
    compute=lambda service, query: service.overview(query),
    cache_kind="overview",
    ttl=_overview_ttl,
)

MAU = Operation(
    id="kpi_mau",
    title="Monthly active users",
    description=(
        "Monthly active users (distinct users with any event in Amplitude) per calendar month, with the change from "
        "the previous month in users and percent. The current month is `partial` (counted to today), so compare it "
        "with care. Default range: the last six months including the current one; up to 36 months."
    ),
    method="GET",
    path="/mau",
    query=m.MauQuery,
    result=m.MauResult,
    resolve=inputs.resolve_mau,
    compute=lambda service, query: service.mau(query),
    cache_kind="mau",
    ttl=_mau_ttl,
)

CONVERSION = Operation(
    id="kpi_conversion",
    title="Funnel conversion",
    description=(
        "Funnel conversion between Amplitude events (on REST, repeat `steps` once per step, in order): users per "
        "step, step-by-step and cumulative conversion (percent), median and average time between steps in "
        "seconds, and overall conversion (first to last step). Adds RevenueCat's trial-to-paid conversion (percent) "
        "for the same range when RevenueCat is configured; its recent periods may still convert and are excluded. "
        "Event types are case-sensitive: a step whose event was never tracked in the range gets a warning."
    ),
    method="GET",
    path="/conversion",
    query=m.ConversionQuery,
    result=m.ConversionResult,
    resolve=inputs.resolve_conversion,
    compute=lambda service, query: service.conversion(query),
    cache_kind="conversion",
    ttl=lambda ttl, query, today: ttl.conversion,
)

USER_JOURNEY = Operation(
    id="kpi_user_journey",
    title="User journey",
    description=(
        "One user's journey: Amplitude profile and events, RevenueCat subscriptions, renewals, cancellations, "
        "billing issues, purchases and refunds, merged into one timeline, oldest first. 'Not found' (404) when "
        "neither source knows the user id. Refunds are placed at the purchase they reverse (RevenueCat gives no "
        "refund time)."
    ),
    method="GET",
    path="/user/{user_id}",
    query=m.UserJourneyQuery,
    result=m.JourneyResult,
    resolve=inputs.resolve_user_journey,
    compute=lambda service, query: service.user_journey(query),
    cache_kind="journey",
    ttl=lambda ttl, query, today: ttl.journey,
    errors=(401, 403, 404, 422, 502, 503, 504),
)

REFUND_ANALYSIS = Operation(
    id="kpi_refund_analysis",
    title="Refund analysis",
    description=(
        "Refund analysis from RevenueCat: refund rate (percent of paid transactions), refunded and total "
        "transactions, and revenue net of refunds per period (optionally by segment), with summary totals. Caveat: "
        "a refund counts in the period of the ORIGINAL transaction, so past periods change and recent periods are "
        "marked incomplete and left out of the summary rates. With user_ids, each customer's refunded one-time "
        "purchases."
    ),
    method="POST",
    path="/refund-analysis",
    query=m.RefundAnalysisQuery,
    result=m.RefundAnalysisResult,
    resolve=inputs.resolve_refund_analysis,
    compute=lambda service, query: service.refund_analysis(query),
    cache_kind="refunds",
    ttl=lambda ttl, query, today: ttl.refunds,
    errors=(401, 403, 413, 422, 502, 503, 504),
    examples={
        "by month": {
            "summary": "Monthly refund rate for a quarter, with two customers",
            "value": {
                "start_date": "2026-07-01",
                "end_date": "2026-09-30",
                "resolution": "month",
                "user_ids": ["user_00042", "user_00043"],
            },
        }
    },
)

AnyOperation = Operation[Any, Any]

OPERATIONS: tuple[AnyOperation, ...] = (OVERVIEW, MAU, CONVERSION, USER_JOURNEY, REFUND_ANALYSIS)
"""Every operation, in the order faces list them."""


def operation_ids(operations: tuple[AnyOperation, ...] = OPERATIONS) -> tuple[str, ...]:
    """The ids of `operations`, in order."""
    return tuple(operation.id for operation in operations)


def by_id(operation_id: str, operations: tuple[AnyOperation, ...] = OPERATIONS) -> AnyOperation:
    """The operation with that id (`KeyError` if none)."""
    for operation in operations:
        if operation.id == operation_id:
            return operation
    raise KeyError(operation_id)


def rest_request(operation: AnyOperation, arguments: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """The REST call asking what MCP `arguments` ask: method, path, and `params` (GET) or `json` (POST) for an
    HTTP client (path fields are percent-encoded into the path)."""
    in_path = re.findall(r"{(\w+)}", operation.path)
    path = REST_PREFIX + operation.path.format(**{name: quote(str(arguments[name]), safe="") for name in in_path})
    rest = {name: value for name, value in arguments.items() if name not in in_path}
    if operation.method == "GET":
        return "GET", path, {"params": rest}
    return operation.method, path, {"json": rest}
