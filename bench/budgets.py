"""Two `make bench` rows about budgets and memory (issues 11 and 16):

- the service's RSS with its result cache full at its bound (`KPI_CACHE_MAX_BYTES`), after asking three times as
  many distinct questions as fit, against its RSS with an empty cache;
- a budget-draining caller next to an ordinary one, with the service's real budgets: the drainer asks hundreds of
  distinct journeys and long funnels at once; the other caller's warm and cold requests must still be answered.
  The same run with the per-caller limits lifted is the control.

`python -m bench.budgets` prints just these rows.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx2

from bench.run import Row, free_port, process, wait_http
from shared.auth.tokens import mint_token
from shared.caller import current_caller
from shared.errors import KpiError
from shared.models import kpi as m
from shared.operations import CONVERSION, MAU, OVERVIEW, USER_JOURNEY
from shared.runtime import open_runtime, sandbox_settings
from shared.sandbox import FaultSpec, SandboxServer, SandboxState
from shared.services.cached import Served
from shared.settings import Settings

SECRET = "bench-secret-0123456789abcdefghijklmnopqrstuvwxyz"
CACHE_BOUND_MIB = 32


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cache_at_its_bound(sandbox_url: str, dataset_end: str) -> list[Row]:
    """RSS of `loop-kpi serve` idle, then after 3x as many distinct daily refund analyses as its cache holds."""
    env = {
        **os.environ,
        "KPI_SANDBOX": "1",
        "KPI_SANDBOX_URL": sandbox_url,
        "KPI_JWT_SECRET": SECRET,
        "KPI_CACHE_MAX_BYTES": str(CACHE_BOUND_MIB * 1024 * 1024),
        "KPI_CACHE_MAX_ENTRIES": "100000",
        "KPI_REVENUECAT_CHARTS_RPM": "1000000",
        "KPI_CALLER_COLD_COMPUTATIONS": "100",
    }
    auth = {"Authorization": f"Bearer {mint_token(SECRET, subject='bench', ttl=3600)}"}
    port = free_port()
    last = date.fromisoformat(dataset_end)
    questions = [(last - timedelta(days=89 + offset), last - timedelta(days=offset)) for offset in range(900)]
    samples: list[tuple[int, float]] = []
    with process([sys.executable, "-m", "api.cli", "serve", "--sandbox", "--port", str(port)], env) as service:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz")

        async def fill() -> None:
            limiter = anyio.CapacityLimiter(8)
            asked = 0

            async def ask(client: httpx2.AsyncClient, start: date, stop: date) -> None:
                nonlocal asked
                async with limiter:
                    params = {"start_date": start.isoformat(), "end_date": stop.isoformat(), "resolution": "day"}
                    response = await client.post("/api/kpi/refund-analysis", json=params, headers=auth)
                    assert response.status_code == 200, response.text
                    asked += 1

            async with httpx2.AsyncClient(base_url=base, timeout=60) as client:
                await ask(client, *questions[0])
                samples.append((1, rss_mib(service.pid)))
                for chunk in range(3):
                    async with anyio.create_task_group() as group:
                        for start, stop in questions[1 + chunk * 300 : 1 + (chunk + 1) * 300]:
                            group.start_soon(ask, client, start, stop)
                    samples.append((asked, rss_mib(service.pid)))

        anyio.run(fill)
    idle = samples[0][1]
    grown = [f"{rss - idle:.0f}" for _, rss in samples[1:]]
    full = samples[-1][1] - idle
    return [
        Row(
            f"RSS with the result cache full at its bound (KPI_CACHE_MAX_BYTES={CACHE_BOUND_MIB} MiB; 900 distinct "
            "daily refund analyses of ~12 KB JSON, ~110 KB held each)",
            f"{samples[-1][1]:.0f} MiB; growth after 300 / 600 / 900 results: {' / '.join(grown)} MiB",
            f"{idle:.0f} MiB with one result cached",
            f"{full / CACHE_BOUND_MIB:.2f}x the bound",
            "growth <= 1.5x the bound, flat once full",
        )
    ]


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter[str])

    def add(self, outcome: str) -> None:
        self.outcomes[outcome] += 1

    def __str__(self) -> str:
        return ", ".join(f"{name} {count}" for name, count in sorted(self.outcomes.items()))


async def _ask(tally: Tally, subject: str, call: Callable[[], Awaitable[Served[Any]]]) -> None:
    current_caller.set(subject)
    try:
        served = await call()
        tally.add("partial" if served.value.partial else "200")
    except KpiError as exc:
        tally.add(str(exc.status))


async def drainer_next_to_a_reader(settings: Settings, state: SandboxState) -> tuple[Tally, Tally, Tally, Tally]:
    """The drainer's and the reader's outcomes: (drainer, reader warm, reader cold, drainer funnels)."""
    state.reset()
    state.inject("amplitude.*", FaultSpec(latency=0.2))
    users = [u.user_id for u in state.dataset.users if u.in_revenuecat]
    end = state.dataset.end
    drainer, funnels, warm, cold = Tally(), Tally(), Tally(), Tally()
    async with open_runtime(settings, data_source="sandbox") as runtime:
        cached = runtime.cached
        current_caller.set("reader")
        await cached.answer(OVERVIEW, m.OverviewQuery())
        await cached.answer(MAU, m.MauQuery())
        with anyio.fail_after(120):
            async with anyio.create_task_group() as group:
                for user in users[20:320]:
                    query = m.UserJourneyQuery(user_id=user)
                    group.start_soon(_ask, drainer, "drainer", lambda q=query: cached.answer(USER_JOURNEY, q))
                for days in range(40, 60):  # 4-step funnels costing 320-472 units each
                    query = m.ConversionQuery(start_date=end - timedelta(days=days - 1), end_date=end)
                    group.start_soon(_ask, funnels, "drainer", lambda q=query: cached.answer(CONVERSION, q))
                await anyio.wait_all_tasks_blocked()
                for index in range(20):
                    await _ask(warm, "reader", lambda: cached.answer(OVERVIEW, m.OverviewQuery()))
                    await _ask(warm, "reader", lambda: cached.answer(MAU, m.MauQuery()))
                    journey = m.UserJourneyQuery(user_id=users[index])
                    await _ask(cold, "reader", lambda q=journey: cached.answer(USER_JOURNEY, q))
                conversion = m.ConversionQuery(start_date=end - timedelta(days=13), end_date=end)
                await _ask(cold, "reader", lambda: cached.answer(CONVERSION, conversion))
    return drainer, warm, cold, funnels


def budget_drainer(sandbox_url: str, state: SandboxState) -> list[Row]:
    base = sandbox_settings(Settings(KPI_JWT_SECRET=SECRET), sandbox_url)  # pyright: ignore[reportArgumentType]
    rows: list[Row] = []
    for label, overrides in (
        ("per-caller limits (defaults)", {}),
        ("control: limits lifted", {"KPI_CALLER_BUDGET_SHARE": 1.0, "KPI_CALLER_COLD_COMPUTATIONS": 100_000}),
    ):
        settings = Settings.model_validate({**base.model_dump(), "KPI_SANDBOX": True, **overrides})
        drainer, warm, cold, funnels = anyio.run(drainer_next_to_a_reader, settings, state)
        rows.append(
            Row(
                f"Budget drainer ({label}): 300 distinct journeys + 20 long funnels at once, real budgets, "
                "Amplitude 200 ms; meanwhile another caller asks 40 warm and 21 cold questions",
                f"other caller: warm {warm}; cold {cold}",
                f"drainer: journeys {drainer}; funnels {funnels}",
                "",
                "the other caller: every answer 200, not partial",
            )
        )
    return rows


def main() -> int:
    state = SandboxState(charts_rpm=None)
    with SandboxServer(state) as sandbox:
        rows = budget_drainer(sandbox.base_url, state)
        rows += cache_at_its_bound(sandbox.base_url, state.dataset.end.isoformat())
    for row in rows:
        print(f"| {row.name} | {row.measured} | {row.baseline} | {row.ratio} | {row.target} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
