"""Amplitude Dashboard REST emulator (docs/upstream-apis.md): /api/2/users, events/segmentation, funnels, usersearch,
useractivity.

Auth is HTTP Basic (api key : secret key). Errors are plain text. Everything is computed from the dataset
in UTC (the sandbox project's time zone).

Long because it emulates five endpoints with their vendor errors and limits; each part is small and they share
parsing.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import re
import statistics
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import date, datetime
from typing import Literal, cast

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .dataset import COUNTRY_NAMES, Dataset, Event, User
from .faults import apply_fault
from .limits import ConcurrencyGate
from .periods import Bucket, Granularity, buckets
from .state import SandboxState
from .variants import apply_variants

_INTERVALS: dict[str, Granularity] = {"1": "day", "7": "week", "30": "month"}
_GROUPS = ("country", "platform")
_PREFIX_MATCH_CAP = 25
_MAX_ACTIVITY_LIMIT = 1000
_UUID_NAMESPACE = uuid.UUID("6f1c1f5e-5a8e-4c1e-9a51-5a4db0c0ffee")

Handler = Callable[[SandboxState, Request], Response]


class AmplitudeError(Exception):
    """An error answered with a plain-text body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error_response(status: int, retry_after: int | None) -> Response:
    # UNCONFIRMED upstream: 429 body, Retry-After (docs/upstream-apis.md#amplitude-limits); plain text, header if asked.
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return PlainTextResponse(f"sandbox fault: HTTP {status}", status_code=status, headers=headers)


def _check_auth(state: SandboxState, request: Request) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    if scheme.lower() != "basic" or decoded != f"{state.amplitude_api_key}:{state.amplitude_secret_key}":
        raise AmplitudeError(state.amplitude_auth_failure_status, "Invalid API key and/or secret key")


Gate = Callable[[SandboxState], tuple[ConcurrencyGate, int | None]]


def _endpoint(state: SandboxState, name: str, handler: Handler, gate: Gate) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        try:
            _check_auth(state, request)
            return apply_variants(state.variants.for_request(name, request), request, handler(state, request))
        except AmplitudeError as exc:
            return PlainTextResponse(exc.message, status_code=exc.status)

    async def route(request: Request) -> Response:
        state.faults.record(name)
        concurrency, limit = gate(state)
        if not concurrency.try_acquire(limit):
            # UNCONFIRMED upstream: the 429 body format (docs/upstream-apis.md#amplitude-limits).
            return PlainTextResponse(f"Too many concurrent requests (limit {limit})", status_code=429)
        try:
            return await apply_fault(state.faults.take(name), _error_response, lambda: serve(request))
        finally:
            concurrency.release()

    return route


def _dashboard_gate(state: SandboxState) -> tuple[ConcurrencyGate, int | None]:
    return state.amplitude_gate, state.amplitude_concurrency_limit


def _user_gate(state: SandboxState) -> tuple[ConcurrencyGate, int | None]:
    return state.amplitude_user_gate, state.amplitude_user_concurrency_limit


# ---- parameters ---------------------------------------------------------------------------------


def _date_range(request: Request) -> tuple[date, date]:
    values: list[date] = []
    for name in ("start", "end"):
        raw = request.query_params.get(name)
        if raw is None:
            raise AmplitudeError(400, f"Missing required parameter: {name}")
        if not re.fullmatch(r"\d{8}", raw):
            raise AmplitudeError(400, f"Invalid {name} date {raw!r}: expected YYYYMMDD")
        try:
            values.append(datetime.strptime(raw, "%Y%m%d").date())
        except ValueError:
            raise AmplitudeError(400, f"Invalid {name} date {raw!r}: expected YYYYMMDD") from None
    start, end = values
    if start > end:
        raise AmplitudeError(400, "start must not be after end")
    return start, end


def _granularity(request: Request) -> Granularity:
    raw = request.query_params.get("i", "1")
    if raw not in _INTERVALS:
        raise AmplitudeError(400, f"Invalid interval i={raw!r}: the sandbox supports 1, 7 and 30")
    return _INTERVALS[raw]


