"""Two service processes sharing one Redis: one upstream call for many identical cold requests, one budget, and
service that goes on while Redis is down."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx2

from shared.sandbox import FaultSpec, SandboxServer, SandboxState
from shared.settings import Settings
from tests.conftest import JWT_SECRET, token
from tests.scale.conftest import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def replicas(count: int, *, sandbox_url: str, redis_url: str, **env: str) -> Generator[list[str]]:
    """`count` service processes (`loop-kpi serve --sandbox`) on their own ports; yields their base URLs."""
    clean = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    base = clean | {
        "KPI_SANDBOX_URL": sandbox_url,
        "KPI_REDIS_URL": redis_url,
        "KPI_JWT_SECRET": JWT_SECRET,
        "KPI_AMPLITUDE_COST_PER_5MIN": "1000000",
        "KPI_REVENUECAT_CHARTS_RPM": "1000000",
        # Generous on a loaded CI machine: a slow answer must not be mistaken for Redis being down (the fallback
        # would then ask the upstream once per replica).
        "KPI_REDIS_TIMEOUT": "5",
        **env,
    }
    ports = [free_port() for _ in range(count)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--sandbox", "--port", str(port)],
            env=base,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 60
        for url in urls:
            while True:
                try:
                    if httpx2.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                assert time.monotonic() < deadline, "a replica did not start"
                time.sleep(0.05)  # polling for start-up, bounded by the deadline above
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(15)


def test_identical_cold_requests_split_across_two_replicas_make_one_upstream_call(
    sandbox_server: SandboxServer, sandbox: SandboxState, redis_url: str
) -> None:
    sandbox.inject("amplitude.users", FaultSpec(latency=0.5))
    headers = {"Authorization": f"Bearer {token()}"}
    with replicas(2, sandbox_url=sandbox_server.base_url, redis_url=redis_url) as urls:
        statuses: list[int] = []
        bodies: set[bytes] = set()

        async def ask(url: str, client: httpx2.AsyncClient) -> None:
            # Months inside the dataset: the replicas run on the wall clock, the sandbox data ends on TODAY.
            response = await client.get(
                url + "/api/kpi/mau?start_month=2026-06-01&end_month=2026-11-01", headers=headers
            )
            statuses.append(response.status_code)
            bodies.add(response.content)

        async def storm() -> None:
            async with httpx2.AsyncClient(timeout=30, limits=httpx2.Limits(max_connections=200)) as client:
                with anyio.fail_after(60):
                    async with anyio.create_task_group() as group:
                        for index in range(200):
                            group.start_soon(ask, urls[index % 2], client)

        anyio.run(storm)
    assert statuses == [200] * 200
    assert len(bodies) == 1
    assert sandbox.counts["amplitude.users"] == 1


def test_an_upstream_budget_is_shared_across_replicas(
    sandbox_server: SandboxServer, sandbox: SandboxState, redis_url: str
) -> None:
    users = [u.user_id for u in sandbox.dataset.users if u.in_revenuecat][:8]
    headers = {"Authorization": f"Bearer {token()}"}
    with replicas(
        2,
        sandbox_url=sandbox_server.base_url,
        redis_url=redis_url,
        KPI_AMPLITUDE_USER_QUERIES_PER_HOUR="6",  # a journey looks a user up twice (usersearch, useractivity)
        KPI_CALLER_BUDGET_SHARE="1",  # one caller here: the whole budget is theirs
    ) as urls:
        complete = 0
        for index, user_id in enumerate(users):
            response = httpx2.get(f"{urls[index % 2]}/api/kpi/user/{user_id}", headers=headers, timeout=30)
            assert response.status_code == 200, response.text
            body = response.json()
            if not body["partial"]:
                complete += 1
            else:
                amplitude = next(s for s in body["sources"] if s["source"] == "amplitude")
                assert amplitude["error"]["status"] == 503
                assert amplitude["error"]["retry_after"] > 60
    lookups = sandbox.counts.get("amplitude.usersearch", 0) + sandbox.counts.get("amplitude.useractivity", 0)
    assert complete == 3
    assert lookups == 6


def test_replicas_keep_serving_while_redis_is_down_and_share_again_when_it_returns(
    sandbox_server: SandboxServer, sandbox: SandboxState, redis_server: RedisServer, redis_url: str
) -> None:
    headers = {"Authorization": f"Bearer {token()}"}
    with replicas(2, sandbox_url=sandbox_server.base_url, redis_url=redis_url) as urls:
        for url in urls:
            ready = httpx2.get(url + "/readyz", timeout=10).json()
            assert ready["redis"]["reachable"] is True
        redis_server.stop()
        for url in urls:
            response = httpx2.get(url + "/api/kpi/conversion", headers=headers, timeout=30)
            assert response.status_code == 200
            ready = httpx2.get(url + "/readyz", timeout=10).json()
            assert ready["redis"]["reachable"] is False
            assert ready["status"] == "degraded"
        redis_server.start()
        for url in urls:
            assert httpx2.get(url + "/readyz", timeout=10).json()["redis"]["reachable"] is True
        sandbox.reset_counts()
        sandbox.inject("amplitude.users", FaultSpec(latency=0.3))
        mau = "/api/kpi/mau?start_month=2026-01-01&end_month=2026-03-01"

        async def both() -> None:
            async def ask(client: httpx2.AsyncClient, url: str) -> None:
                assert (await client.get(url + mau, headers=headers)).status_code == 200

            with anyio.fail_after(30):
                async with httpx2.AsyncClient(timeout=30) as client, anyio.create_task_group() as group:
                    for url in urls * 5:
                        group.start_soon(ask, client, url)

        anyio.run(both)
    assert sandbox.counts["amplitude.users"] == 1


def test_amplitudes_concurrency_limit_is_shared_by_two_replicas(
    sandbox_server: SandboxServer, sandbox: SandboxState, redis_url: str
) -> None:
    # The sandbox answers 429 past 5 concurrent Dashboard requests, as Amplitude does per project. Each replica
    # allows itself 5: only a limit shared through Redis keeps 20 concurrent cold questions on two replicas under it.
    sandbox.inject("amplitude.users", FaultSpec(latency=0.3))
    headers = {"Authorization": f"Bearer {token()}"}
    ranges = [(f"2025-{month:02d}-01", "2026-11-01") for month in range(1, 13)]
    ranges += [(f"2025-{month:02d}-01", "2026-10-01") for month in range(1, 9)]
    with replicas(
        2,
        sandbox_url=sandbox_server.base_url,
        redis_url=redis_url,
        KPI_UPSTREAM_RETRIES="0",
        KPI_CALLER_COLD_COMPUTATIONS="100",
    ) as urls:
        sandbox.reset_counts()
        outcomes: list[tuple[int, bool | None]] = []

        async def ask(url: str, start: str, end: str, client: httpx2.AsyncClient) -> None:
            response = await client.get(
                url + "/api/kpi/mau", params={"start_month": start, "end_month": end}, headers=headers
            )
            outcomes.append((response.status_code, response.json().get("partial")))

        async def storm() -> None:
            async with httpx2.AsyncClient(timeout=30) as client:
                with anyio.fail_after(60):
                    async with anyio.create_task_group() as group:
                        for index, (start, end) in enumerate(ranges):
                            group.start_soon(ask, urls[index % 2], start, end, client)

        anyio.run(storm)
    assert outcomes == [(200, False)] * len(ranges)
    assert sandbox.counts["amplitude.users"] == len(ranges)
