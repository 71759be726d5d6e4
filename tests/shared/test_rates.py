"""One convention for every rate, share and percentage in every result: percent, two decimals, a name ending in
`_pct`, a description saying "in percent" (`shared/services/rates.py`). The schema walk covers every operation's
result model, so a new operation or field cannot drift."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, cast

import pytest

from shared.operations import OPERATIONS
from shared.services.rates import PCT_DECIMALS, exact_pct, mean_pct, pct, round_pct

RATE_WORDS = re.compile(
    r"\b(rates?|share|ratio|fraction|proportion|percent(age)?s?|conversion|0-1)\b|_pct\b|per ?cent", re.IGNORECASE
)
RATE_NAME = re.compile(r"(rate|share|ratio|fraction|proportion|percent|pct|conversion)", re.IGNORECASE)

Json = dict[str, Any]


def _types(schema: Json) -> set[str]:
    if "type" in schema:
        return {schema["type"]}
    return {t for option in schema.get("anyOf", []) for t in _types(cast("Json", option))}


def _resolve(schema: Json, defs: Json) -> Json:
    ref = schema.get("$ref")
    return cast("Json", defs[ref.rsplit("/", 1)[-1]]) if isinstance(ref, str) else schema


def _fields(schema: Json, defs: Json, path: str, seen: set[str]) -> Iterator[tuple[str, str, Json]]:
    """Every named property reachable from `schema`: (field path, name, property schema)."""
    schema = _resolve(schema, defs)
    for name, prop in cast("Json", schema.get("properties", {})).items():
        yield f"{path}{name}", name, cast("Json", prop)
        options = [prop, *prop.get("anyOf", [])]
        options += [cast("Json", option).get("items", {}) for option in options]
        refs = {cast("Json", option).get("$ref") for option in options} - {None} - seen
        for ref in sorted(cast("set[str]", refs)):
            yield from _fields({"$ref": ref}, defs, f"{path}{name}.", seen | {ref})


def _rate_like_numbers() -> list[tuple[str, str, Json]]:
    found: list[tuple[str, str, Json]] = []
    for operation in OPERATIONS:
        schema = operation.result.model_json_schema(mode="serialization")
        defs = cast("Json", schema.get("$defs", {}))
        for path, name, prop in _fields(schema, defs, f"{operation.id}:", set()):
            if name.endswith("_pct") or (
                _types(prop) & {"number", "integer"}
                and (RATE_NAME.search(name) or RATE_WORDS.search(str(prop.get("description", ""))))
                and not name.endswith(("_days", "_seconds", "_usd"))
                and "integer" not in _types(prop)
            ):
                found.append((path, name, prop))
    return found


def test_the_schema_walk_finds_the_rates_of_every_operation_that_has_some() -> None:
    paths = {path for path, _, _ in _rate_like_numbers()}
    assert {
        "kpi_mau:months.change_pct",
        "kpi_conversion:steps.step_conversion_pct",
        "kpi_conversion:steps.cumulative_conversion_pct",
        "kpi_conversion:overall_conversion_pct",
        "kpi_conversion:trial_conversion.conversion_rate_pct",
        "kpi_refund_analysis:periods.refund_rate_pct",
        "kpi_refund_analysis:summary.refund_rate_pct",
        "kpi_refund_analysis:summary.average_period_refund_rate_pct",
    } <= paths


@pytest.mark.parametrize(
    ("path", "name", "prop"), _rate_like_numbers(), ids=lambda v: v if isinstance(v, str) and ":" in v else ""
)
def test_every_rate_in_every_result_is_a_percentage_named_and_described_so(path: str, name: str, prop: Json) -> None:
    assert name.endswith("_pct"), f"{path}: a rate's name ends in `_pct`"
    assert _types(prop) <= {"number", "null"} and "number" in _types(prop), f"{path}: a rate is a number"
    description = str(prop.get("description", ""))
    assert "in percent" in description, f"{path}: its description says 'in percent': {description!r}"
    assert "0-1" not in description and "fraction" not in description.lower(), path


def test_integer_fields_are_never_named_as_rates() -> None:
    for operation in OPERATIONS:
        schema = operation.result.model_json_schema(mode="serialization")
        for path, name, prop in _fields(schema, cast("Json", schema.get("$defs", {})), f"{operation.id}:", set()):
            if "integer" in _types(prop):
                assert not name.endswith("_pct"), path


def test_a_rate_is_rounded_once_to_two_decimals_from_the_unrounded_counts() -> None:
    assert PCT_DECIMALS == 2
    assert pct(35, 59) == 59.32  # 59.3220...: Amplitude would say 0.5932203389830508
    assert pct(1, 3) == 33.33 and pct(2, 3) == 66.67
    assert pct(0, 7) == 0.0 and pct(7, 7) == 100.0
    assert pct(1, 0) is None and pct(None, 3) is None and pct(1, None) is None
    assert round_pct(12.345678) == 12.35 and round_pct(None) is None
    # An average is taken over the unrounded rates and rounded once: rounding each first would say 0.01 here.
    rates = [exact_pct(6, 100_000) or 0.0, exact_pct(6, 100_000) or 0.0, exact_pct(2, 100_000) or 0.0]
    assert mean_pct(rates) == 0.0
    assert round(sum(round_pct(r) or 0.0 for r in rates) / 3, 2) == 0.01
    assert mean_pct([]) is None
