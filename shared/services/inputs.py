"""Input resolution: each operation's query with its defaults made concrete and validated, once per request.

Pure functions of the query, today (UTC, by the service's clock) and the configured default funnel, so that `mau()`
and `mau(end_month=<this month>)` resolve to the same query (and share one cache entry). Errors name the field.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta

from shared.errors import InvalidInputError
from shared.models import kpi as m

MAX_MAU_MONTHS = 36
MIN_DATE = date(2000, 1, 1)  # no analytics or store data predates it; keeps date arithmetic far from year 1
MAX_FUNNEL_DAYS = 366
MAX_REFUND_DAYS = 3 * 366


@dataclass(frozen=True, slots=True)
class Inputs:
    """What resolution depends on besides the query."""

    today: date
    conversion_steps: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DateRange:
    start: date
    end: date


def resolve_overview(query: m.OverviewQuery, inputs: Inputs) -> m.OverviewQuery:
    """`as_of` made concrete (default today), not in the future."""
    as_of = not_before_min(query.as_of or inputs.today, "as_of")
    if as_of > inputs.today:
        raise InvalidInputError("as_of must not be in the future.", field="as_of")
    return m.OverviewQuery(as_of=as_of)


def resolve_mau(query: m.MauQuery, inputs: Inputs) -> m.MauQuery:
    """Months as their first days, default the last six; validated."""
    today = inputs.today
    end_month = not_before_min(query.end_month or today, "end_month").replace(day=1)
    start_month = not_before_min(query.start_month or add_months(end_month, -5), "start_month").replace(day=1)
    if end_month > today:
        raise InvalidInputError("end_month must not be in the future.", field="end_month")
    if start_month > end_month:
        raise InvalidInputError("start_month must not be after end_month.", field="start_month")
    span = (end_month.year - start_month.year) * 12 + end_month.month - start_month.month + 1
    if span > MAX_MAU_MONTHS:
        raise InvalidInputError(f"at most {MAX_MAU_MONTHS} months can be asked at once.", field="start_month")
    return m.MauQuery(start_month=start_month, end_month=end_month)


def resolve_conversion(query: m.ConversionQuery, inputs: Inputs) -> m.ConversionQuery:
    """Steps and dates made concrete (default funnel, last 30 days); validated."""
    steps = list(query.steps) if query.steps is not None else list(inputs.conversion_steps)
    if len(steps) == 1 and "," in steps[0]:
        raise InvalidInputError(
            "a funnel needs 2 to 10 steps, each its own `steps` value: repeat the parameter once per step, in order "
            "(REST: `?steps=Sign%20Up&steps=Subscribe`; MCP: a list), not one comma-separated value.",
            field="steps",
        )
    if not 2 <= len(steps) <= m.MAX_FUNNEL_STEPS:
        raise InvalidInputError(
            f"a funnel needs 2 to {m.MAX_FUNNEL_STEPS} steps (repeat `steps` once per step, in order).", field="steps"
        )
    end = not_before_min(query.end_date or inputs.today, "end_date")
    span = date_range(query.start_date or end - timedelta(days=29), end, MAX_FUNNEL_DAYS, inputs.today)
    return query.model_copy(update={"steps": steps, "start_date": span.start, "end_date": span.end})


def resolve_user_journey(query: m.UserJourneyQuery, inputs: Inputs) -> m.UserJourneyQuery:
    """Nothing to default: the user id was validated with the query."""
    return query


def resolve_refund_analysis(query: m.RefundAnalysisQuery, inputs: Inputs) -> m.RefundAnalysisQuery:
    """Dates validated; user ids de-duplicated, first occurrence kept."""
    date_range(query.start_date, query.end_date, MAX_REFUND_DAYS, inputs.today)
    if query.user_ids is None:
        return query
    return query.model_copy(update={"user_ids": list(dict.fromkeys(query.user_ids))})


# ---------------------------------------------------------------------------------------------- dates


def date_range(start: date, end: date, max_days: int, today: date) -> DateRange:
    """A validated inclusive range: not before 2000, not in the future, in order, at most `max_days` long."""
    not_before_min(start, "start_date")
    not_before_min(end, "end_date")
    if end > today:
        raise InvalidInputError("end_date must not be in the future.", field="end_date")
    if start > end:
        raise InvalidInputError("start_date must not be after end_date.", field="start_date")
    if (end - start).days + 1 > max_days:
        raise InvalidInputError(f"the date range must not exceed {max_days} days.", field="start_date")
    return DateRange(start, end)


def not_before_min(day: date, field: str) -> date:
    if day < MIN_DATE:
        raise InvalidInputError(f"{field} must be on or after {MIN_DATE.isoformat()}.", field=field)
    return day


def month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + (day.month - 1) + months
    return date(index // 12, index % 12 + 1, 1)


def months_between(start: date, end: date) -> list[date]:
    count = (end.year - start.year) * 12 + end.month - start.month + 1
    return [add_months(start, i) for i in range(count)]
