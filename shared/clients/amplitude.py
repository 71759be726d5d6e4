"""Amplitude Dashboard REST API client (docs/upstream-apis.md): active/new users, event totals, funnels, user search and
activity.

Basic auth (api key : secret key) is set on the injected `httpx2.AsyncClient`; dates go out as `YYYYMMDD`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import Literal

import httpx2

from shared.budget import Gate
from shared.clients._http import UpstreamHttp
from shared.errors import UpstreamError
from shared.models.amplitude import (
    ActivityEvent,
    FunnelElement,
    FunnelResponse,
    SegmentationResponse,
    UserActivityResponse,
    UserMatch,
    UsersData,
    UserSearchResponse,
    UsersResponse,
)

Interval = Literal[1, 7, 30]
ACTIVITY_PAGE_LIMIT = 1000  # the endpoint's documented maximum
DAILY_MAX_DAYS = 365  # "daily supports up to 365 days of data" (docs/upstream-apis.md#amplitude-request-conventions)


def amplitude_date(day: date) -> str:
    """Amplitude's request date format, `YYYYMMDD`."""
    return day.isoformat().replace("-", "")  # zero-padded, unlike strftime's %Y for years before 1000


class AmplitudeClient:
    """One async method per Dashboard endpoint; each returns a validated wire model."""

    def __init__(self, http: UpstreamHttp, *, dashboard: Gate | None = None, user_lookup: Gate | None = None) -> None:
        self._http = http
        self._dashboard = dashboard
        self._user_lookup = user_lookup

    async def users(
        self, start: date, end: date, *, metric: Literal["active", "new"] = "active", interval: Interval = 1
    ) -> UsersData:
        """`GET /api/2/users`: active (DAU/WAU/MAU by `interval`) or new users per bucket."""
        params = {"start": amplitude_date(start), "end": amplitude_date(end), "m": metric, "i": interval}
        cost = (end - start).days + 1  # days x 1 condition x query-type cost 1, docs/upstream-apis.md#amplitude-limits
        response = await self._http.get("/api/2/users", params=params, gate=self._dashboard, cost=cost)
        data = self._http.parse(response, UsersResponse).data
        if data.series and any(len(s) != len(data.x_values) for s in data.series):
            raise self._http_error("users series and xValues differ in length")
        return data

    async def event_totals(self, event_type: str, start: date, end: date) -> int:
        """`GET /api/2/events/segmentation` with `m=totals`: how many times `event_type` was tracked from `start`
        to `end` (inclusive), summed over the ungrouped series' buckets (docs/upstream-apis.md#amplitude-event-segmentation)."""
        days = (end - start).days + 1
        params = {
            "e": json.dumps({"event_type": event_type}),
            "m": "totals",
            "start": amplitude_date(start),
            "end": amplitude_date(end),
            "i": 1 if days <= DAILY_MAX_DAYS else 7,
        }
        cost = days  # days x 1 event (segmentation: number of events), docs/upstream-apis.md#amplitude-limits
        response = await self._http.get("/api/2/events/segmentation", params=params, gate=self._dashboard, cost=cost)
        data = self._http.parse(response, SegmentationResponse).data
        if not data.series:
            raise self._http_error("event segmentation answer has no series")
        return round(sum(data.series[0]))

    async def funnel(
        self,
        steps: Sequence[str],
        start: date,
        end: date,
        *,
        conversion_window_seconds: int,
        mode: Literal["ordered", "unordered", "sequential"] = "ordered",
    ) -> FunnelElement:
        """`GET /api/2/funnels` with one repeated `e` per step; returns the ungrouped element."""
        params: list[tuple[str, str | int | float | bool | None]] = [
            ("e", json.dumps({"event_type": step})) for step in steps
        ]
        params += [
            ("start", amplitude_date(start)),
            ("end", amplitude_date(end)),
            ("mode", mode),
            ("n", "active"),
            ("cs", conversion_window_seconds),
        ]
        cost = ((end - start).days + 1) * 2 * len(steps)  # days x (2 x steps), docs/upstream-apis.md#amplitude-limits
        response = await self._http.get(
            "/api/2/funnels", params=httpx2.QueryParams(params), gate=self._dashboard, cost=cost
        )
        elements = self._http.parse(response, FunnelResponse).data
        if not elements:
            raise self._http_error("funnel response has no data element")
        element = elements[0]
        if len(element.cumulative_raw) != len(steps):
            raise self._http_error("funnel counts do not match the number of steps")
        return element

    async def find_user(self, user_id: str) -> UserMatch | None:
        """`GET /api/2/usersearch`, keeping only the exact `user_id` match (a search may match prefixes)."""
        response = await self._http.get("/api/2/usersearch", params={"user": user_id}, gate=self._user_lookup)
        found = self._http.parse(response, UserSearchResponse)
        return next((m for m in found.matches if m.user_id == user_id), None)

    async def user_activity(self, amplitude_id: int, *, limit: int) -> tuple[UserActivityResponse, bool]:
        """`GET /api/2/useractivity`, newest first, paged by offset up to `limit` events.

        Returns the first page's user data with every event collected, and whether events were left out.
        """
        offset = 0
        events: list[ActivityEvent] = []
        first: UserActivityResponse | None = None
        while True:
            page_limit = min(ACTIVITY_PAGE_LIMIT, limit - len(events))
            params = {"user": amplitude_id, "offset": offset, "limit": page_limit, "direction": "latest"}
            response = await self._http.get("/api/2/useractivity", params=params, gate=self._user_lookup)
            page = self._http.parse(response, UserActivityResponse)
            first = first or page
            events.extend(page.events)
            offset += len(page.events)
            if len(page.events) < page_limit:
                return first.model_copy(update={"events": events}), False
            if len(events) >= limit:
                total = first.user_data.num_events
                truncated = total is None or total > len(events)
                return first.model_copy(update={"events": events[:limit]}), truncated or len(events) > limit

    def _http_error(self, what: str) -> UpstreamError:
        return UpstreamError(f"amplitude sent an inconsistent response ({what}).", source="amplitude")
