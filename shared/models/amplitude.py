"""Wire models for the Amplitude Dashboard REST API (docs/upstream-apis.md), validated at the client edge.

Unknown extra fields are ignored; only what the reference marks as documented is required.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    # Built on first use, not at import: `loop-kpi mcp` answers `initialize` before any upstream call.
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


class UsersData(_Wire):
    """`data` of `GET /api/2/users`: one series per segment/group, one value per `xValues` date."""

    series: list[list[float]]
    series_meta: list[Any] = Field(default_factory=list[Any], alias="seriesMeta")
    x_values: list[str] = Field(alias="xValues")


class UsersResponse(_Wire):
    data: UsersData


class SegmentationData(_Wire):
    """`data` of `GET /api/2/events/segmentation`: one series per group (one without a group-by), one value per
    `xValues` date; `seriesCollapsed` (the whole range per group) is not relied on."""

    series: list[list[float]]
    series_labels: list[Any] = Field(default_factory=list[Any], alias="seriesLabels")
    x_values: list[str] = Field(default_factory=list[str], alias="xValues")


class SegmentationResponse(_Wire):
    data: SegmentationData


class FunnelElement(_Wire):
    """One element (segment or group) of `GET /api/2/funnels` `data`."""

    events: list[str] = Field(default_factory=list[str])
    # Only the counts are read: conversions are computed from them (Amplitude's `cumulative` / `stepByStep`
    # fractions are rounded, and an answer without them loses nothing).
    cumulative_raw: list[float] = Field(alias="cumulativeRaw")
    median_trans_times: list[float] = Field(default_factory=list[float], alias="medianTransTimes")
    avg_trans_times: list[float] = Field(default_factory=list[float], alias="avgTransTimes")


class FunnelResponse(_Wire):
    data: list[FunnelElement]


class UserMatch(_Wire):
    user_id: str | None = None
    amplitude_id: int


class UserSearchResponse(_Wire):
    matches: list[UserMatch]  # required: sent even when nothing matches (docs/upstream-apis.md#amplitude-usersearch)
    type: str | None = None


class UserData(_Wire):
    user_id: str | None = None
    canonical_amplitude_id: int | None = None
    num_events: int | None = None
    num_sessions: int | None = None
    first_used: str | None = None
    last_used: str | None = None
    country: str | None = None
    platform: str | None = None


class ActivityEvent(_Wire):
    """An event of `useractivity`; only these four fields are relied on (the rest is UNCONFIRMED)."""

    event_type: str
    event_time: str | None = None
    event_properties: dict[str, Any] = Field(default_factory=dict[str, Any])
    session_id: int | None = None


class UserActivityResponse(_Wire):
    user_data: UserData = Field(alias="userData")
    events: list[ActivityEvent] = Field(default_factory=list[ActivityEvent])