def _json_param(request: Request, name: str) -> object:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        parsed: object = json.loads(raw)
    except ValueError:
        raise AmplitudeError(400, f"Invalid JSON in parameter {name}") from None
    return parsed


def _segments(request: Request) -> None:
    parsed = _json_param(request, "s")
    if parsed is not None and not isinstance(parsed, list):
        raise AmplitudeError(400, "Parameter s must be a JSON array of segments")


def _choice(request: Request, name: str, allowed: Sequence[str], default: str) -> str:
    raw = request.query_params.get(name, default)
    if raw not in allowed:
        raise AmplitudeError(400, f"Invalid {name}={raw!r}; expected one of {', '.join(allowed)}")
    return raw


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise AmplitudeError(400, f"Invalid {name}={raw!r}: expected an integer") from None
    if not low <= value <= high:
        raise AmplitudeError(400, f"Invalid {name}={value}: expected {low}..{high}")
    return value


def _group_value(user: User, group: str) -> str:
    return COUNTRY_NAMES[user.country] if group == "country" else user.platform


# ---- /api/2/users -------------------------------------------------------------------------------


def _bucket_ids(dataset: Dataset, bucket: Bucket, metric: str) -> set[int]:
    if metric == "new":
        return {u.amplitude_id for u in dataset.users if u.first_seen in bucket}
    ids: set[int] = set()
    for day in bucket.days():
        ids |= dataset.active_amplitude_ids_on(day)
    return ids


def users(state: SandboxState, request: Request) -> Response:
    """Active or new users per day / week / month (docs/upstream-apis.md#amplitude-users-active-and-new)."""
    start, end = _date_range(request)
    metric = _choice(request, "m", ("active", "new"), "active")
    granularity = _granularity(request)
    _segments(request)
    group = request.query_params.get("g")
    if group is not None and group not in _GROUPS:
        raise AmplitudeError(400, f"Group-by {group!r} is not supported by the sandbox; use one of {_GROUPS}")
    dataset = state.dataset
    periods = buckets(start, end, granularity)
    per_bucket = [_bucket_ids(dataset, b, metric) for b in periods]
    x_values = [b.start.isoformat() for b in periods]
    if group is None:
        data: dict[str, object] = {
            "series": [[len(ids) for ids in per_bucket]],
            "seriesMeta": [state.amplitude_series_label],
            "xValues": x_values,
        }
        return JSONResponse({"data": data})
    rows: dict[str, list[int]] = {}
    for j, ids in enumerate(per_bucket):
        for aid in ids:
            user = dataset.user_by_amplitude_id(aid)
            if user is not None:
                rows.setdefault(_group_value(user, group), [0] * len(periods))[j] += 1
    labels = sorted(rows, key=lambda label: (-sum(rows[label]), label))
    grouped: dict[str, object] = {"series": [rows[k] for k in labels], "seriesMeta": labels, "xValues": x_values}
    return JSONResponse({"data": grouped})


# ---- /api/2/events/segmentation ------------------------------------------------------------------


def _event(request: Request) -> str:
    parsed = _json_param(request, "e")
    if parsed is None:
        raise AmplitudeError(400, "Missing required parameter: e")
    if not isinstance(parsed, dict):
        raise AmplitudeError(400, "Parameter e must be a JSON object with an event_type")
    event = cast("dict[str, object]", parsed)
    event_type = event.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise AmplitudeError(400, "Parameter e must be a JSON object with an event_type")
    if event.get("group_by"):
        raise AmplitudeError(400, "Group-by inside e is not supported by the sandbox")
    return event_type


