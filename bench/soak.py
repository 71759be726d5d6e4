"""Soak test: `loop-kpi serve --sandbox` in a subprocess under mixed REST + MCP load, with rotating upstream faults.

The sandbox runs in this process (a `SandboxServer` thread; the service finds it through `KPI_SANDBOX_URL`), so the
faults are injected through its Python state. A fixed number of clients share a global request rate; each asks one
of the five operations with varied inputs (some repeat, so the cache is exercised too), over REST or over an MCP
session kept open on streamable HTTP. Every `--sample` seconds the service process's RSS, file descriptors, sockets
and established TCP connections are read from /proc. At the end the faults are cleared and the service must answer
every operation in full on both faces; the report (stdout, or `--json PATH`) says whether it did.

    .venv/bin/python -m bench.soak --minutes 3          # loopback only; not part of `make test`
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from shared import operations
from shared.auth.tokens import mint_token
from shared.sandbox import (
    SANDBOX_AMPLITUDE_API_KEY,
    SANDBOX_AMPLITUDE_SECRET_KEY,
    SANDBOX_REVENUECAT_API_KEY,
    FaultSpec,
    SandboxServer,
    SandboxState,
)

ROOT = Path(__file__).resolve().parent.parent
SECRET = "soak-secret-0123456789abcdefghijklmnopqrstuvwxyz"
Face = Literal["rest", "mcp"]
OPERATIONS = operations.operation_ids()
STEPS = ("Sign Up", "View Paywall", "Start Trial", "Subscribe")

# The service's own upstream budgets would turn most cold requests into fast 503s after a minute; the soak is about
# the process staying healthy under load and faults, so they are lifted unless --real-budgets.
ROOMY_ENV = {
    "KPI_AMPLITUDE_COST_PER_5MIN": "1000000",
    "KPI_AMPLITUDE_COST_PER_HOUR": "1000000",
    "KPI_AMPLITUDE_USER_QUERIES_PER_HOUR": "1000000",
    "KPI_REVENUECAT_CHARTS_RPM": "1000000",
    "KPI_REVENUECAT_CUSTOMERS_RPM": "1000000",
}


# `--no-cache`: every result computed afresh, to tell cache growth from a leak when reading the RSS figures.
NO_CACHE_ENV = (
    "KPI_CACHE_TTL_OVERVIEW",
    "KPI_CACHE_TTL_MAU_CURRENT",
    "KPI_CACHE_TTL_CLOSED",
    "KPI_CACHE_TTL_CONVERSION",
    "KPI_CACHE_TTL_JOURNEY",
    "KPI_CACHE_TTL_REFUNDS",
    "KPI_CACHE_TTL_PARTIAL",
)


@dataclass(frozen=True)
class Fault:
    name: str
    endpoint: str | None
    spec: FaultSpec | None


FAULTS: tuple[Fault, ...] = (
    Fault("none", None, None),
    Fault("amplitude slower than the upstream timeout", "amplitude.*", FaultSpec(latency=1.5)),
    Fault("revenuecat 503", "revenuecat.*", FaultSpec(status=503)),
    Fault("amplitude 429, Retry-After 3", "amplitude.*", FaultSpec(status=429, retry_after=3)),
    Fault("revenuecat connection resets", "revenuecat.*", FaultSpec(reset=True)),
    Fault("amplitude users malformed JSON", "amplitude.users", FaultSpec(malformed_json=True)),
    Fault("revenuecat slow body", "revenuecat.*", FaultSpec(slow_body=1.5)),
    Fault("amplitude 401", "amplitude.*", FaultSpec(status=401)),
    Fault("any upstream 502, 30 times", "*", FaultSpec(status=502, times=30)),
    Fault("revenuecat wrong shape", "revenuecat.*", FaultSpec(wrong_shape=True)),
)


# ---------------------------------------------------------------------------------------------- the service process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ProcessSample:
    at: float
    rss_kib: int
    fds: int
    sockets: int
    established: int
    requests: int


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    for entry in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{entry}")
        except OSError:
            continue  # closed while we looked
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _established(inodes: set[str]) -> int:
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


def sample(pid: int, started: float, requests: int) -> ProcessSample:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    inodes = _socket_inodes(pid)
    return ProcessSample(
        at=round(time.monotonic() - started, 1),
        rss_kib=int(match.group(1)) if match else -1,
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        sockets=len(inodes),
        established=_established(inodes),
        requests=requests,
    )


def service_command(port: int) -> list[str]:
    script = Path(sys.executable).with_name("loop-kpi")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "api.cli"]
    return [*head, "serve", "--sandbox", "--host", "127.0.0.1", "--port", str(port)]


# ---------------------------------------------------------------------------------------------- load


@dataclass
class Stats:
    latencies: dict[Face, list[float]] = field(default_factory=lambda: {"rest": [], "mcp": []})
    outcomes: Counter[str] = field(default_factory=Counter[str])
    by_phase: dict[str, Counter[str]] = field(default_factory=dict[str, Counter[str]])
    phase: str = "none"
    partial: int = 0
    exceptions: Counter[str] = field(default_factory=Counter[str])

    @property
    def requests(self) -> int:
        return sum(self.outcomes.values())

    def record(self, face: Face, outcome: str, seconds: float, *, partial: bool = False) -> None:
        key = f"{face} {outcome}"
        self.latencies[face].append(seconds)
        self.outcomes[key] += 1
        self.by_phase.setdefault(self.phase, Counter[str]())[key] += 1
        self.partial += partial


class Pace:
    """A shared request rate: each call waits for the next free slot of `rate` per second."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = time.monotonic()
        self._lock = anyio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            self._next = max(self._next + self._interval, now)
            delay = self._next - now
        await anyio.sleep(delay)


