"""`loop-kpi`: `serve` refuses to run open outside the sandbox, `token` mints what the verifier accepts, and the
sandbox banner prints a working token and a curl line aimed at the public URL."""

from __future__ import annotations

import shlex
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
