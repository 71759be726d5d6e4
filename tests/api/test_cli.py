"""`loop-kpi`: `serve` refuses to run open outside the sandbox, `token` mints what the verifier accepts, and the
sandbox banner prints a working token and a curl line aimed at the public URL."""

from __future__ import annotations

import logging
import shlex
import socket
import subprocess
import sys
from importlib.metadata import version
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

import api.cli as cli_module
import api.main as app_module
from api.cli import banner, main
from shared.auth.scopes import Principal
from shared.auth.tokens import TokenVerifier
from shared.settings import Settings
from tests.conftest import JWT_SECRET

PUBLIC_URL = "https://kpi.example.test:8443"


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Record app builds and uvicorn starts instead of serving (and keep the root logger as pytest set it)."""
    calls: list[tuple[str, Any]] = []
    real_create_app = app_module.create_app

    def create_app(settings: Settings | None = None, **kwargs: Any) -> FastAPI:
        calls.append(("create_app", settings))
        return real_create_app(settings, **kwargs)

    def run(app: object, **kwargs: Any) -> None:
        calls.append(("uvicorn.run", (app, kwargs)))

    monkeypatch.setattr(app_module, "create_app", create_app)
    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setattr(cli_module, "configure_logging", lambda level="INFO": None)

    def port_is_free(host: str, port: int) -> None:  # the ports these tests name may be taken on this machine
        return None

    monkeypatch.setattr(cli_module, "check_port", port_is_free)
    return calls


def _fields(text: str) -> dict[str, str]:
    """The `Label:   value` lines of the banner."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        label, colon, value = line.strip().partition(":")
        if colon and label.isalpha() and line.startswith("  "):
            fields[label] = value.strip()
    return fields


async def _verify(settings: Settings, value: str) -> Principal:
    async with TokenVerifier(settings) as verifier:
        return await verifier.verify(value)