def arguments(operation: str, rng: random.Random, today: date, users: list[str]) -> dict[str, Any]:
    """Inputs for one call: a small pool of values, so some repeat (cache hits) and most do not."""

    def day(back: int) -> date:
        return today - timedelta(days=back)

    if operation == "kpi_overview":
        return {"as_of": day(rng.randrange(0, 45)).isoformat()}
    if operation == "kpi_mau":
        end = day(rng.randrange(0, 300)).replace(day=1)
        start = (end - timedelta(days=31 * rng.randrange(0, 8))).replace(day=1)
        return {"start_month": start.isoformat(), "end_month": end.isoformat()}
    if operation == "kpi_conversion":
        end = day(rng.randrange(0, 120))
        return {
            "steps": list(STEPS[: rng.randrange(2, 5)]),
            "start_date": (end - timedelta(days=rng.randrange(6, 60))).isoformat(),
            "end_date": end.isoformat(),
            "conversion_window_days": rng.choice((7, 14, 30)),
        }
    if operation == "kpi_user_journey":
        return {"user_id": rng.choice(users)}
    end = day(rng.randrange(0, 90))
    return {
        "start_date": (end - timedelta(days=rng.randrange(14, 200))).isoformat(),
        "end_date": end.isoformat(),
        "resolution": rng.choice(("day", "week", "month")),
        "user_ids": rng.sample(users, rng.randrange(0, 4)),
    }


def rest_request(operation: str, args: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    return operations.rest_request(operations.by_id(operation), args)


def is_partial(content: dict[str, Any] | None) -> bool:
    return bool(content and content.get("partial"))


def tool_title(result: Any) -> str:
    text = " ".join(str(getattr(block, "text", "")) for block in result.content)
    text = text.removeprefix("Error executing tool ").split(": ", 1)[-1]
    return text.split(":", 1)[0][:40] if ":" in text else "error"


async def rest_client_loop(
    base: str, bearer: str, stats: Stats, pace: Pace, stop_at: float, rng: random.Random, today: date, users: list[str]
) -> None:
    async with httpx2.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {bearer}"}, timeout=httpx2.Timeout(30)
    ) as http:
        while time.monotonic() < stop_at:
            await pace.wait()
            operation = rng.choice(OPERATIONS)
            method, path, kwargs = rest_request(operation, arguments(operation, rng, today, users))
            started = time.perf_counter()
            try:
                response = await http.request(method, path, **kwargs)
            except httpx2.HTTPError as exc:
                stats.exceptions[type(exc).__name__] += 1
                stats.record("rest", "transport-error", time.perf_counter() - started)
                continue
            partial = response.status_code == 200 and b'"partial":true' in response.content
            stats.record("rest", str(response.status_code), time.perf_counter() - started, partial=partial)


