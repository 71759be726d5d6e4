"""The MCP allowlist: resolved from MCP_ALLOWED_OPERATIONS, failing closed."""

from collections.abc import Sequence
from pathlib import Path

import pytest

from shared.auth.allowlist import UnknownOperationError, resolve_allowlist
from shared.operations import operation_ids

OPERATIONS = operation_ids()
from shared.settings import Settings


def test_there_are_five_operations_in_a_stable_order() -> None:
    assert OPERATIONS == ("kpi_overview", "kpi_mau", "kpi_conversion", "kpi_user_journey", "kpi_refund_analysis")


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        pytest.param(None, OPERATIONS, id="unset-allows-all"),
        pytest.param((), (), id="explicitly-empty-allows-none"),
        pytest.param(["kpi_mau"], ("kpi_mau",), id="single"),
        pytest.param(
            ["kpi_refund_analysis", "kpi_overview", "kpi_mau"],
            ("kpi_overview", "kpi_mau", "kpi_refund_analysis"),
            id="subset-in-operations-order",
        ),
        pytest.param(["  kpi_mau ", "\tkpi_conversion\n"], ("kpi_mau", "kpi_conversion"), id="whitespace-stripped"),
        pytest.param(["kpi_mau", "kpi_mau", " kpi_mau"], ("kpi_mau",), id="duplicates-collapse"),
        pytest.param(list(reversed(OPERATIONS)), OPERATIONS, id="all-in-reverse"),
    ],
)
def test_the_allowlist_resolves_to_known_operations_in_stable_order(
    entries: Sequence[str] | None, expected: tuple[str, ...]
) -> None:
    assert operation_ids(resolve_allowlist(entries)) == expected


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param(["kpi_mau", "kpi_delete_everything"], id="unknown-name"),
        pytest.param(["KPI_MAU"], id="names-are-case-sensitive"),
        pytest.param(["kpi-mau"], id="near-miss"),
        pytest.param(["kpi_mau", ""], id="empty-name"),
        pytest.param(["kpi_mau kpi_overview"], id="space-separated-is-one-bad-name"),
    ],
)
def test_an_unknown_name_fails_closed_listing_the_valid_names(entries: Sequence[str]) -> None:
    with pytest.raises(UnknownOperationError) as caught:
        resolve_allowlist(entries)
    message = str(caught.value)
    assert "MCP_ALLOWED_OPERATIONS" in message
    for name in OPERATIONS:
        assert name in message


def test_an_unknown_operation_is_a_value_error() -> None:
    assert issubclass(UnknownOperationError, ValueError)


def test_a_bare_string_is_refused_rather_than_read_character_by_character() -> None:
    with pytest.raises(TypeError):
        resolve_allowlist("kpi_mau")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("kpi_mau,kpi_overview", ("kpi_overview", "kpi_mau"), id="csv"),
        pytest.param(
            " kpi_conversion , kpi_mau ,", ("kpi_mau", "kpi_conversion"), id="csv-with-spaces-and-trailing-comma"
        ),
    ],
)
def test_the_settings_env_var_feeds_the_allowlist(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, raw: str, expected: tuple[str, ...]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("MCP_ALLOWED_OPERATIONS", raw)
    settings = Settings()
    assert operation_ids(resolve_allowlist(settings.MCP_ALLOWED_OPERATIONS)) == expected


def test_an_unset_env_var_allows_every_operation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.delenv("MCP_ALLOWED_OPERATIONS", raising=False)
    assert operation_ids(resolve_allowlist(Settings().MCP_ALLOWED_OPERATIONS)) == OPERATIONS