def segmentation(state: SandboxState, request: Request) -> Response:
    """Event totals or uniques per day / week / month for one event (docs/upstream-apis.md#amplitude-event-segmentation)."""
    event_type = _event(request)
    start, end = _date_range(request)
    metric = _choice(request, "m", ("uniques", "totals"), "uniques")
    _choice(request, "n", ("any", "active"), "any")
    granularity = _granularity(request)
    _segments(request)
    if request.query_params.get("g") is not None:
        raise AmplitudeError(400, "Group-by g is not supported by the sandbox's event segmentation")
    periods = buckets(start, end, granularity)
    starts = [bucket.start for bucket in periods]
    totals = [0] * len(periods)
    uniques: list[set[int]] = [set() for _ in periods]
    everyone: set[int] = set()
    for event in state.dataset.events:
        day = event.event_time.date()
        if not start <= day <= end or not _matches(event, event_type):
            continue
        j = bisect.bisect_right(starts, day) - 1
        totals[j] += 1
        uniques[j].add(event.amplitude_id)
        everyone.add(event.amplitude_id)
    values = totals if metric == "totals" else [len(ids) for ids in uniques]
    collapsed = sum(totals) if metric == "totals" else len(everyone)
    data: dict[str, object] = {
        "series": [values],
        "seriesLabels": [0],
        "seriesCollapsed": [[{"setId": "", "value": collapsed}]],
        "xValues": [bucket.start.isoformat() for bucket in periods],
    }
    return JSONResponse({"data": data})


# ---- /api/2/funnels -----------------------------------------------------------------------------


def _steps(request: Request) -> list[str]:
    steps: list[str] = []
    for raw in request.query_params.getlist("e"):
        try:
            parsed: object = json.loads(raw)
        except ValueError:
            raise AmplitudeError(400, "Invalid JSON in parameter e") from None
        if not isinstance(parsed, dict):
            raise AmplitudeError(400, "Each e must be a JSON object with an event_type")
        event_type = cast("dict[str, object]", parsed).get("event_type")
        if not isinstance(event_type, str) or not event_type:
            raise AmplitudeError(400, "Each e must be a JSON object with an event_type")
        steps.append(event_type)
    if len(steps) < 2:
        raise AmplitudeError(400, "A funnel needs at least two events (repeat the e parameter)")
    return steps


def _matches(event: Event, step: str) -> bool:
    return step in ("_active", "_all") or event.event_type == step


def funnel_times(
    events: Sequence[Event], steps: Sequence[str], start: date, end: date, window_s: int, ordered: bool
) -> list[datetime]:
    """Times at which one user completed each step (shorter than ``steps`` when they dropped off).

    The user enters at their first step-0 event dated within start..end. Ordered: step k is the first
    step-k event after the step k-1 event in the user's chronological stream, at most ``window_s``
    seconds after entry. Unordered: the first step-k event at or after entry within the window,
    steps counted cumulatively (a user reaches step k when steps 1..k all happened).
    """
    entry = next(
        (i for i, e in enumerate(events) if _matches(e, steps[0]) and start <= e.event_time.date() <= end), None
    )
    if entry is None:
        return []
    t0 = events[entry].event_time
    times = [t0]
    position = entry
    for step in steps[1:]:
        found: int | None = None
        for i in range(position + 1 if ordered else entry, len(events)):
            delta = (events[i].event_time - t0).total_seconds()
            if delta > window_s:
                break
            if i != entry and _matches(events[i], step):
                found = i
                break
        if found is None:
            break
        times.append(events[found].event_time)
        if ordered:
            position = found
    return times


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _funnel_stats(results: Iterable[list[datetime]], n_steps: int) -> tuple[list[int], list[int], list[int]]:
    raw = [0] * n_steps
    deltas: list[list[float]] = [[] for _ in range(n_steps)]
    for times in results:
        for k, moment in enumerate(times):
            raw[k] += 1
            if k:
                deltas[k].append(max(0.0, (moment - times[k - 1]).total_seconds()))
    medians = [_ms(statistics.median(d)) if k and d else 0 for k, d in enumerate(deltas)]
    averages = [_ms(statistics.fmean(d)) if k and d else 0 for k, d in enumerate(deltas)]
    return raw, medians, averages


def _formatted(day: date) -> str:
    return f"{day:%b} {day.day}"