async def mcp_client_loop(
    base: str, bearer: str, stats: Stats, pace: Pace, stop_at: float, rng: random.Random, today: date, users: list[str]
) -> None:
    """One MCP session over streamable HTTP, reopened if it ever breaks."""
    while time.monotonic() < stop_at:
        try:
            async with (
                httpx2.AsyncClient(headers={"Authorization": f"Bearer {bearer}"}, timeout=httpx2.Timeout(30)) as http,
                Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client,
            ):
                while time.monotonic() < stop_at:
                    await pace.wait()
                    operation = rng.choice(OPERATIONS)
                    started = time.perf_counter()
                    result = await client.call_tool(operation, arguments(operation, rng, today, users))
                    seconds = time.perf_counter() - started
                    if result.is_error:
                        stats.record("mcp", f"isError {tool_title(result)}", seconds)
                    else:
                        partial = is_partial(result.structured_content)
                        stats.record("mcp", "ok", seconds, partial=partial)
        except Exception as exc:  # noqa: BLE001 - a broken session is counted and reopened, never fatal to the soak
            stats.exceptions[type(exc).__name__] += 1
            stats.record("mcp", "session-error", 0.0)


async def rotate_faults(state: SandboxState, stats: Stats, period: float, stop_at: float) -> None:
    index = 0
    while time.monotonic() < stop_at:
        fault = FAULTS[index % len(FAULTS)]
        state.clear_faults()
        if fault.endpoint is not None and fault.spec is not None:
            state.inject(fault.endpoint, fault.spec)
        stats.phase = fault.name
        index += 1
        await anyio.sleep(min(period, max(0.0, stop_at - time.monotonic())))
    state.clear_faults()
    stats.phase = "none"


async def monitor(
    pid: int, stats: Stats, every: float, stop_at: float, started: float, out: list[ProcessSample]
) -> None:
    while time.monotonic() < stop_at:
        await anyio.sleep(min(every, max(0.0, stop_at - time.monotonic())))
        out.append(sample(pid, started, stats.requests))


async def check_once(http: httpx2.AsyncClient, base: str, today: date, users: list[str], round_: int) -> dict[str, Any]:
    """Every operation on both faces with inputs never asked before (so never cached), plus /healthz and /readyz."""
    rng = random.Random(1000 + round_)
    checks: dict[str, Any] = {"healthz": (await http.get("/healthz")).status_code}
    for operation in OPERATIONS:
        args = arguments(operation, rng, today - timedelta(days=400 + round_), users)
        if operation == "kpi_user_journey":
            args = {"user_id": users[(2 * round_) % len(users)]}
        method, path, kwargs = rest_request(operation, args)
        response = await http.request(method, path, **kwargs)
        full = response.status_code == 200 and b'"partial":false' in response.content
        checks[f"rest {operation}"] = "ok" if full else f"{response.status_code} {response.text[:300]}"
    async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client:
        for operation in OPERATIONS:
            args = arguments(operation, rng, today - timedelta(days=500 + round_), users)
            if operation == "kpi_user_journey":
                args = {"user_id": users[(2 * round_ + 1) % len(users)]}
            result = await client.call_tool(operation, args)
            if result.is_error:
                checks[f"mcp {operation}"] = tool_title(result)
            else:
                checks[f"mcp {operation}"] = "partial" if is_partial(result.structured_content) else "ok"
    ready = (await http.get("/readyz")).json()
    checks["readyz"] = ready.get("status") if isinstance(ready, dict) else None  # pyright: ignore[reportUnknownMemberType]
    checks["healthy"] = (
        checks["healthz"] == 200
        and all(value == "ok" for key, value in checks.items() if key.startswith(("rest ", "mcp ")))
        and checks["readyz"] == "ready"
    )
    return checks


