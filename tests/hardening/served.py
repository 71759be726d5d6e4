"""`loop-kpi serve --sandbox` as a real subprocess on loopback, against the session sandbox, its stderr kept in a
file: for the abuse tests, which need the real server (uvicorn's connection handling, the configured logging)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2

from shared.settings import Settings
from tests.conftest import JWT_SECRET

ROOT = Path(__file__).resolve().parents[2]
ROOMY_ENV = {
    "KPI_AMPLITUDE_COST_PER_5MIN": "1000000",
    "KPI_AMPLITUDE_COST_PER_HOUR": "1000000",
    "KPI_AMPLITUDE_USER_QUERIES_PER_HOUR": "1000000",
    "KPI_REVENUECAT_CHARTS_RPM": "1000000",
    "KPI_REVENUECAT_CUSTOMERS_RPM": "1000000",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    """A running `loop-kpi serve` process."""

    base_url: str
    port: int
    stderr: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")


@contextmanager
def loop_kpi_serve(sandbox_url: str, tmp: Path, **env: str) -> Generator[Served]:
    """`loop-kpi serve --sandbox` on a free loopback port, the upstreams at `sandbox_url`, the test JWT secret,
    roomy budgets (overridable through `env`); stopped (and waited for) on exit."""
    clean = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    environment = clean | {"KPI_SANDBOX_URL": sandbox_url, "KPI_JWT_SECRET": JWT_SECRET, **ROOMY_ENV, **env}
    port = free_port()
    stderr = tmp / f"serve-{port}.log"
    with stderr.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--sandbox", "--port", str(port)],
            env=environment,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    served = Served(f"http://127.0.0.1:{port}", port, stderr, process)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"loop-kpi serve exited: {served.log()}"
            try:
                if httpx2.get(served.base_url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert time.monotonic() < deadline, "loop-kpi serve did not start"
            time.sleep(0.05)  # polling for start-up, bounded by the deadline above
        yield served
    finally:
        process.terminate()
        process.wait(15)
