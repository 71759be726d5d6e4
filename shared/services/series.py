"""Reading Amplitude series: one bucket of a users query, monthly values, funnel transition times."""

from __future__ import annotations

import math
from datetime import date

from shared.errors import UpstreamError
from shared.models.amplitude import UsersData


def ms_to_s(values: list[float], index: int) -> float | None:
    """Seconds between steps from milliseconds; None for the first step or a non-finite value."""
    if index == 0 or index >= len(values) or not math.isfinite(values[index]):
        return None
    return round(values[index] / 1000, 3)


def bucket(data: UsersData, start: date, *, daily: bool) -> int:
    """The ungrouped series' value for the bucket starting at `start` (the only bucket of a one-bucket query)."""
    if not data.series or not data.x_values:
        raise UpstreamError("amplitude returned no users series.", source="amplitude")
    series = data.series[0]
    key = start.isoformat()
    if key in data.x_values:
        return round(series[data.x_values.index(key)])
    if daily:
        raise UpstreamError(f"amplitude returned no bucket for {key}.", source="amplitude")
    return round(series[-1])


def monthly_values(data: UsersData) -> dict[tuple[int, int], int]:
    if not data.series:
        raise UpstreamError("amplitude returned no users series.", source="amplitude")
    values: dict[tuple[int, int], int] = {}
    for x_value, value in zip(data.x_values, data.series[0], strict=True):
        try:
            day = date.fromisoformat(x_value[:10])
        except ValueError as exc:
            raise UpstreamError("amplitude returned a bucket date in an unknown format.", source="amplitude") from exc
        values[(day.year, day.month)] = values.get((day.year, day.month), 0) + round(value)
    return values