async def final_check(base: str, bearer: str, today: date, users: list[str], patience: float) -> dict[str, Any]:
    """With the faults cleared, check until healthy (a 429's Retry-After and the 30 s readiness cache may need
    waiting out): the first healthy round, or the last one, with how long recovery took."""
    started = time.monotonic()
    rounds: list[dict[str, Any]] = []
    async with httpx2.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {bearer}"}, timeout=httpx2.Timeout(30)
    ) as http:
        while True:
            rounds.append(await check_once(http, base, today, users, len(rounds)))
            if rounds[-1]["healthy"] or time.monotonic() - started > patience:
                break
            await anyio.sleep(5)
    final = dict(rounds[-1])
    final["rounds"] = len(rounds)
    final["recovered_after_s"] = round(time.monotonic() - started, 1) if final["healthy"] else None
    if len(rounds) > 1:
        final["first_round"] = {key: value for key, value in rounds[0].items() if value not in ("ok", 200)}
    return final


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    # RevenueCat's per-minute limits are lifted (the service adopts whatever its headers say); Amplitude keeps its
    # concurrency limits (5 dashboard, 10 user lookups), which requests the service abandoned still hold.
    state = SandboxState(charts_rpm=100_000, customer_rpm=100_000)
    users = [user.user_id for user in state.dataset.users if user.in_revenuecat][:300]
    today = datetime.now(UTC).date()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    workdir = Path(tempfile.mkdtemp(prefix="loop-kpi-soak-"))
    log_path = workdir / "service.log"
    report: dict[str, Any] = {"machine": machine(), "command": " ".join(["python -m bench.soak", *sys.argv[1:]])}
    with SandboxServer(state) as sandbox, log_path.open("wb") as log:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("KPI_", "AMPLITUDE_", "REVENUECAT_", "MCP_"))
        }
        env |= {
            "KPI_SANDBOX_URL": sandbox.base_url,
            "KPI_JWT_SECRET": SECRET,
            "KPI_UPSTREAM_TIMEOUT": str(args.upstream_timeout),
            "KPI_REQUEST_DEADLINE": str(args.deadline),
            "PYTHONPATH": str(ROOT),
        }
        if not args.real_budgets:
            env |= ROOMY_ENV
        if args.no_cache:
            env |= dict.fromkeys(NO_CACHE_ENV, "0")
        if args.cache_bytes is not None:
            env["KPI_CACHE_MAX_BYTES"] = str(args.cache_bytes)
        command = service_command(port)
        report["service_command"] = " ".join([Path(command[0]).name, *command[1:]])
        ttl = int(args.minutes * 60) + 900
        # One subject per client, as real callers are: the per-caller budget shares apply to each, not to all at once.
        bearers = [mint_token(SECRET, subject=f"soak-{index}", ttl=ttl) for index in range(args.clients)]
        bearer = mint_token(SECRET, subject="soak-check", ttl=ttl)
        stats = Stats()
        mcp_clients = round(args.clients * args.mcp_share)
        exit_code: int | None = None
        process = await anyio.open_process(command, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        try:
            async with httpx2.AsyncClient(base_url=base, timeout=httpx2.Timeout(2)) as http:
                with anyio.fail_after(60):
                    while True:
                        try:
                            if (await http.get("/healthz")).status_code == 200:
                                break
                        except httpx2.HTTPError:
                            pass
                        assert process.returncode is None, "the service exited during start-up"
                        await anyio.sleep(0.2)

            started = time.monotonic()
            samples = [sample(process.pid, started, 0)]
            stop_at = started + args.minutes * 60
            pace = Pace(args.rate)
            async with anyio.create_task_group() as group:
                group.start_soon(rotate_faults, state, stats, args.fault_period, stop_at)
                group.start_soon(monitor, process.pid, stats, args.sample, stop_at, started, samples)
                for index in range(args.clients):
                    rng = random.Random(index)
                    loop = mcp_client_loop if index < mcp_clients else rest_client_loop
                    group.start_soon(loop, base, bearers[index], stats, pace, stop_at, rng, today, users)
            elapsed = time.monotonic() - started
            state.clear_faults()
            samples.append(sample(process.pid, started, stats.requests))
            final = await final_check(base, bearer, today, users, args.patience)
            samples.append(sample(process.pid, started, stats.requests))
        finally:
            with anyio.CancelScope(shield=True):
                process.send_signal(signal.SIGINT)
                with anyio.move_on_after(20):
                    exit_code = await process.wait()
                if exit_code is None:
                    process.kill()
                    exit_code = await process.wait()
    service_log = log_path.read_text(errors="replace")
    shutil.rmtree(workdir, ignore_errors=True)
    secrets = (
        SANDBOX_AMPLITUDE_API_KEY,
        SANDBOX_AMPLITUDE_SECRET_KEY,
        SANDBOX_REVENUECAT_API_KEY,
        SECRET,
        bearer,
        *bearers,
    )

    every = stats.latencies["rest"] + stats.latencies["mcp"]
    errors = {key: count for key, count in stats.outcomes.items() if key not in ("rest 200", "mcp ok")}
    report |= {
        "minutes": args.minutes,
        "clients": args.clients,
        "mcp_clients": mcp_clients,
        "rate_limit_per_s": args.rate,
        "elapsed_s": round(elapsed, 1),
        "requests": stats.requests,
        "requests_per_s": round(stats.requests / elapsed, 1),
        "answered_in_full": stats.outcomes["rest 200"] + stats.outcomes["mcp ok"] - stats.partial,
        "partial_answers": stats.partial,
        "outcomes": dict(stats.outcomes.most_common()),
        "errors": dict(sorted(errors.items(), key=lambda item: -item[1])),
        "client_exceptions": dict(stats.exceptions),
        "by_fault": {phase: dict(counter.most_common()) for phase, counter in stats.by_phase.items()},
        "latency_ms": {
            face: {
                "p50": round(percentile(values, 0.5) * 1000, 1),
                "p99": round(percentile(values, 0.99) * 1000, 1),
                "max": round(max(values, default=float("nan")) * 1000, 1),
                "mean": round(statistics.fmean(values) * 1000, 1) if values else None,
            }
            for face, values in (("all", every), ("rest", stats.latencies["rest"]), ("mcp", stats.latencies["mcp"]))
        },
        "process": {
            "rss_mib_start": round(samples[0].rss_kib / 1024, 1),
            "rss_mib_end": round(samples[-1].rss_kib / 1024, 1),
            "rss_mib_peak": round(max(s.rss_kib for s in samples) / 1024, 1),
            "fds_start": samples[0].fds,
            "fds_end": samples[-1].fds,
            "sockets_start": samples[0].sockets,
            "sockets_end": samples[-1].sockets,
            "established_start": samples[0].established,
            "established_end": samples[-1].established,
            "samples": [s.__dict__ for s in samples],
        },
        "service_log": {
            "lines": service_log.count("\n"),
            "tracebacks": service_log.count("Traceback (most recent call last)"),
            "unexpected_errors": service_log.count("unexpected error"),
            "secrets_found": sum(service_log.count(secret) for secret in secrets),
        },
        "final_check": final,
        "service_exit_code": exit_code,
    }
    return report


def healthy_line(final: Mapping[str, Any]) -> str:
    """Whether the service answered every operation in full on both faces once the faults were cleared."""
    line = f"- Healthy at the end: {final['healthy']}"
    if final["healthy"]:
        line += f", after {final['recovered_after_s']} s ({final['rounds']} check rounds)"
    else:
        failing = {key: value for key, value in final.items() if key.startswith(("rest ", "mcp ")) and value != "ok"}
        line += f"; still failing: {failing}"
    first: Mapping[str, Any] = final.get("first_round") or {}
    titles = sorted({_title(value) for key, value in first.items() if key.startswith(("rest ", "mcp "))})
    if titles:
        line += f"; first round: {', '.join(titles)} (readyz {first.get('readyz', 'ready')})"
    return line


def _title(value: object) -> str:
    text = str(value)
    match = re.search(r'"title":"([^"]+)"', text)
    return match.group(1) if match else text[:40]


def markdown(report: Mapping[str, Any]) -> str:
    p, lat, log, host = report["process"], report["latency_ms"], report["service_log"], report["machine"]
    lines = [
        f"- Machine: {host['nproc']} CPUs, {host['cpu']}, Python {host['python']}",
        f"- Command: `{report['command']}` (service: `{report['service_command']}`)",
        (
            f"- Load: {report['clients']} clients ({report['mcp_clients']} MCP sessions), at most "
            f"{report['rate_limit_per_s']} requests/s, {report['elapsed_s']} s"
        ),
        (
            f"- Requests: {report['requests']} ({report['requests_per_s']}/s); answered in full "
            f"{report['answered_in_full']}, partial {report['partial_answers']}"
        ),
        (
            f"- Latency (ms): all p50 {lat['all']['p50']} / p99 {lat['all']['p99']}; REST p50 {lat['rest']['p50']} / "
            f"p99 {lat['rest']['p99']}; MCP p50 {lat['mcp']['p50']} / p99 {lat['mcp']['p99']}"
        ),
        f"- RSS (MiB): start {p['rss_mib_start']}, end {p['rss_mib_end']}, peak {p['rss_mib_peak']}",
        (
            f"- File descriptors: start {p['fds_start']}, end {p['fds_end']}; sockets {p['sockets_start']} -> "
            f"{p['sockets_end']}; established TCP {p['established_start']} -> {p['established_end']}"
        ),
        (
            f"- Service log: {log['lines']} lines, {log['tracebacks']} tracebacks, {log['unexpected_errors']} "
            f"unexpected errors, secrets found: {log['secrets_found']}"
        ),
        healthy_line(report["final_check"]),
        "",
        "| Outcome | Count |",
        "|---|---|",
        *(f"| {key} | {count} |" for key, count in report["outcomes"].items()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0, help="how long to keep the load on (default 3)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    parser.add_argument("--mcp-share", type=float, default=0.4, help="share of clients speaking MCP (default 0.4)")
    parser.add_argument("--rate", type=float, default=60.0, help="requests per second, all clients (default 60)")
    parser.add_argument("--fault-period", type=float, default=15.0, help="seconds per injected fault (default 15)")
    parser.add_argument("--sample", type=float, default=15.0, help="seconds between /proc samples (default 15)")
    parser.add_argument("--upstream-timeout", type=float, default=1.0, help="KPI_UPSTREAM_TIMEOUT (default 1)")
    parser.add_argument("--deadline", type=float, default=5.0, help="KPI_REQUEST_DEADLINE (default 5)")
    parser.add_argument("--patience", type=float, default=120.0, help="seconds to wait for recovery (default 120)")
    parser.add_argument("--real-budgets", action="store_true", help="keep the service's default upstream budgets")
    parser.add_argument("--no-cache", action="store_true", help="cache nothing (tells cache growth from a leak)")
    parser.add_argument(
        "--cache-bytes", type=int, help="KPI_CACHE_MAX_BYTES of the service (a small bound fills during the soak)"
    )
    parser.add_argument("--json", type=Path, help="also write the full report here")
    args = parser.parse_args(argv)

    report = anyio.run(soak, args)
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["final_check"]["healthy"] and report["service_log"]["secrets_found"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
