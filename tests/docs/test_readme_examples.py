"""The README's REST examples work as printed on every day of the year.

The sandbox rebuilds its data relative to today, so the examples are checked for every day of a leap year and of
a common year. The example block runs in a real shell (so quoting and `$(date ...)` behave as for a reader) where
`date` answers the simulated day and `curl` records its arguments.

Every day: the shell's requests ask only for dates that exist that day (never in the future, inside the sandbox's
15 months), and the showcase users they name have events, a renewing subscription and a refunded purchase in that
day's dataset (built directly, without HTTP: ~2 ms a day). Replaying every request of every day through the app
costs ~0.2 s a day, so that part samples: the 1st, 14th and last day of every month of both years (Feb 29
included) with the first 50 users (the showcase users come out the same as in the full 2,500: the generator draws
users in order and the showcase users from streams of their own), and a few days with the full dataset. Requests go
to the app in-process (`httpx2.ASGITransport` into the sandbox app, no sockets), caches off.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send

from api.main import create_app
from shared.runtime import sandbox_settings
from shared.sandbox import SandboxState, create_sandbox_app, generate_dataset
from shared.sandbox.dataset import SHOWCASE, SHOWCASE_USER_IDS, Dataset, _Generator, first_of_month
from shared.settings import Settings
from tests.conftest import JWT_SECRET, token

README = Path(__file__).resolve().parents[2] / "README.md"
SANDBOX_URL = "http://sandbox.invalid"
LEAP_YEAR, COMMON_YEAR = 2028, 2027
NO_CACHE = dict.fromkeys(
    (
        "KPI_CACHE_TTL_OVERVIEW",
        "KPI_CACHE_TTL_MAU_CURRENT",
        "KPI_CACHE_TTL_CLOSED",
        "KPI_CACHE_TTL_CONVERSION",
        "KPI_CACHE_TTL_JOURNEY",
        "KPI_CACHE_TTL_REFUNDS",
        "KPI_CACHE_TTL_PARTIAL",
    ),
    0,
)
ROOMY = {
    "KPI_AMPLITUDE_COST_PER_5MIN": 10**9,
    "KPI_AMPLITUDE_COST_PER_HOUR": 10**9,
    "KPI_AMPLITUDE_USER_QUERIES_PER_HOUR": 10**9,
    "KPI_REVENUECAT_CHARTS_RPM": 10**9,
    "KPI_REVENUECAT_CUSTOMERS_RPM": 10**9,
}
# `date` and `curl` as shell functions: no process per call, and nothing else on PATH.
SHELL_PRELUDE = r"""
date() {
  case "$*" in
    "-u +%Y") echo "${SIMULATED_TODAY%%-*}" ;;
    "-u +%F") echo "$SIMULATED_TODAY" ;;
    *) echo "date: the test does not emulate: $*" >&2; return 1 ;;
  esac
}
curl() { for arg in "$@"; do printf '%s\0' "$arg"; done; printf '\036\0'; }
"""
DAY_END = b"\x1d\x00"
CALL_END = b"\x1e\x00"


def days_of(year: int) -> list[date]:
    first = date(year, 1, 1)
    return [first + timedelta(days=n) for n in range((date(year + 1, 1, 1) - first).days)]


EXTRA_DAYS = (date(2026, 11, 14), date(2026, 11, 30))  # the days the issue saw user_00042 come out anonymous


@dataclass(frozen=True)
class Request:
    """One `curl` line of the README, as the shell passed it."""

    method: str
    path: str
    headers: dict[str, str]
    body: str | None


def readme_block() -> str:
    """The shell block of the README's "REST examples" section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## REST examples", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match is not None, "README: no bash block under REST examples"
    return match.group(1)


def parse_curl(argv: list[str]) -> Request:
    headers: dict[str, str] = {}
    body: str | None = None
    urls: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "-s":
            continue
        if arg == "-H":
            name, _, value = next(args).partition(":")
            headers[name.strip()] = value.strip()
        elif arg == "-d":
            body = next(args)
        else:
            assert not arg.startswith("-"), f"curl option the test does not know: {arg}"
            urls.append(arg)
    assert len(urls) == 1, argv
    url = urlsplit(urls[0])
    assert f"{url.scheme}://{url.netloc}" == "http://127.0.0.1:8000", urls[0]
    path = url.path + (f"?{url.query}" if url.query else "")
    return Request("POST" if body is not None else "GET", path, headers, body)


