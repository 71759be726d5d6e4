"""Reading Amplitude series: one bucket of a users query, monthly values, funnel transition times."""

from __future__ import annotations

import math
from datetime import date

from shared.errors import UpstreamError
from shared.models.amplitude import UsersData
from shared.services.figures import MissingFigure


def ms_to_s(values: list[float], index: int) -> float | None:
    """Seconds between steps from milliseconds; None for the first step or a non-finite value."""
    if index == 0 or index >= len(values) or not math.isfinite(values[index]):
        return None
    return round(values[index] / 1000, 3)


def bucket(data: UsersData, start: date, *, daily: bool) -> int:
    """The ungrouped series' value for the bucket starting at `start` (the only bucket of a one-bucket query);
    `MissingFigure` when the answer has no such value."""
    if not data.series or not data.x_values or not data.series[0]:
        raise MissingFigure("amplitude answered without a users series.")
    series = data.series[0]
    key = start.isoformat()
    if key in data.x_values:
        return round(series[data.x_values.index(key)])
    if daily:
        raise MissingFigure(f"amplitude's answer has no bucket for {key}.")
    return round(series[-1])


def monthly_values(data: UsersData) -> dict[tuple[int, int], int]:
    if not data.series:
        raise UpstreamError("amplitude returned no users series.", source="amplitude")
    values: dict[tuple[int, int], int] = {}
    for x_value, value in zip(data.x_values, data.series[0], strict=True):
        try:
            day = date.fromisoformat(x_value[:10])
        except ValueError:
            continue  # a bucket date in an unknown format: that month is reported missing
        values[(day.year, day.month)] = values.get((day.year, day.month), 0) + round(value)
    return values
