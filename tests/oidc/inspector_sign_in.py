"""The MCP Inspector CLI signs in at a real OpenID Connect provider and calls tools: a second, independent MCP client
driven through the whole OAuth flow (the first is the MCP SDK's own client, tests/oidc/test_mcp_sign_in.py).

    python -m tests.oidc.inspector_sign_in [--scenario sign-in|stored-auth-only|all] [--inspector "npx ... --cli"]

Starts the test provider (tests/oidc/README.md) and `loop-kpi serve --sandbox` with `KPI_JWT_ISSUER` pointing at it,
then runs the Inspector CLI with nothing but the service's `/mcp` URL:

- `sign-in`: for `tools/list` and for `tools/call kpi_overview`, one Inspector run each (its secret store is in
  memory, so a run keeps no token for the next): the Inspector gets the 401, reads the RFC 9728 metadata and the
  provider's discovery, registers itself (dynamic client registration), opens its loopback callback listener (port
  chosen by the OS) and prints "Please navigate to: <authorization URL>" on stderr. This driver plays the person at
  the browser: it follows that URL through the provider's login and consent forms (`support.sign_in`), delivers the
  callback with the code to the Inspector's listener, which answers 200 once the Inspector has exchanged the code,
  and the Inspector then makes its call with the access token and exits 0 with the JSON result.
- `stored-auth-only`: the same Inspector run with `--stored-auth-only` and no stored token exits 3 (auth_required)
  instead of waiting for a sign-in.

Why stdin is a pseudo-terminal: the Inspector CLI refuses interactive OAuth when neither stdin nor stderr is a TTY
("Interactive OAuth requires a TTY on stdin or stderr (or MCP_AUTO_OPEN_ENABLED=true)"), and
MCP_AUTO_OPEN_ENABLED=true would also make it launch a browser. With a TTY on stdin (nothing is ever typed into it)
and MCP_AUTO_OPEN_ENABLED=false it only prints the URL, as for a person in a terminal without a browser.

Exit code 0 when every step passed, 1 otherwise; one line per step on stdout. Every process started here is stopped
on the way out, and every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncGenerator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
from anyio.abc import ByteReceiveStream, Process

from tests.oidc.support import OidcProvider, node_missing, running_provider, sign_in

ROOT = Path(__file__).resolve().parents[2]
INSPECTOR = ("npx", "--yes", "@modelcontextprotocol/inspector@2.12.0", "--cli")
SERVICE_START_TIMEOUT = 60.0
INSPECTOR_TIMEOUT = 120.0  # one Inspector run, from start to exit (npx may fetch the package on a cold cache)
SIGN_IN_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
LOGIN = "analyst-ann"
NAVIGATE = re.compile(r"Please navigate to: (\S+)")


class StepFailed(Exception):
    """One step did not do what it should; the message says what happened instead."""


@dataclass
class Service:
    base_url: str
    process: Process

    @property
    def mcp_url(self) -> str:
        return self.base_url + "/mcp"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def running_service(provider: OidcProvider, log: Path) -> AsyncGenerator[Service]:
    """`loop-kpi serve --sandbox` on a free loopback port, `KPI_JWT_ISSUER` = the provider; waits for /healthz."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPI_")} | {"KPI_JWT_ISSUER": provider.issuer}
    command = [sys.executable, "-m", "api.cli", "serve", "--sandbox", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = await anyio.open_process(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    service = Service(f"http://127.0.0.1:{port}", process)
    try:
        await wait_healthy(service, log)
        yield service
    finally:
        process.terminate()
        with anyio.move_on_after(STOP_TIMEOUT, shield=True) as waited:
            await process.wait()
        if waited.cancelled_caught:
            process.kill()
            with anyio.move_on_after(STOP_TIMEOUT, shield=True):
                await process.wait()


async def wait_healthy(service: Service, log: Path) -> None:
    async with httpx2.AsyncClient(timeout=2) as http:
        try:
            with anyio.fail_after(SERVICE_START_TIMEOUT):
                while True:
                    if service.process.returncode is not None:
                        raise StepFailed(f"loop-kpi serve exited ({service.process.returncode}):\n{tail(log)}")
                    try:
                        if (await http.get(service.base_url + "/healthz")).status_code == 200:
                            return
                    except httpx2.TransportError:
                        pass
                    await anyio.sleep(0.2)  # polling interval, bounded by the deadline above
        except TimeoutError:
            raise StepFailed(f"loop-kpi serve not healthy within {SERVICE_START_TIMEOUT:.0f} s:\n{tail(log)}") from None


def tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class InspectorRun:
    """One Inspector CLI process: its output as it arrives, and the authorization URL once printed."""

    process: Process
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    navigate: anyio.Event = field(default_factory=anyio.Event)
    authorization_url: str | None = None

    async def read_stdout(self, stream: ByteReceiveStream) -> None:
        async for chunk in stream:
            self.stdout += chunk

    async def read_stderr(self, stream: ByteReceiveStream) -> None:
        async for chunk in stream:
            self.stderr += chunk
            if self.authorization_url is None and (found := NAVIGATE.search(self.stderr.decode(errors="replace"))):
                self.authorization_url = found.group(1)
                self.navigate.set()

    def output(self) -> str:
        return f"--- stderr\n{self.stderr.decode(errors='replace')}--- stdout\n{self.stdout.decode(errors='replace')}"


@asynccontextmanager
async def inspector(command: Sequence[str], env: dict[str, str], *, tty_stdin: bool) -> AsyncGenerator[InspectorRun]:
    """Start the Inspector in its own session (npx runs a shell and node under it: all are stopped together)."""
    master, slave = pty.openpty() if tty_stdin else (None, None)
    try:
        process = await anyio.open_process(
            list(command), stdin=subprocess.DEVNULL if slave is None else slave, env=env, start_new_session=True
        )
    finally:
        if slave is not None:
            os.close(slave)
    run = InspectorRun(process)
    try:
        async with anyio.create_task_group() as readers:
            assert process.stdout is not None and process.stderr is not None
            readers.start_soon(run.read_stdout, process.stdout)
            readers.start_soon(run.read_stderr, process.stderr)
            try:
                yield run
            finally:
                stop(process)
                with anyio.move_on_after(STOP_TIMEOUT, shield=True):
                    await process.wait()
                readers.cancel_scope.deadline = anyio.current_time() + STOP_TIMEOUT  # the pipes close on exit
    finally:
        if master is not None:
            os.close(master)


def stop(process: Process) -> None:
    """SIGTERM to the Inspector's whole process group (whatever of it is still running)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


async def wait_exit(run: InspectorRun) -> int:
    try:
        with anyio.fail_after(INSPECTOR_TIMEOUT):
            return await run.process.wait()
    except TimeoutError:
        raise StepFailed(f"the Inspector did not exit within {INSPECTOR_TIMEOUT:.0f} s\n{run.output()}") from None


def inspector_env(storage: Path) -> dict[str, str]:
    return os.environ | {
        "MCP_STORAGE_DIR": str(storage),  # a fresh OAuth state file: nothing stored from other runs
        "MCP_INSPECTOR_SECRET_STORE": "memory",  # no keychain; tokens never leave the process
        "MCP_AUTO_OPEN_ENABLED": "false",  # print the URL, never launch a browser
        "NO_COLOR": "1",
    }


def check_authorization_url(url: str, *, issuer: str, resource: str) -> tuple[str, str]:
    """The authorization request the Inspector built from the discovered metadata; returns (client_id, redirect_uri)."""
    parts = urlsplit(url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    expected = {
        "response_type": "code",
        "code_challenge_method": "S256",
        "resource": resource,  # RFC 8707: the audience the service requires
    }
    problems = [
        f"{name}={query.get(name)!r}, expected {value!r}"
        for name, value in expected.items()
        if query.get(name) != value
    ]
    if not url.startswith(issuer + "/"):
        problems.append(f"not at the provider {issuer}")
    if "kpi:read" not in query.get("scope", "").split():
        problems.append(f"scope {query.get('scope')!r} lacks kpi:read (from the metadata's scopes_supported)")
    redirect_uri = query.get("redirect_uri", "")
    if not redirect_uri.startswith("http://127.0.0.1:"):
        problems.append(f"redirect_uri {redirect_uri!r} is not the loopback listener")
    if not query.get("code_challenge") or not query.get("client_id"):
        problems.append("no code_challenge or client_id")
    if problems:
        raise StepFailed(f"unexpected authorization request {url}: " + "; ".join(problems))
    return query["client_id"], redirect_uri


async def sign_in_and_call(
    command: Sequence[str], provider: OidcProvider, service: Service, storage: Path, method: list[str]
) -> tuple[str, dict[str, Any]]:
    """One Inspector run that signs in through the provider's pages and makes `method`; returns (client_id, result)."""
    argv = [*command, service.mcp_url, "--transport", "http", "--callback-url", "http://127.0.0.1:0/oauth/callback"]
    argv += [*method, "--format", "json"]
    async with inspector(argv, inspector_env(storage), tty_stdin=True) as run:
        with anyio.move_on_after(INSPECTOR_TIMEOUT):
            async with anyio.create_task_group() as waiting:

                async def exited() -> None:
                    await run.process.wait()
                    waiting.cancel_scope.cancel()

                async def navigated() -> None:
                    await run.navigate.wait()
                    waiting.cancel_scope.cancel()

                waiting.start_soon(exited)
                waiting.start_soon(navigated)
        if run.authorization_url is None:
            raise StepFailed(
                f"the Inspector printed no authorization URL (exit {run.process.returncode})\n{run.output()}"
            )
        client_id, redirect_uri = check_authorization_url(
            run.authorization_url, issuer=provider.issuer, resource=service.mcp_url
        )
        async with httpx2.AsyncClient(timeout=SIGN_IN_TIMEOUT) as browser:
            try:
                with anyio.fail_after(SIGN_IN_TIMEOUT):
                    callback = await sign_in(browser, run.authorization_url, redirect_uri=redirect_uri, login=LOGIN)
                    if "code" not in parse_qs(urlsplit(callback).query):
                        raise StepFailed(f"the provider sent no code back: {callback}")
                    # The listener exchanges the code at the provider's token endpoint before it answers.
                    delivered = await browser.get(callback)
            except TimeoutError:
                raise StepFailed(f"the sign-in did not finish within {SIGN_IN_TIMEOUT:.0f} s\n{run.output()}") from None
            except (AssertionError, httpx2.HTTPError) as error:
                raise StepFailed(f"the sign-in at the provider failed: {error}\n{run.output()}") from None
        if delivered.status_code != 200:
            raise StepFailed(f"the Inspector's callback listener answered {delivered.status_code}\n{run.output()}")
        code = await wait_exit(run)
        if code != 0:
            raise StepFailed(f"the Inspector exited {code} after signing in\n{run.output()}")
        try:
            envelope = json.loads(run.stdout)  # --format json: {"result": <the MCP result>, ...}
            result: dict[str, Any] = envelope["result"]
            return client_id, dict(result)
        except (ValueError, KeyError, TypeError):
            raise StepFailed(f"the Inspector's output is not JSON\n{run.output()}") from None


async def scenario_sign_in(command: Sequence[str], provider: OidcProvider, service: Service, work: Path) -> None:
    storage = work / "inspector-sign-in"
    client_id, listed = await sign_in_and_call(command, provider, service, storage, ["--method", "tools/list"])
    names = [tool["name"] for tool in listed.get("tools", [])]
    if "kpi_overview" not in names:
        raise StepFailed(f"tools/list after sign-in lists no kpi_overview: {names}")
    report(
        f"Inspector CLI: 401 -> metadata -> {provider.issuer} (dynamic registration, client {client_id[:8]}...) -> "
        f"login + consent as {LOGIN} -> code on its loopback listener -> tools/list ({len(names)} tools)"
    )
    registered = client_id
    client_id, result = await sign_in_and_call(
        command, provider, service, storage, ["--method", "tools/call", "--tool-name", "kpi_overview"]
    )
    registration = "its stored registration" if client_id == registered else f"a new registration {client_id[:8]}..."
    structured: dict[str, Any] | None = result.get("structuredContent")
    if result.get("isError") is True or not isinstance(structured, dict):
        raise StepFailed(f"tools/call kpi_overview after sign-in: {json.dumps(result)[:1000]}")
    if structured.get("data_source") != "sandbox":
        raise StepFailed(f"kpi_overview data_source {structured.get('data_source')!r}, expected 'sandbox'")
    report(f"Inspector CLI: signed in again with {registration} -> tools/call kpi_overview (sandbox data)")


async def scenario_stored_auth_only(command: Sequence[str], service: Service, work: Path) -> None:
    argv = [*command, service.mcp_url, "--transport", "http", "--stored-auth-only", "--method", "tools/list"]
    async with inspector(argv, inspector_env(work / "inspector-stored"), tty_stdin=False) as run:
        code = await wait_exit(run)
    text = run.output()
    if code != 3 or "auth" not in text.lower():
        raise StepFailed(f"--stored-auth-only without a token: exit {code}, expected 3 (auth_required)\n{text}")
    if run.authorization_url is not None:
        raise StepFailed(f"--stored-auth-only printed an authorization URL\n{text}")
    report("Inspector CLI --stored-auth-only without a token: exit 3 (auth_required), no sign-in started")


def report(line: str) -> None:
    sys.stdout.write(f"ok    {line}\n")
    sys.stdout.flush()


async def run(scenario: str, command: Sequence[str]) -> None:
    async with anyio.create_task_group() as group:
        group.start_soon(stop_on_signal, group.cancel_scope)
        with tempfile.TemporaryDirectory(prefix="inspector-sign-in.") as tmp, running_provider() as provider:
            work = Path(tmp)
            async with running_service(provider, work / "service.log") as service:
                if scenario in ("sign-in", "all"):
                    await scenario_sign_in(command, provider, service, work)
                if scenario in ("stored-auth-only", "all"):
                    await scenario_stored_auth_only(command, service, work)
        group.cancel_scope.cancel()  # done: stop watching for signals


async def stop_on_signal(scope: anyio.CancelScope) -> None:
    """SIGTERM (`timeout` in .ci/mcp-clients.sh) or SIGINT: cancel the run, so every process started is stopped."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for received in signals:
            scope.cancel()
            raise StepFailed(f"stopped by {signal.Signals(received).name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.oidc.inspector_sign_in", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--scenario", choices=["sign-in", "stored-auth-only", "all"], default="all")
    parser.add_argument(
        "--inspector",
        default=shlex.join(INSPECTOR),
        help=f"how to run the Inspector CLI (default: {shlex.join(INSPECTOR)})",
    )
    args = parser.parse_args(argv)
    if node_missing():
        sys.stdout.write("FAIL  Node.js (node and npm) is needed for the provider and the Inspector\n")
        return 1
    failed = False
    try:
        anyio.run(run, args.scenario, shlex.split(args.inspector))
    except* StepFailed as failures:
        failed = True
        for failure in failures.exceptions:
            sys.stdout.write(f"FAIL  {failure}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