def funnels(state: SandboxState, request: Request) -> Response:
    """Funnel conversion with repeated ``e`` steps (docs/upstream-apis.md#amplitude-funnels)."""
    steps = _steps(request)
    start, end = _date_range(request)
    mode = _choice(request, "mode", ("ordered", "unordered", "sequential"), "ordered")
    new_only = _choice(request, "n", ("active", "new"), "active") == "new"
    granularity = _granularity(request)
    window = _int_param(request, "cs", 2_592_000, 1, 366 * 86400)
    _int_param(request, "limit", 100, 1, 1000)
    _segments(request)
    if mode == "unordered":
        window = max(86400, window - window % 86400)  # "rounded down to days in unordered mode"
    dataset = state.dataset
    results: list[list[datetime]] = []
    for user in dataset.users:
        if new_only and not start <= user.first_seen <= end:
            continue
        times = funnel_times(dataset.events_for(user.amplitude_id), steps, start, end, window, mode != "unordered")
        if times:
            results.append(times)
    raw, medians, averages = _funnel_stats(results, len(steps))
    first = raw[0]
    periods = buckets(start, end, granularity)
    day_counts: list[list[int]] = []
    day_medians: list[list[int]] = []
    day_averages: list[list[int]] = []
    for bucket in periods:
        inside = [t for t in results if t[0].date() in bucket]
        counts, med, avg = _funnel_stats(inside, len(steps))
        day_counts.append(counts)
        day_medians.append(med)
        day_averages.append(avg)
    x_values = [b.start.isoformat() for b in periods]
    formatted = [_formatted(b.start) for b in periods]

    def series(values: list[list[int]]) -> dict[str, object]:
        return {"series": values, "xValues": x_values, "formattedXValues": formatted}

    element: dict[str, object] = {
        "meta": {"segmentIndex": 0},
        "events": steps,
        "cumulativeRaw": raw,
        "cumulative": [(r / first if first else 0.0) if k else (1.0 if first else 0.0) for k, r in enumerate(raw)],
        "stepByStep": [
            (r / raw[k - 1] if raw[k - 1] else 0.0) if k else (1.0 if first else 0.0) for k, r in enumerate(raw)
        ],
        "medianTransTimes": medians,
        "avgTransTimes": averages,
        "dayFunnels": series(day_counts),
        "dayMedianTransTimes": series(day_medians),
        "dayAvgTransTimes": series(day_averages),
    }
    return JSONResponse({"data": [element]})


# ---- /api/2/usersearch and /api/2/useractivity ----------------------------------------------------


def _match(user: User) -> dict[str, object]:
    return {"user_id": user.user_id, "amplitude_id": user.amplitude_id}


def usersearch(state: SandboxState, request: Request) -> Response:
    """Find users by exact user id, Amplitude id or user-id prefix (docs/upstream-apis.md#amplitude-usersearch)."""
    query = request.query_params.get("user", "")
    if not query:
        raise AmplitudeError(400, "Missing required parameter: user")
    dataset = state.dataset
    exact = dataset.user_by_id(query)
    if exact is not None:
        return JSONResponse({"matches": [_match(exact)], "type": "match_user_or_device_id"})
    if query.isdigit():
        by_id = dataset.user_by_amplitude_id(int(query))
        if by_id is not None:
            return JSONResponse({"matches": [_match(by_id)], "type": "match_amplitude_id"})
    prefixed = sorted((u for u in dataset.users if u.user_id.startswith(query)), key=lambda u: u.user_id)
    if prefixed:
        matches = [_match(u) for u in prefixed[:_PREFIX_MATCH_CAP]]
        return JSONResponse({"matches": matches, "type": "match_user_prefix"})
    return JSONResponse({"matches": [], "type": "nomatch"})


def _event_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def _event_json(event: Event, user: User) -> dict[str, object]:
    return {
        "event_type": event.event_type,
        "event_time": _event_time(event.event_time),
        "event_properties": dict(event.event_properties),
        "user_properties": {},
        "session_id": event.session_id,
        "amplitude_id": event.amplitude_id,
        "user_id": event.user_id,
        "device_id": user.device_id,
        "uuid": str(uuid.uuid5(_UUID_NAMESPACE, f"{event.amplitude_id}:{event.event_id}")),
        "event_id": event.event_id,
        "platform": user.platform,
        "os_name": user.os.split(" ")[0],
        "country": COUNTRY_NAMES[user.country],
        "city": user.city,
    }


