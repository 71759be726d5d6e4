"""Service settings, read from the environment (and a `.env` file) by pydantic-settings.

The environment variable names are part of the product's contract: vendor credentials keep their vendor names
(`AMPLITUDE_API_KEY`, `REVENUECAT_API_KEY`, ...), our own settings start with `KPI_`, and the MCP allowlist is
`MCP_ALLOWED_OPERATIONS`.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_CONVERSION_STEPS = ("Sign Up", "View Paywall", "Start Trial", "Subscribe")


MIN_SECRET_LENGTH = 32
"""The shortest HS256 secret we accept, in UTF-8 bytes (RFC 7518 §3.2: at least the hash size)."""
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def check_https_url(url: str, name: str = "") -> None:
    """Raise ValueError unless `url` is https:// (or plain http on a loopback host): where keys and issuers live."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return
    raise ValueError(f"{name} must be".lstrip() + " an https:// URL (plain http is only allowed for localhost).")


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class Settings(BaseSettings):
    """Everything the service reads from its environment."""

    model_config = SettingsConfigDict(
        env_file=".env", env_ignore_empty=True, extra="ignore", frozen=True, populate_by_name=True
    )

    # Amplitude Dashboard REST API (Basic auth: api key + secret key).
    AMPLITUDE_API_KEY: SecretStr | None = None
    AMPLITUDE_SECRET_KEY: SecretStr | None = None
    AMPLITUDE_BASE_URL: str = "https://amplitude.com"

    # RevenueCat REST API v2 (Bearer secret key, project-scoped).
    REVENUECAT_API_KEY: SecretStr | None = None
    REVENUECAT_PROJECT_ID: str | None = None
    REVENUECAT_BASE_URL: str = "https://api.revenuecat.com"

    KPI_CONVERSION_STEPS: Annotated[tuple[str, ...], NoDecode] = DEFAULT_CONVERSION_STEPS

    # Upstream HTTP behaviour.
    KPI_UPSTREAM_TIMEOUT: float = Field(default=10.0, gt=0, description="Seconds per upstream request.")
    KPI_UPSTREAM_CONNECT_TIMEOUT: float = Field(default=5.0, gt=0)
    KPI_USER_ACTIVITY_LIMIT: int = Field(default=1000, ge=1, le=10_000, description="Max Amplitude events per journey.")

    KPI_REQUEST_DEADLINE: float = Field(default=25.0, gt=0, description="Seconds one operation may take in all.")
    KPI_UPSTREAM_RETRIES: int = Field(default=2, ge=0, le=5, description="Retries of a failed idempotent GET.")
    KPI_RETRY_MAX_WAIT: float = Field(default=10.0, ge=0, description="Longest Retry-After the service waits out.")
    KPI_MAX_UPSTREAM_BLOCK: float = Field(
        default=300.0, gt=0, description="Longest an upstream's Retry-After or backoff_ms blocks its budget (seconds)."
    )

    # Upstream budgets (docs/upstream-apis.md#amplitude-limits, #revenuecat-rate-limits); RevenueCat's headers adjust.
    KPI_AMPLITUDE_CONCURRENCY: int = Field(default=5, ge=1)
    KPI_AMPLITUDE_COST_PER_5MIN: int = Field(default=1000, ge=1)
    KPI_AMPLITUDE_COST_PER_HOUR: int = Field(default=108_000, ge=1)
    KPI_AMPLITUDE_USER_CONCURRENCY: int = Field(default=10, ge=1)
    KPI_AMPLITUDE_USER_QUERIES_PER_HOUR: int = Field(default=360, ge=1)
    KPI_REVENUECAT_CHARTS_RPM: int = Field(default=5, ge=1, description="Until RevenueCat's headers say otherwise.")
    KPI_REVENUECAT_CUSTOMERS_RPM: int = Field(default=480, ge=1)
    KPI_REVENUECAT_CONCURRENCY: int = Field(default=16, ge=1)
    # Fair use of those budgets (docs/reliability.md#abuse): per caller (token subject) and per request.
    KPI_CALLER_BUDGET_SHARE: float = Field(
        default=0.5, gt=0, le=1, description="Share of each upstream budget window one caller may spend (1: no limit)."
    )
    KPI_CALLER_COLD_COMPUTATIONS: int = Field(
        default=8, ge=1, description="Uncached computations one caller may have in flight at once."
    )
    KPI_MAX_REQUEST_COST_SHARE: float = Field(
        default=0.5, gt=0, le=1, description="Share of an upstream budget window one upstream request may cost."
    )
    KPI_RETRY_RESERVE: float = Field(
        default=0.5, ge=0, lt=1, description="Share of Amplitude's query-cost windows a retry must leave free."
    )

    # Result cache (seconds; 0 disables that kind).
    KPI_CACHE_TTL_OVERVIEW: float = Field(default=300, ge=0)
    KPI_CACHE_TTL_MAU_CURRENT: float = Field(default=900, ge=0)
    KPI_CACHE_TTL_CLOSED: float = Field(default=21_600, ge=0, description="Closed months and past days.")
    KPI_CACHE_TTL_CONVERSION: float = Field(default=600, ge=0)
    KPI_CACHE_TTL_JOURNEY: float = Field(default=60, ge=0)
    KPI_CACHE_TTL_REFUNDS: float = Field(default=900, ge=0)
    KPI_CACHE_TTL_PARTIAL: float = Field(default=30, ge=0, description="Results missing a failed source.")
    KPI_CACHE_MAX_ENTRIES: int = Field(default=2048, ge=1)
    KPI_CACHE_MAX_BYTES: int = Field(default=64 * 1024 * 1024, ge=1024)

    # Scale-out: replicas share cache, single-flight and upstream budgets through Redis.
    KPI_REDIS_URL: SecretStr | None = Field(default=None, description="e.g. redis://localhost:6379/0")
    KPI_REDIS_FALLBACK_SHARE: float = Field(
        default=0.5, gt=0, le=1, description="Share of each upstream budget one replica uses while Redis is down."
    )
    KPI_REDIS_TIMEOUT: float = Field(
        default=0.5, gt=0, le=30, description="Seconds a Redis command may take before the replica falls back to local."
    )

    # Authentication of our own callers.
    KPI_JWT_SECRET: SecretStr | None = None
    KPI_JWKS_URL: str | None = None
    KPI_JWT_ISSUER: str | None = Field(
        default=None,
        description="OpenID Connect issuer URL: its discovery document gives the JWKS (unless KPI_JWKS_URL is set) "
        "and the endpoints clients sign in with; audience validation is then always on.",
    )
    KPI_JWT_AUDIENCE: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Audiences a token may carry (comma-separated); default with an issuer: the MCP resource URL "
        "(KPI_PUBLIC_URL + /mcp).",
    )
    KPI_JWT_LEEWAY: float = Field(default=30.0, ge=0, le=300)
    KPI_JWT_SCOPE_CLAIMS: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("scope", "scp", "scopes"), description="Claims read for scopes (dotted paths reach nested claims)."
    )
    KPI_JWT_ROLE_CLAIMS: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("role", "roles"),
        description="Claims read for roles, e.g. realm_access.roles for Keycloak (dotted paths reach nested claims).",
    )
    # Dashboard sign-in (authorization code + PKCE in the browser) against KPI_JWT_ISSUER.
    KPI_OIDC_CLIENT_ID: str | None = Field(default=None, description="Public client id of the dashboard.")
    KPI_OIDC_SCOPES: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("openid", "kpi:read"), description="Scopes the dashboard asks for (comma-separated)."
    )

    # Faces.
    KPI_PUBLIC_URL: str = "http://127.0.0.1:8000"
    KPI_ALLOWED_HOSTS: Annotated[tuple[str, ...], NoDecode] = ("127.0.0.1:*", "localhost:*", "[::1]:*")
    KPI_ACCESS_TOKEN: SecretStr | None = None
    KPI_SANDBOX: bool = False
    KPI_SANDBOX_URL: str | None = Field(
        default=None, description="With KPI_SANDBOX: use a sandbox already running there instead of starting one."
    )
    KPI_NO_AUTH: bool = Field(default=False, description="Sandbox only: serve without authentication.")
    # Connection limits of `loop-kpi serve` (docs/deployment.md).
    KPI_MAX_HEADER_BYTES: int = Field(default=16 * 1024, ge=1024, description="Largest request head (bytes).")
    KPI_HEADER_TIMEOUT: float = Field(default=10.0, gt=0, description="Seconds a client has to send its headers.")
    KPI_KEEPALIVE_TIMEOUT: float = Field(default=5.0, gt=0, description="Seconds an idle connection stays open.")
    KPI_MAX_CONNECTIONS: int = Field(
        default=1000, ge=1, description="Concurrent connections and requests; beyond them uvicorn answers 503."
    )
    MCP_ALLOWED_OPERATIONS: Annotated[tuple[str, ...], NoDecode] | None = None
    KPI_MCP_LEAN: bool = Field(
        default=True,
        description="Serve single stateless tools/call and tools/list over HTTP on the lean path (same bytes as the "
        "SDK's own path, less CPU); false sends every MCP request through the SDK's session machinery.",
    )

    @field_validator(
        "KPI_CONVERSION_STEPS",
        "KPI_ALLOWED_HOSTS",
        "MCP_ALLOWED_OPERATIONS",
        "KPI_JWT_AUDIENCE",
        "KPI_JWT_SCOPE_CLAIMS",
        "KPI_JWT_ROLE_CLAIMS",
        "KPI_OIDC_SCOPES",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("KPI_JWT_SECRET")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        secret = value.get_secret_value().strip() if value is not None else ""
        if secret and len(secret.encode()) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"must be at least {MIN_SECRET_LENGTH} bytes long for HS256 (make one: "
                "python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return value

    @field_validator("KPI_JWKS_URL", "KPI_JWT_ISSUER", "KPI_OIDC_CLIENT_ID")
    @classmethod
    def _stripped_or_unset(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Surrounding blanks dropped and a blank value unset, here once for every reader."""
        stripped = value.strip() if value is not None else ""
        if stripped and info.field_name != "KPI_OIDC_CLIENT_ID":
            check_https_url(stripped)  # OpenID Connect issuers are URLs, and keys come over TLS
        return stripped or None

    @field_validator("AMPLITUDE_BASE_URL", "REVENUECAT_BASE_URL", "KPI_PUBLIC_URL")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def amplitude_configured(self) -> bool:
        """True when both Amplitude credentials are non-empty."""
        return bool(_secret(self.AMPLITUDE_API_KEY) and _secret(self.AMPLITUDE_SECRET_KEY))

    @property
    def revenuecat_configured(self) -> bool:
        """True when the RevenueCat v2 key and project id are non-empty."""
        return bool(_secret(self.REVENUECAT_API_KEY) and (self.REVENUECAT_PROJECT_ID or "").strip())

    def missing_upstream_variables(self) -> list[str]:
        """The upstream variables still unset (empty when both sources are configured)."""
        wanted = {
            "AMPLITUDE_API_KEY": _secret(self.AMPLITUDE_API_KEY),
            "AMPLITUDE_SECRET_KEY": _secret(self.AMPLITUDE_SECRET_KEY),
            "REVENUECAT_API_KEY": _secret(self.REVENUECAT_API_KEY),
            "REVENUECAT_PROJECT_ID": (self.REVENUECAT_PROJECT_ID or "").strip(),
        }
        return [name for name, value in wanted.items() if not value]

    def amplitude_credentials(self) -> tuple[str, str]:
        """The Amplitude (api key, secret key) pair; empty strings when unset."""
        return _secret(self.AMPLITUDE_API_KEY), _secret(self.AMPLITUDE_SECRET_KEY)

    def revenuecat_key(self) -> str:
        """The RevenueCat v2 secret key; empty string when unset."""
        return _secret(self.REVENUECAT_API_KEY)


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value().strip() if value is not None else ""


@cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
