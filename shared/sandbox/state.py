"""Mutable sandbox state shared by the emulator apps: dataset, credentials, limits, faults, counters.

Settings that docs/upstream-apis.md#unconfirmed-facts-at-a-glance lists are plain attributes so tests can flip them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from typing import Literal

from .credentials import (
    SANDBOX_AMPLITUDE_API_KEY,
    SANDBOX_AMPLITUDE_SECRET_KEY,
    SANDBOX_REVENUECAT_API_KEY,
    SANDBOX_REVENUECAT_PROJECT_ID,
)
from .dataset import Dataset, generate_dataset
from .faults import FaultRegistry, FaultSpec
from .limits import ConcurrencyGate, SlidingWindowLimiter
from .revenuecat_charts import MeasureNames
from .variants import Variant, VariantRegistry


class SandboxState:
    """Everything the emulators share. Safe to use from a test thread while uvicorn serves in another."""

    def __init__(
        self,
        dataset: Dataset | None = None,
        *,
        seed: int = 42,
        users: int = 2500,
        end: date | None = None,
        months: int = 15,
        amplitude_api_key: str = SANDBOX_AMPLITUDE_API_KEY,
        amplitude_secret_key: str = SANDBOX_AMPLITUDE_SECRET_KEY,
        revenuecat_api_key: str = SANDBOX_REVENUECAT_API_KEY,
        revenuecat_project_id: str = SANDBOX_REVENUECAT_PROJECT_ID,
        amplitude_auth_failure_status: Literal[401, 403] = 401,
        amplitude_series_label: str = "All Users",
        amplitude_concurrency_limit: int | None = 5,
        amplitude_user_concurrency_limit: int | None = 10,
        charts_rpm: int | None = 25,
        customer_rpm: int | None = 480,
        unknown_chart_status: Literal[400, 404] = 404,
        max_page_limit: int = 100,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._dataset = dataset
        self._dataset_args = (seed, users, end, months)
        self._lock = threading.Lock()
        self.amplitude_api_key = amplitude_api_key
        self.amplitude_secret_key = amplitude_secret_key
        self.revenuecat_api_key = revenuecat_api_key
        self.revenuecat_project_id = revenuecat_project_id
        # UNCONFIRMED upstream: 401 vs 403 for bad Amplitude credentials (docs/upstream-apis.md#amplitude-errors).
        self.amplitude_auth_failure_status: Literal[401, 403] = amplitude_auth_failure_status
        # UNCONFIRMED upstream: ungrouped users series label (docs/upstream-apis.md#amplitude-users-active-and-new).
        self.amplitude_series_label = amplitude_series_label
        # 5 concurrent Dashboard requests, 10 for user lookups; None disables (docs/upstream-apis.md#amplitude-limits).
        self.amplitude_concurrency_limit = amplitude_concurrency_limit
        self.amplitude_user_concurrency_limit = amplitude_user_concurrency_limit
        # UNCONFIRMED upstream: charts rpm, 5 (spec) or 25 (docs page) (docs/upstream-apis.md#revenuecat-rate-limits).
        self.charts_rpm = charts_rpm
        self.customer_rpm = customer_rpm
        # UNCONFIRMED upstream: 404 vs 400 for a chart name outside the enum (docs/upstream-apis.md#revenuecat-charts).
        self.unknown_chart_status: Literal[400, 404] = unknown_chart_status
        # UNCONFIRMED upstream: maximum v2 list ``limit`` (docs/upstream-apis.md#revenuecat-v2-conventions).
        self.max_page_limit = max_page_limit
        self.wall_clock: Callable[[], datetime] = wall_clock or (lambda: datetime.now(UTC))
        self.faults = FaultRegistry()
        # Response variants per endpoint (shared/sandbox/variants.py): how a real vendor's answer may differ.
        self.variants = VariantRegistry()
        # Chart measure display names: "public" (as public Charts API integrations report them) or "legacy".
        self.chart_measure_names: MeasureNames = "public"
        # Subscription id -> store, overriding the dataset's store (e.g. to make one a web-billing subscription).
        self._store_overrides: dict[str, str] = {}
        self.amplitude_gate = ConcurrencyGate()
        self.amplitude_user_gate = ConcurrencyGate()
        self.rate_limiter = SlidingWindowLimiter(clock)
        self._created_customers: dict[str, datetime] = {}

    @property
    def dataset(self) -> Dataset:
        """The dataset, generated on first use when none was passed in."""
        with self._lock:
            if self._dataset is None:
                seed, users, end, months = self._dataset_args
                self._dataset = generate_dataset(seed=seed, users=users, end=end, months=months)
            return self._dataset

    @property
    def clock(self) -> Callable[[], float]:
        return self.rate_limiter.clock

    @clock.setter
    def clock(self, value: Callable[[], float]) -> None:
        self.rate_limiter.clock = value

    def inject(self, endpoint: str, spec: FaultSpec) -> None:
        """Apply ``spec`` to requests for ``endpoint`` (an endpoint name or wildcard)."""
        self.faults.inject(endpoint, spec)

    def clear_faults(self) -> None:
        self.faults.clear()

    def add_variant(self, endpoint: str, variant: Variant) -> None:
        """Transform successful answers of ``endpoint`` (an endpoint name or wildcard) by ``variant``."""
        self.variants.add(endpoint, variant)

    def clear_variants(self) -> None:
        """Drop every variant, store override and measure-name choice (back to the default answers)."""
        self.variants.clear()
        self.chart_measure_names = "public"
        with self._lock:
            self._store_overrides.clear()

    def override_store(self, subscription_ids: Iterable[str], store: str) -> None:
        """Serve these subscriptions as sold through ``store`` (``rc_billing``: web billing, no transactions)."""
        with self._lock:
            for subscription_id in subscription_ids:
                self._store_overrides[subscription_id] = store

    def store_of(self, subscription_id: str, default: str) -> str:
        """The store a subscription is served with (its override, else ``default``)."""
        with self._lock:
            return self._store_overrides.get(subscription_id, default)

    @property
    def counts(self) -> dict[str, int]:
        """Snapshot of requests received per endpoint name (faulted and rejected ones included)."""
        return self.faults.counts

    def reset_counts(self) -> None:
        self.faults.reset_counts()

    def reset(self) -> None:
        """Clear counters, faults, variants, rate-limit windows and customers created through v1."""
        self.faults.reset_counts()
        self.faults.clear()
        self.clear_variants()
        self.rate_limiter.reset()
        with self._lock:
            self._created_customers.clear()

    def create_customer(self, customer_id: str) -> datetime:
        """Record a customer created by v1 "get or create"; returns its creation time."""
        with self._lock:
            return self._created_customers.setdefault(customer_id, self.wall_clock())

    def created_customer(self, customer_id: str) -> datetime | None:
        with self._lock:
            return self._created_customers.get(customer_id)

    @property
    def created_customers(self) -> dict[str, datetime]:
        with self._lock:
            return dict(self._created_customers)