def _empty_user_data() -> dict[str, object]:
    return {
        "user_id": None,
        "canonical_amplitude_id": None,
        "merged_amplitude_ids": [],
        "num_events": 0,
        "num_sessions": 0,
        "usage_time": 0,
        "first_used": None,
        "last_used": None,
        "purchases": 0,
        "revenue": 0,
        "platform": None,
        "os": None,
        "version": None,
        "device": None,
        "device_type": None,
        "carrier": None,
        "country": None,
        "region": None,
        "city": None,
        "dma": None,
        "language": None,
        "start_version": None,
        "device_ids": [],
        "last_location": None,
        "properties": {},
    }


def _user_data(user: User, events: Sequence[Event]) -> dict[str, object]:
    sessions: dict[int, tuple[datetime, datetime]] = {}
    for e in events:
        first, last = sessions.get(e.session_id, (e.event_time, e.event_time))
        sessions[e.session_id] = (min(first, e.event_time), max(last, e.event_time))
    paid = [e for e in events if e.event_type == "Subscribe"]
    revenue = sum(float(e.event_properties.get("price", 0.0)) for e in paid)
    return {
        "user_id": user.user_id,
        "canonical_amplitude_id": user.amplitude_id,
        "merged_amplitude_ids": [],
        "num_events": len(events),
        "num_sessions": len(sessions),
        "usage_time": sum(_ms((b - a).total_seconds()) for a, b in sessions.values()),
        "first_used": events[0].event_time.date().isoformat() if events else user.first_seen.isoformat(),
        "last_used": events[-1].event_time.date().isoformat() if events else user.first_seen.isoformat(),
        "purchases": len(paid),
        "revenue": round(revenue, 2),
        "platform": user.platform,
        "os": user.os,
        "version": user.app_version,
        "device": user.device,
        "device_type": user.device_type,
        "carrier": None,
        "country": COUNTRY_NAMES[user.country],
        "region": None,
        "city": user.city,
        "dma": None,
        "language": user.language,
        "start_version": user.app_version,
        "device_ids": [user.device_id],
        "last_location": None,
        "properties": {},
    }


def useractivity(state: SandboxState, request: Request) -> Response:
    """One user's profile summary and events, paged by offset/limit (docs/upstream-apis.md#amplitude-useractivity)."""
    raw = request.query_params.get("user", "")
    if not raw.isdigit():
        raise AmplitudeError(400, "Parameter user must be a numeric Amplitude ID")
    offset = _int_param(request, "offset", 0, 0, 10**9)
    limit = _int_param(request, "limit", _MAX_ACTIVITY_LIMIT, 1, _MAX_ACTIVITY_LIMIT)
    direction: Literal["latest", "earliest"] = (
        "earliest" if _choice(request, "direction", ("latest", "earliest"), "latest") == "earliest" else "latest"
    )
    dataset = state.dataset
    user = dataset.user_by_amplitude_id(int(raw))
    if user is None:
        return JSONResponse({"userData": _empty_user_data(), "events": []})
    events = dataset.events_for(user.amplitude_id)
    ordered = list(events) if direction == "earliest" else list(reversed(events))
    page = [_event_json(e, user) for e in ordered[offset : offset + limit]]
    return JSONResponse({"userData": _user_data(user, events), "events": page})


def amplitude_routes(state: SandboxState) -> list[Route]:
    """Routes for the Amplitude Dashboard REST endpoints, bound to ``state``."""
    table: list[tuple[str, str, Handler, Gate]] = [
        ("/api/2/users", "amplitude.users", users, _dashboard_gate),
        ("/api/2/events/segmentation", "amplitude.segmentation", segmentation, _dashboard_gate),
        ("/api/2/funnels", "amplitude.funnels", funnels, _dashboard_gate),
        ("/api/2/usersearch", "amplitude.usersearch", usersearch, _user_gate),
        ("/api/2/useractivity", "amplitude.useractivity", useractivity, _user_gate),
    ]
    return [Route(path, _endpoint(state, name, handler, gate), methods=["GET"]) for path, name, handler, gate in table]