def test_serve_no_auth_without_sandbox_exits_2_before_building_anything(
    launches: list[tuple[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--no-auth"]) == 2

    assert launches == []
    assert capsys.readouterr().out == ""


def test_serve_with_no_auth_from_the_environment_but_no_sandbox_exits_2(
    launches: list[tuple[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KPI_NO_AUTH", "1")

    assert main(["serve"]) == 2

    assert launches == []


def test_serve_no_auth_in_the_sandbox_starts_uvicorn_on_the_given_address(launches: list[tuple[str, Any]]) -> None:
    assert main(["serve", "--sandbox", "--no-auth", "--host", "127.0.0.1", "--port", "8765"]) == 0

    assert [name for name, _ in launches] == ["create_app", "uvicorn.run"]
    settings: Settings = launches[0][1]
    assert (settings.KPI_SANDBOX, settings.KPI_NO_AUTH) == (True, True)
    assert settings.KPI_PUBLIC_URL == "http://127.0.0.1:8765"
    app, options = launches[1][1]
    assert isinstance(app, FastAPI)
    assert (options["host"], options["port"]) == ("127.0.0.1", 8765)


def test_token_without_a_secret_exits_2_and_prints_no_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--sub", "x"]) == 2

    assert capsys.readouterr().out == ""


def test_token_with_a_non_positive_ttl_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KPI_JWT_SECRET", JWT_SECRET)

    assert main(["token", "--sub", "x", "--ttl", "0"]) == 2

    assert capsys.readouterr().out == ""


@pytest.mark.anyio
async def test_token_carries_the_asked_scopes_roles_issuer_and_audience(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in {
        "KPI_JWT_SECRET": JWT_SECRET,
        "KPI_JWT_ISSUER": "https://auth.loop-kpi.test",
        "KPI_JWT_AUDIENCE": "loop-kpi-api",
    }.items():
        monkeypatch.setenv(name, value)

    assert main(["token", "--sub", "analyst", "--scope", "reports:read", "--role", "exec", "--role", "admin"]) == 0

    principal = await _verify(Settings(), capsys.readouterr().out.strip())
    assert principal.subject == "analyst"
    assert principal.scopes == frozenset({"reports:read"})
    assert principal.roles == frozenset({"exec", "admin"})


@pytest.mark.anyio
async def test_banner_prints_a_working_token_and_a_curl_line_to_the_public_url() -> None:
    settings = Settings.model_validate(
        {
            "KPI_JWT_SECRET": JWT_SECRET,
            "KPI_PUBLIC_URL": PUBLIC_URL + "/",
            "KPI_JWT_ISSUER": "https://auth.loop-kpi.test",
            "KPI_JWT_AUDIENCE": "loop-kpi-api",
        }
    )

    lines = _fields(banner(settings))

    assert lines["API"] == f"{PUBLIC_URL}/api/kpi/overview"
    assert lines["Docs"] == f"{PUBLIC_URL}/docs"
    printed = lines["Token"]
    principal = await _verify(settings, printed)
    assert "kpi:read" in principal.scopes
    assert lines["Dashboard"] == f"{PUBLIC_URL}/dashboard#token={printed}"
    assert shlex.split(lines["Try"]) == [
        "curl",
        "-s",
        "-H",
        f"Authorization: Bearer {printed}",
        f"{PUBLIC_URL}/api/kpi/overview",
    ]
    assert JWT_SECRET not in banner(settings)


def test_banner_without_auth_prints_no_token_and_a_bare_curl_line() -> None:
    settings = Settings.model_validate(
        {"KPI_SANDBOX": True, "KPI_NO_AUTH": True, "KPI_PUBLIC_URL": PUBLIC_URL, "KPI_JWT_SECRET": JWT_SECRET}
    )

    lines = _fields(banner(settings))

    assert "Token" not in lines
    assert shlex.split(lines["Try"]) == ["curl", "-s", f"{PUBLIC_URL}/api/kpi/overview"]


@pytest.fixture
def refuse_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the app is built or uvicorn started (the port check stays real)."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("started although the configuration is wrong")

    monkeypatch.setattr(app_module, "create_app", forbidden)
    monkeypatch.setattr(uvicorn, "run", forbidden)
    monkeypatch.setattr(cli_module, "configure_logging", lambda level="INFO": None)


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.mark.parametrize("mode", [[], ["--sandbox"]], ids=["serve", "demo"])
def test_serve_on_a_port_in_use_exits_2_with_one_line_naming_the_port_and_how_to_pick_another(
    refuse_to_start: None, capsys: pytest.CaptureFixture[str], mode: list[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        assert main(["serve", *mode, "--host", "127.0.0.1", "--port", str(port)]) == 2

    line = _one_line(capsys)
    assert f"port {port} on 127.0.0.1 is already in use" in line
    assert f"make demo PORT={port + 1}" in line and f"--port {port + 1}" in line


def test_token_without_a_secret_gives_the_command_that_makes_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--sub", "x"]) == 2

    line = _one_line(capsys)
    assert "KPI_JWT_SECRET" in line
    command = line.split("make one with: ", 1)[1]
    assert shlex.split(command)[:2] == ["python", "-c"]
    assert "secrets.token_urlsafe(48)" in command


def test_no_auth_from_the_environment_without_the_sandbox_names_the_variables(
    refuse_to_start: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KPI_NO_AUTH", "1")

    assert main(["serve"]) == 2

    line = _one_line(capsys)
    assert "KPI_NO_AUTH" in line and "KPI_SANDBOX=1" in line and "--sandbox" in line


@pytest.mark.parametrize("command", [["serve"], ["serve", "--sandbox"], ["serve", "--workers", "2"], ["mcp"]])
def test_an_unknown_allowlisted_operation_stops_every_entry_point_with_one_line_and_exit_2(
    refuse_to_start: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    monkeypatch.setenv("MCP_ALLOWED_OPERATIONS", "kpi_foo")
    monkeypatch.setenv("KPI_JWT_SECRET", JWT_SECRET)

    assert main(command) == 2

    line = _one_line(capsys)
    assert line.startswith(f"loop-kpi {command[0]}: ")
    assert "'kpi_foo'" in line and "kpi_overview" in line


def test_an_invalid_setting_stops_serve_with_one_line_naming_it(
    refuse_to_start: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KPI_UPSTREAM_TIMEOUT", "soon")

    assert main(["serve"]) == 2

    assert "KPI_UPSTREAM_TIMEOUT" in _one_line(capsys)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("KPI_JWT_SECRET", "too-short", "secrets.token_urlsafe"),
        ("KPI_JWT_ISSUER", "loop-kpi", "https://"),
        ("KPI_JWKS_URL", "http://keys.example.com/jwks", "https://"),
    ],
)
@pytest.mark.parametrize("command", [["serve"], ["mcp"], ["token", "--sub", "you"]])
def test_an_unusable_auth_setting_stops_every_entry_point_with_one_line_naming_it_and_the_fix(
    refuse_to_start: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    name: str,
    value: str,
    says: str,
) -> None:
    monkeypatch.setenv("KPI_JWT_SECRET", JWT_SECRET)
    monkeypatch.setenv(name, value)

    assert main(command) == 2

    line = _one_line(capsys)
    assert line.startswith(f"loop-kpi {command[0]}: ") and name in line and says in line
    assert value not in line or name != "KPI_JWT_SECRET"  # a secret, even a bad one, is never echoed


def test_serve_without_upstream_keys_warns_once_naming_every_missing_variable(
    launches: list[tuple[str, Any]], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("KPI_JWT_SECRET", JWT_SECRET)
    monkeypatch.setenv("AMPLITUDE_API_KEY", "configured")

    with caplog.at_level(logging.WARNING, logger="loop_kpi"):
        assert main(["serve"]) == 0

    warnings = [r.getMessage() for r in caplog.records if r.name == "loop_kpi" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    for name in ("AMPLITUDE_SECRET_KEY", "REVENUECAT_API_KEY", "REVENUECAT_PROJECT_ID"):
        assert name in warnings[0]
    assert "AMPLITUDE_API_KEY" not in warnings[0]


def test_serve_in_the_sandbox_does_not_warn_about_upstream_keys(
    launches: list[tuple[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="loop_kpi"):
        assert main(["serve", "--sandbox"]) == 0

    assert not [r for r in caplog.records if r.name == "loop_kpi"]


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_the_help_pages_describe_each_command_without_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    top = _help(capsys)
    assert "`" not in top
    assert "Amplitude and RevenueCat" in top

    token_help = _help(capsys, "token")
    assert "KPI_JWT_SECRET" in token_help and "--ttl 2592000" in token_help
    assert "KPI_ACCESS_TOKEN" in _help(capsys, "mcp")
    serve_help = " ".join(_help(capsys, "serve").split())
    assert "--host HOST interface to listen on" in serve_help
    assert "--port PORT port to listen on" in serve_help
    for command in ("serve", "token", "mcp", "sandbox"):
        assert "`" not in _help(capsys, command)


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])

    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"loop-kpi {version('loop-kpi')}"


def test_the_start_up_collection_pause_resumes_collection_without_the_start_up_objects() -> None:
    # In a process of its own: freezing is for good, and this test process must keep collecting.
    code = (
        "import gc, api.cli as cli\n"
        "with cli.collector_paused():\n"
        "    assert not gc.isenabled()\n"
        "    made = [[n] for n in range(1000)]\n"
        "assert gc.isenabled() and gc.get_freeze_count() >= 1000\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip() == "ok", done.stderr
