"""RevenueCat REST API v2 client (docs/upstream-apis.md): overview metrics, charts, customers and their
subscriptions, purchases and transactions.

Never calls v1 `GET /subscribers/{id}`: that endpoint *creates* the customer it reads. Unknown customers are
looked up with v2 `GET customers/{id}`, whose 404 means unknown.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, TypeVar

import httpx2
from pydantic import BaseModel

from shared.budget import Gate
from shared.clients._http import UpstreamHttp, path_segment
from shared.errors import UpstreamError
from shared.models.revenuecat import (
    ChartData,
    ChartOptions,
    Customer,
    ListPage,
    OverviewMetrics,
    Purchase,
    Subscription,
    SubscriptionTransaction,
)

Domain = Literal["charts_metrics", "customer_information"]
ItemT = TypeVar("ItemT", bound=BaseModel)
PAGE_LIMIT = 100
MAX_PAGES = 50


@dataclass(frozen=True)
class RateLimitReading:
    """What RevenueCat's rate-limit headers said on the last response of a domain."""

    usage: int
    limit: int
    read_at: float


class RevenueCatClient:
    """One async method per v2 endpoint; each returns validated wire models."""

    def __init__(self, http: UpstreamHttp, project_id: str, *, gates: Mapping[Domain, Gate] | None = None) -> None:
        self._http = http
        self._project = f"/v2/projects/{path_segment(project_id)}"
        self._chart_options: dict[str, ChartOptions] = {}
        self._gates: Mapping[Domain, Gate] = gates or {}
        self.rate_limits: dict[Domain, RateLimitReading] = {}

    async def overview(self, currency: str = "USD") -> OverviewMetrics:
        """`GET metrics/overview`: MRR, revenue (28 d), active subscriptions/trials, new customers, active users."""
        response = await self._get("charts_metrics", f"{self._project}/metrics/overview", {"currency": currency})
        return self._http.parse(response, OverviewMetrics)

    async def chart_options(self, chart: str) -> ChartOptions:
        """`GET charts/{chart}/options`, cached for the client's life (resolution ids do not change)."""
        cached = self._chart_options.get(chart)
        if cached is None:
            response = await self._get(
                "charts_metrics", f"{self._project}/charts/{path_segment(chart)}/options", {"realtime": "true"}
            )
            cached = self._chart_options[chart] = self._http.parse(response, ChartOptions)
        return cached

    async def chart(
        self,
        chart: str,
        start: date,
        end: date,
        *,
        resolution: str,
        segment: str | None = None,
        selectors: Mapping[str, str] | None = None,
        currency: str = "USD",
    ) -> ChartData:
        """`GET charts/{chart}` for an inclusive date range; `resolution` is a name (day, week, month...)."""
        options = await self.chart_options(chart)
        resolution_id = next((r.id for r in options.resolutions if r.display_name == resolution), None)
        if resolution_id is None:
            raise UpstreamError(
                f"revenuecat offers no {resolution!r} resolution for the {chart} chart.", source="revenuecat"
            )
        params: dict[str, str] = {
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
            "resolution": resolution_id,
            "currency": currency,
            "realtime": "true",
        }
        if segment:
            params["segment"] = segment
        if selectors:
            params["selectors"] = json.dumps(dict(selectors))
        response = await self._get("charts_metrics", f"{self._project}/charts/{path_segment(chart)}", params)
        return self._http.parse(response, ChartData)

    async def customer(self, customer_id: str) -> Customer | None:
        """`GET customers/{id}`; None when RevenueCat does not know the customer (nothing is created)."""
        response = await self._get("customer_information", self._customer_path(customer_id), allow_404=True)
        if response.status_code == 404:
            return None
        return self._http.parse(response, Customer)

    async def subscriptions(self, customer_id: str) -> list[Subscription]:
        """Every subscription of a customer, following `next_page`."""
        return await self._list(f"{self._customer_path(customer_id)}/subscriptions", Subscription)

    async def purchases(self, customer_id: str) -> list[Purchase]:
        """Every one-time purchase of a customer, following `next_page`."""
        return await self._list(f"{self._customer_path(customer_id)}/purchases", Purchase)

    async def subscription_transactions(self, subscription_id: str) -> list[SubscriptionTransaction]:
        """Every store transaction (first purchase and renewals) of a subscription."""
        path = f"{self._project}/subscriptions/{path_segment(subscription_id)}/transactions"
        return await self._list(path, SubscriptionTransaction)

    def _customer_path(self, customer_id: str) -> str:
        return f"{self._project}/customers/{path_segment(customer_id)}"

    async def _list(self, path: str, model: type[ItemT]) -> list[ItemT]:
        items: list[ItemT] = []
        url: str | None = path
        params: dict[str, str | int] | None = {"limit": PAGE_LIMIT}
        for _ in range(MAX_PAGES):
            assert url is not None
            response = await self._get("customer_information", url, params)
            page = self._http.parse(response, ListPage)
            items.extend(self._http.validate(item, model) for item in page.items)
            if not page.next_page:
                return items
            if not page.next_page.startswith(self._project + "/"):
                raise UpstreamError("revenuecat sent a next_page outside the project.", source="revenuecat")
            url, params = page.next_page, None
        raise UpstreamError(f"revenuecat list did not end within {MAX_PAGES} pages.", source="revenuecat")

    async def _get(
        self, domain: Domain, path: str, params: Mapping[str, str | int] | None = None, *, allow_404: bool = False
    ) -> httpx2.Response:
        gate = self._gates.get(domain)

        async def read_rate_limit(response: httpx2.Response) -> None:
            usage = _int_header(response.headers, "RevenueCat-Rate-Limit-Current-Usage")
            limit = _int_header(response.headers, "RevenueCat-Rate-Limit-Current-Limit")
            if usage is not None and limit is not None:
                self.rate_limits[domain] = RateLimitReading(usage=usage, limit=limit, read_at=time.monotonic())
                if gate is not None:
                    await gate.observe(usage, limit)

        return await self._http.get(path, params=params, allow_404=allow_404, gate=gate, on_response=read_rate_limit)


def _int_header(headers: Any, name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
