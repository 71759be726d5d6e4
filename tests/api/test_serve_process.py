"""`loop-kpi serve --sandbox` as a real process: uvicorn's "running on" and "shutting down" lines still show (the
in-process sandbox must not lower the shared uvicorn loggers), and only the service's own address is announced."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from shared.settings import Settings

START_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for(lines: queue.Queue[str | None], seen: list[str], text: str, deadline: float) -> None:
    while not any(text in line for line in seen):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {text!r} in:\n" + "\n".join(seen)
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        assert line is not None, f"exited before {text!r}:\n" + "\n".join(seen)
        seen.append(line)


def test_the_sandbox_server_announces_where_it_runs_and_when_it_shuts_down(tmp_path: Path) -> None:
    port = _free_port()
    env = {name: value for name, value in os.environ.items() if name not in Settings.model_fields}
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--sandbox", "--port", str(port)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        cwd=tmp_path,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + START_TIMEOUT
        _wait_for(lines, seen, f"Uvicorn running on http://127.0.0.1:{port}", deadline)
        _wait_for(lines, seen, "Loop KPI is running on SANDBOX data", deadline)
        process.send_signal(signal.SIGINT)
        _wait_for(lines, seen, "Finished server process", time.monotonic() + START_TIMEOUT)
        assert process.wait(timeout=START_TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(START_TIMEOUT)
        if process.stderr is not None:
            process.stderr.close()
    while (line := lines.get_nowait() if not lines.empty() else None) is not None:
        seen.append(line)

    assert any("Shutting down" in line for line in seen), seen
    assert sum("Uvicorn running on" in line for line in seen) == 1, seen  # not the in-process sandbox's
