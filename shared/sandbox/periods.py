"""Date buckets shared by the emulators: day / week (Monday start) / calendar month, clipped to a range."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

Granularity = Literal["day", "week", "month"]


@dataclass(frozen=True, slots=True)
class Bucket:
    """One period: ``start``..``end`` (inclusive) is the period clipped to the requested range."""

    start: date
    end: date
    period_start: date
    period_end: date

    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.start <= day <= self.end


def period_of(day: date, granularity: Granularity) -> tuple[date, date]:
    """The whole (unclipped) period containing ``day``, as inclusive (first, last) dates."""
    if granularity == "day":
        return day, day
    if granularity == "week":
        first = day - timedelta(days=day.weekday())
        return first, first + timedelta(days=6)
    first = day.replace(day=1)
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return first, following - timedelta(days=1)


def buckets(start: date, end: date, granularity: Granularity) -> list[Bucket]:
    """Consecutive periods covering ``start..end`` (inclusive), each clipped to that range."""
    result: list[Bucket] = []
    day = start
    while day <= end:
        first, last = period_of(day, granularity)
        result.append(Bucket(max(first, start), min(last, end), first, last))
        day = last + timedelta(days=1)
    return result
