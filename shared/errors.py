"""The one error hierarchy of the KPI service, rendered by both faces.

Services raise these; the REST face renders them as RFC 9457 problem details, the MCP face as tool errors.
No error ever carries a credential: messages are built from our own words, status codes and vendor error types.

    KpiError (500)
    ├── InvalidInputError (422)                     bad parameters from our caller, naming the field
    │   └── QueryTooCostlyError (422)               one request would cost more than a share of an upstream window
    ├── CallerBudgetExceededError (429)             this caller spent its share of a budget; carries retry_after
    ├── NotFoundError (404)                         e.g. a user unknown to every source
    ├── DeadlineExceededError (504)                 the whole operation ran out of time (several upstream calls)
    ├── AuthError
    │   ├── AuthenticationError (401)               no token, or an invalid / expired one
    │   └── InsufficientScopeError (403)            a valid token without kpi:read (and not admin/exec)
    └── UpstreamError (502)                         an upstream failed or answered something we cannot read
        ├── SourceNotConfiguredError (503)          no credentials for that upstream
        ├── UpstreamTimeoutError (504)              the upstream did not answer in time
        ├── UpstreamRateLimitedError (503)          the upstream is rate-limiting us; carries retry_after
        └── UpstreamAuthError (502)                 the upstream rejected the service's own credentials
"""

from __future__ import annotations

from typing import ClassVar, Literal

Source = Literal["amplitude", "revenuecat"]


class KpiError(Exception):
    """Base of every error the service raises on purpose."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "KPI service error"
    slug: ClassVar[str] = "internal"

    def __init__(self, detail: str, *, source: Source | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.source: Source | None = source

    @property
    def type_uri(self) -> str:
        """The problem `type` URI of this error class."""
        return f"https://loop-kpi.dev/problems/{self.slug}"

    def __str__(self) -> str:
        return self.detail


class InvalidInputError(KpiError):
    """The caller's input is invalid; `field` names the offending parameter."""

    status = 422
    title = "Invalid input"
    slug = "invalid-input"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


class QueryTooCostlyError(InvalidInputError):
    """One upstream request would cost more than a single request may (a share of the upstream's window)."""

    title = "Query too costly"
    slug = "query-too-costly"

    def __init__(self, detail: str, *, source: Source, cost: float, max_cost: float) -> None:
        super().__init__(detail)
        self.source = source
        self.cost = cost
        self.max_cost = max_cost


class CallerBudgetExceededError(KpiError):
    """This caller (token subject) has spent its share of an upstream budget or of the cold computations; other
    callers are not affected. `retry_after` is in whole seconds."""

    status = 429
    title = "Too many requests"
    slug = "caller-budget-exceeded"

    def __init__(self, detail: str, *, source: Source | None, retry_after: int, subject: str) -> None:
        super().__init__(detail, source=source)
        self.retry_after = retry_after
        self.subject = subject


class NotFoundError(KpiError):
    """The thing asked for does not exist in any source."""

    status = 404
    title = "Not found"
    slug = "not-found"


class DeadlineExceededError(KpiError):
    """The operation as a whole did not finish within the service's deadline."""

    status = 504
    title = "Deadline exceeded"
    slug = "deadline-exceeded"


class AuthError(KpiError):
    """Base of the caller-authentication errors."""


class AuthenticationError(AuthError):
    """No bearer token, or one that fails verification."""

    status = 401
    title = "Unauthorized"
    slug = "unauthorized"

    def __init__(self, detail: str, *, token_sent: bool) -> None:
        super().__init__(detail)
        self.token_sent = token_sent


class MalformedAuthorizationError(AuthError):
    """A request whose credentials cannot be read unambiguously (e.g. two `Authorization` headers)."""

    status = 400
    title = "Bad request"
    slug = "bad-request"


class InsufficientScopeError(AuthError):
    """A verified caller without the scope (or role) the operation needs."""

    status = 403
    title = "Insufficient scope"
    slug = "insufficient-scope"

    def __init__(self, detail: str, *, required_scope: str) -> None:
        super().__init__(detail)
        self.required_scope = required_scope


class UpstreamError(KpiError):
    """An upstream failed, or answered with something we could not read."""

    status = 502
    title = "Upstream failure"
    slug = "upstream-failure"

    def __init__(self, detail: str, *, source: Source, upstream_status: int | None = None) -> None:
        super().__init__(detail, source=source)
        self.upstream_status = upstream_status


class SourceNotConfiguredError(UpstreamError):
    """The service has no credentials for this upstream."""

    status = 503
    title = "Source not configured"
    slug = "source-not-configured"

    def __init__(self, source: Source, *, variables: tuple[str, ...]) -> None:
        names = " and ".join(variables)
        super().__init__(f"{source} is not configured: set {names}.", source=source)
        self.variables = variables


class UpstreamTimeoutError(UpstreamError):
    """The upstream did not answer within our deadline."""

    status = 504
    title = "Upstream timed out"
    slug = "upstream-timeout"


class UpstreamRateLimitedError(UpstreamError):
    """The upstream is rate-limiting us; `retry_after` is in whole seconds."""

    status = 503
    title = "Upstream rate limit"
    slug = "upstream-rate-limited"

    def __init__(self, detail: str, *, source: Source, retry_after: int, upstream_status: int | None = 429) -> None:
        super().__init__(detail, source=source, upstream_status=upstream_status)
        self.retry_after = retry_after


class UpstreamAuthError(UpstreamError):
    """The upstream rejected the service's own credentials (a configuration problem, not the caller's)."""

    title = "Upstream rejected credentials"
    slug = "upstream-credentials-rejected"