def run_readme(days: list[date], bearer: str) -> dict[date, list[Request]]:
    """Runs the README block in `bash` once per simulated day; the requests its `curl` lines make, per day."""
    bash = shutil.which("bash")
    assert bash is not None
    loop = f"{SHELL_PRELUDE}\nfor SIMULATED_TODAY in {' '.join(d.isoformat() for d in days)}; do\n(\n"
    script = loop + readme_block() + "\n)\nprintf '\\035\\0'\ndone\n"
    env = {"PATH": "/nonexistent", "TOKEN": bearer}
    done = subprocess.run([bash, "-e", "-u", "-c", script], env=env, capture_output=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    outputs = done.stdout.split(DAY_END)
    assert len(outputs) == len(days) + 1 and outputs[-1] == b""
    found: dict[date, list[Request]] = {}
    for day, output in zip(days, outputs, strict=False):
        calls = output.split(CALL_END)
        assert calls[-1] == b""
        found[day] = [parse_curl([a.decode() for a in call.split(b"\x00")[:-1]]) for call in calls[:-1]]
    return found


@pytest.fixture(scope="module")
def readme_requests() -> dict[date, list[Request]]:
    return run_readme([*days_of(LEAP_YEAR), *days_of(COMMON_YEAR), *EXTRA_DAYS], token(ttl=24 * 3600))


class Upstreams:
    """An ASGI app that forwards to the sandbox of the simulated day."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


@dataclass
class World:
    client: TestClient
    upstreams: Upstreams
    now: list[datetime]

    def on(self, day: date, *, users: int) -> None:
        moment = datetime.combine(day, time(9, 41), tzinfo=UTC)
        dataset = generate_dataset(seed=42, users=users, end=day)
        state = SandboxState(dataset, charts_rpm=None, customer_rpm=None, wall_clock=lambda: moment)
        self.upstreams.app = create_sandbox_app(state)
        self.now[0] = moment


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with pytest.MonkeyPatch.context() as patch:
        for name in Settings.model_fields:
            patch.delenv(name, raising=False)
        patch.setitem(Settings.model_config, "env_file", None)
        base = Settings.model_validate({"KPI_JWT_SECRET": JWT_SECRET})
        settings = Settings.model_validate({**sandbox_settings(base, SANDBOX_URL).model_dump(), **NO_CACHE, **ROOMY})
    upstreams = Upstreams()
    now = [datetime.now(UTC)]
    app = create_app(settings, transport=httpx2.ASGITransport(app=upstreams), clock=lambda: now[0])
    with TestClient(app) as client:
        yield World(client, upstreams, now)


def check_examples(world: World, requests: list[Request], day: date) -> None:
    for request in requests:
        response = world.client.request(request.method, request.path, headers=request.headers, content=request.body)
        where = f"{day}: {request.method} {request.path}"
        assert response.status_code == 200, f"{where} -> {response.status_code} {response.text}"
        body: dict[str, Any] = response.json()
        if request.path.startswith("/api/kpi/"):
            assert body["partial"] is False, where
        if request.path.startswith("/api/kpi/user/"):
            kinds = {entry["kind"] for entry in body["timeline"]}
            assert "event" in kinds and "renewal" in kinds and "refund" in kinds, f"{where}: {sorted(kinds)}"
        if request.path == "/api/kpi/refund-analysis":
            customers: list[dict[str, Any]] = body["customers"]
            assert customers and all(c["found"] and c["refunded"] for c in customers), f"{where}: {customers}"


def sampled_days() -> list[date]:
    days: list[date] = []
    for year in (LEAP_YEAR, COMMON_YEAR):
        for month in range(1, 13):
            last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
            days += [date(year, month, 1), date(year, month, 14), date(year, month, last)]
    return days


def test_the_readme_examples_call_every_operation_and_name_only_showcase_users(
    readme_requests: dict[date, list[Request]],
) -> None:
    requests = readme_requests[date(LEAP_YEAR, 2, 29)]

    paths = [r.path.split("?")[0] for r in requests]
    assert {"/api/kpi/overview", "/api/kpi/mau", "/api/kpi/conversion", "/api/kpi/refund-analysis"} <= set(paths)
    named = {p.removeprefix("/api/kpi/user/") for p in paths if p.startswith("/api/kpi/user/")}
    for request in requests:
        if request.body is not None:
            named |= set(json.loads(request.body).get("user_ids", []))
    assert named and named <= set(SHOWCASE_USER_IDS)
    text = README.read_text(encoding="utf-8")
    assert set(re.findall(r"user_\d{5}", text)) <= set(SHOWCASE_USER_IDS)


def request_dates(request: Request) -> list[date]:
    """Every date a request asks for, in its query string or JSON body."""
    found = re.findall(r"\d{4}-\d{2}-\d{2}", request.path + (request.body or ""))
    return [date.fromisoformat(value) for value in found]


def test_on_every_day_the_readme_asks_only_for_days_the_sandbox_has(
    readme_requests: dict[date, list[Request]],
) -> None:
    for day, requests in readme_requests.items():
        start = first_of_month(day, 14)  # the sandbox's 15 months
        asked = [value for request in requests for value in request_dates(request)]
        assert asked, day
        assert all(start <= value <= day for value in asked), f"{day}: {asked}"


def test_on_every_day_the_showcase_users_have_events_a_renewing_subscription_and_a_refund() -> None:
    for day in [*days_of(LEAP_YEAR), *days_of(COMMON_YEAR), *EXTRA_DAYS]:
        generator = _Generator(42, max(SHOWCASE) + 1, day, 15)
        for index, profile in SHOWCASE.items():
            generator._showcase(index, profile)
        dataset = generator._build()
        for user_id in SHOWCASE_USER_IDS:
            assert_showcase(dataset, user_id, day)


def assert_showcase(dataset: Dataset, user_id: str, day: date) -> None:
    user = dataset.user_by_id(user_id)
    assert user is not None, f"{day}: {user_id} unknown to Amplitude"
    events = dataset.events_for(user.amplitude_id)
    assert events and events[-1].event_time.date() == day, day
    assert events[0].event_time.date() >= dataset.start, day
    assert dataset.customer_by_id(user_id) is not None, f"{day}: {user_id} unknown to RevenueCat"
    (subscription,) = dataset.subscriptions_for(user_id)
    assert subscription.status == "active" and subscription.auto_renew, day
    renewals = [t for t in dataset.transactions_for_subscription(subscription.subscription_id) if t.is_renewal]
    assert len(renewals) >= 2, day
    assert any(p.refunded for p in dataset.purchases_for(user_id)), day


@pytest.mark.parametrize("day", [*EXTRA_DAYS, date(LEAP_YEAR, 2, 29)])
def test_the_showcase_users_are_the_same_in_the_full_dataset(day: date) -> None:
    full = generate_dataset(seed=42, users=2500, end=day)
    small = generate_dataset(seed=42, users=max(SHOWCASE) + 1, end=day)

    for user_id in SHOWCASE_USER_IDS:
        assert_showcase(full, user_id, day)
        user = full.user_by_id(user_id)
        assert user is not None and user == small.user_by_id(user_id)
        assert full.events_for(user.amplitude_id) == small.events_for(user.amplitude_id)
        assert full.subscriptions_for(user_id) == small.subscriptions_for(user_id)
        assert full.purchases_for(user_id) == small.purchases_for(user_id)


def test_the_readme_examples_answer_through_the_app_on_sampled_days(
    world: World, readme_requests: dict[date, list[Request]]
) -> None:
    for day in sampled_days():
        world.on(day, users=50)
        check_examples(world, readme_requests[day], day)


@pytest.mark.parametrize("day", EXTRA_DAYS)
def test_the_readme_examples_answer_through_the_app_with_the_full_dataset(
    world: World, readme_requests: dict[date, list[Request]], day: date
) -> None:
    world.on(day, users=2500)

    check_examples(world, readme_requests[day], day)
