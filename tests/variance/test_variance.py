"""The vendor-variance suite: every way `cases.CASES` varies the upstream answers, through every operation it touches.

For each case the same questions are asked without the variant (the baseline) and with it, through the REST face of
one module-wide app that caches nothing. A 200 must equal the baseline except the figures the case names: those are
null (or derived) and each is named by a warning, and nothing else is warned about; any other status is the
documented problem. A sample of cases is also asked through MCP, which must answer exactly what REST answers.
"""

from __future__ import annotations

import copy
import re
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, cast

import httpx2
import pytest
from fastapi import FastAPI

from shared.sandbox import Dataset, SandboxServer, SandboxState
from tests.conftest import token
from tests.hardening.support import call_tool, hardened_settings, http_client, running, tool_text
from tests.server.support import rest_request

from .cases import (
    ANONYMOUS_USER,
    CASES,
    OPERATIONS,
    STORE_USER,
    WEB_USER,
    Case,
    Outcome,
    matrix,
    relabelled_subscription,
)

SPAN_START, SPAN_END = "2026-10-01", "2026-10-31"
STEPS = ["Sign Up", "View Paywall", "Start Trial"]
STORES_WITH_TRANSACTIONS = ("app_store", "play_store")
MASK = "<masked>"
ALWAYS_MASKED = ("warnings", "provenance")
_PART = re.compile(r"(\w+)(?:\[([^\]]*)\])?")

Json = dict[str, Any]


def journey_user(symbol: str, dataset: Dataset) -> str:
    if symbol == STORE_USER:
        return dataset.user_with_store("app_store")
    if symbol == WEB_USER:
        return dataset.web_billing_user()
    if symbol == ANONYMOUS_USER:  # one whose subscriptions are all store ones: the id is what is varied here
        anonymous = sorted({s.user_id for s in dataset.subscriptions if s.user_id.startswith("$")})
        return next(
            u
            for u in anonymous
            if all(s.store in STORES_WITH_TRANSACTIONS for s in dataset.subscriptions_for(u))
            and any(len(s.transaction_ids) >= 2 for s in dataset.subscriptions_for(u))
        )
    return symbol


def arguments(operation: str, case: Case, dataset: Dataset) -> dict[str, Any]:
    if operation == "kpi_overview":
        return {"as_of": "2026-11-15"}
    if operation == "kpi_mau":
        return {"start_month": "2026-05-01", "end_month": "2026-11-01"}
    if operation == "kpi_conversion":
        return {"steps": STEPS, "start_date": SPAN_START, "end_date": SPAN_END}
    if operation == "kpi_user_journey":
        return {"user_id": journey_user(case.journey_user, dataset)}
    return {
        "start_date": "2026-08-01",
        "end_date": "2026-11-20",
        "resolution": "month",
        "user_ids": [journey_user(STORE_USER, dataset), journey_user(WEB_USER, dataset)],
    }


# ---------------------------------------------------------------------------------------------- figure paths


def locate(body: Any, figure: str) -> list[tuple[Any, Any]]:
    """(container, key) of every value a figure path names (`a.b`, `list[]`, `list[3]`, `list[<id or month>]`)."""
    nodes: list[Any] = [body]
    found: list[tuple[Any, Any]] = []
    parts = figure.split(".")
    for position, part in enumerate(parts):
        match = _PART.fullmatch(part)
        assert match is not None, figure
        key, selector = match.group(1), match.group(2)
        last = position == len(parts) - 1
        following: list[Any] = []
        for raw in nodes:
            node = as_dict(raw)
            if node is None:
                continue
            if selector is None:
                if last:
                    found.append((node, key))
                elif key in node:
                    following.append(node[key])
                continue
            items = as_list(node.get(key))
            if items is None:
                continue
            if selector == "":
                indexes = list(range(len(items)))
            elif selector.isdigit():
                indexes = [int(selector)] if int(selector) < len(items) else []
            else:
                indexes = [
                    i
                    for i, item in enumerate(items)
                    if selector in ((as_dict(item) or {}).get("id"), (as_dict(item) or {}).get("month"))
                ]
            if last:
                found += [(items, i) for i in indexes]
            else:
                following += [items[i] for i in indexes]
        nodes = following
    return found


def as_dict(value: Any) -> Json | None:
    return cast("Json", value) if isinstance(value, dict) else None


def as_list(value: Any) -> list[Any] | None:
    return cast("list[Any]", value) if isinstance(value, list) else None


def values(body: Any, figure: str) -> list[Any]:
    found: list[Any] = []
    for container, key in locate(body, figure):
        mapping = as_dict(container)
        found.append(mapping.get(key) if mapping is not None else container[key])
    return found


def masked(body: Json, figures: set[str]) -> Json:
    copied = copy.deepcopy(body)
    for name in ALWAYS_MASKED:
        copied.pop(name, None)
    for figure in figures:
        for container, key in locate(copied, figure):
            container[key] = MASK
    return copied


def expand(figures: frozenset[str], baseline: Json | None, dataset: Dataset) -> set[str]:
    """Concrete figure paths: `{all}`, `{web}` and `{overridden}` become subscription ids."""
    revenuecat: Json = (baseline or {}).get("revenuecat") or {}
    subscriptions: list[Json] = revenuecat.get("subscriptions") or []
    ids = {
        "{all}": [s["id"] for s in subscriptions],
        "{web}": [s["id"] for s in subscriptions if s.get("store") not in STORES_WITH_TRANSACTIONS],
        "{overridden}": [relabelled_subscription(dataset)],
    }
    concrete: set[str] = set()
    for figure in figures:
        placeholder = next((p for p in ids if p in figure), None)
        if placeholder is None:
            concrete.add(figure)
        else:
            concrete |= {figure.replace(placeholder, i) for i in ids[placeholder]}
    return concrete


def source_of(figure: str) -> str:
    if figure.startswith(("amplitude.", "steps[", "months[")):
        return "amplitude"
    return "revenuecat"


# ---------------------------------------------------------------------------------------------- extra checks


def _trials_over_all_periods(body: Json, baseline: Json, dataset: Dataset, args: Mapping[str, Any]) -> list[str]:
    start, end = args["start_date"], args["end_date"]
    trials = [t for t in dataset.trials if start <= t.started_at.date().isoformat() <= end]
    got: Json = body.get("trial_conversion") or {}
    expected = {"trials": len(trials), "conversions": sum(t.converted for t in trials)}
    actual = {k: got.get(k) for k in expected}
    return [] if actual == expected else [f"trial conversion {actual} != dataset over all periods {expected}"]


def _summary_over_all_periods(body: Json, baseline: Json, dataset: Dataset, args: Mapping[str, Any]) -> list[str]:
    periods: list[Json] = body["periods"]
    summary: Json = body["summary"]
    # Rows carry no flag: only the period that contains today is incomplete (it is not over).
    current = max(p["period_start"] for p in periods)
    problems = [
        f"period {p['period_start']} incomplete={p['incomplete']}"
        for p in periods
        if p["incomplete"] is not (p["period_start"] == current)
    ]
    complete = [p for p in periods if not p["incomplete"]]
    transactions = sum(p["transactions"] for p in complete)
    refunded = sum(p["refunded_transactions"] for p in complete)
    if (summary["transactions"], summary["refunded_transactions"]) != (transactions, refunded):
        problems.append(f"summary {summary} does not add up the periods ({transactions}, {refunded})")
    return problems


def _renewals_of_others_kept(body: Json, baseline: Json, dataset: Dataset, args: Mapping[str, Any]) -> list[str]:
    sub = dataset.subscription_by_id(relabelled_subscription(dataset))
    assert sub is not None
    lost = len(sub.transaction_ids) - 1

    def split(result: Json) -> tuple[list[Json], int]:
        entries: list[Json] = result["timeline"]
        return [e for e in entries if e["kind"] != "renewal"], sum(e["kind"] == "renewal" for e in entries)

    (kept, renewals), (base_kept, base_renewals) = split(body), split(baseline)
    problems: list[str] = []
    if renewals != base_renewals - lost:
        problems.append(f"{renewals} renewals on the timeline, expected {base_renewals} - {lost}")
    if [{k: v for k, v in e.items() if k != "store"} for e in kept] != [
        {k: v for k, v in e.items() if k != "store"} for e in base_kept
    ]:
        problems.append("timeline entries other than renewals changed")
    return problems


def _journey_matches_dataset(body: Json, baseline: Json, dataset: Dataset, args: Mapping[str, Any]) -> list[str]:
    user_id = args["user_id"]
    user = dataset.user_by_id(user_id)
    assert user is not None
    problems: list[str] = []
    profile: Json = body.get("amplitude") or {}
    if profile.get("amplitude_id") != user.amplitude_id:
        problems.append(f"amplitude profile {profile} is not user {user.amplitude_id}")
    subscriptions = sorted(dataset.subscriptions_for(user_id), key=lambda s: s.starts_at)
    revenuecat: Json = body.get("revenuecat") or {}
    served: list[Json] = revenuecat.get("subscriptions") or []
    listed = [(s["id"], s["store"]) for s in served]
    if listed != [(s.subscription_id, s.store) for s in subscriptions]:
        problems.append(f"subscriptions {listed} differ from the dataset's")
    purchases = sum(e["kind"] == "purchase" for e in body["timeline"])
    if purchases != len(dataset.purchases_for(user_id)):
        problems.append(f"{purchases} purchases on the timeline, dataset has {len(dataset.purchases_for(user_id))}")
    renewals = sum(e["kind"] == "renewal" for e in body["timeline"])
    expected = sum(
        len(s.transaction_ids) - 1 for s in subscriptions if s.store in STORES_WITH_TRANSACTIONS and s.transaction_ids
    )
    if renewals != expected:
        problems.append(f"{renewals} renewals on the timeline, expected {expected} (store subscriptions only)")
    return problems


Check = Callable[[Json, Json, Dataset, Mapping[str, Any]], list[str]]
CHECKS: Mapping[str, Check] = {
    "trials_over_all_periods": _trials_over_all_periods,
    "summary_over_all_periods": _summary_over_all_periods,
    "renewals_of_others_kept": _renewals_of_others_kept,
    "journey_matches_dataset": _journey_matches_dataset,
}


# ---------------------------------------------------------------------------------------------- running a case


@pytest.fixture(scope="module")
async def app(sandbox_server: SandboxServer) -> AsyncIterator[FastAPI]:
    async with running(hardened_settings(sandbox_server.base_url)) as opened:
        yield opened


async def ask(app: FastAPI, operation: str, args: Mapping[str, Any], bearer: str) -> httpx2.Response:
    method, path, kwargs = rest_request(operation, args)
    async with http_client(app, bearer) as http:
        return await http.request(method, path, **kwargs)


def judge(
    operation: str,
    outcome: Outcome,
    response: httpx2.Response,
    baseline: Json | None,
    dataset: Dataset,
    args: Mapping[str, Any],
) -> list[str]:
    """What is wrong with `response` for `outcome` (empty when it is right)."""
    where = f"{operation}:"
    if response.status_code != outcome.status:
        return [f"{where} status {response.status_code} != {outcome.status}: {response.text[:600]}"]
    if outcome.status != 200:
        body: Json = response.json()
        return [] if body.get("status") == outcome.status and body.get("title") else [f"{where} not a problem: {body}"]
    assert baseline is not None
    body = response.json()
    problems: list[str] = []
    if body["partial"] is not False or any(s["status"] != "ok" for s in body["sources"]):
        problems.append(f"{where} partial={body['partial']} sources={body['sources']}")
    nulled = expand(outcome.nulled, baseline, dataset)
    derived = expand(outcome.derived, baseline, dataset)
    kept = expand(outcome.kept, baseline, dataset)
    loose = expand(outcome.loose, baseline, dataset)
    warnings: list[Json] = body.get("warnings", [])
    warned = {w.get("figure") for w in warnings}
    if warned != nulled | derived | kept:
        problems.append(
            f"{where} warned {sorted(map(str, warned))}, expected {sorted(nulled | derived | kept)} (reasons: "
            f"{[w.get('reason') for w in warnings]})"
        )
    for warning in warnings:
        figure = str(warning.get("figure"))
        if warning.get("source") != source_of(figure) or not warning.get("reason"):
            problems.append(f"{where} warning {warning} lacks its source or reason")
    for figure in nulled:
        if not locate(body, figure) or any(v is not None for v in values(body, figure)):
            problems.append(f"{where} {figure} is {values(body, figure)}, expected null")
    for figure in derived:
        got, want = values(body, figure), values(baseline, figure)
        if got != pytest.approx(want, abs=0.011):
            problems.append(f"{where} derived {figure} {got} != {want}")
    ignored = nulled | derived | kept | loose
    if masked(body, ignored) != masked(baseline, ignored):
        problems.append(f"{where} unaffected figures differ from the call without the variant")
    if outcome.check is not None:
        problems += [f"{where} {p}" for p in CHECKS[outcome.check](body, baseline, dataset, args)]
    return problems


def apply(case: Case, sandbox: SandboxState, dataset: Dataset) -> None:
    for endpoint, variant in case.variants:
        sandbox.add_variant(endpoint, variant)
    if case.setup is not None:
        case.setup(sandbox, dataset)


@pytest.mark.anyio
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_a_vendor_variant_costs_only_the_figures_it_touches_each_named_by_a_warning(
    app: FastAPI, sandbox: SandboxState, dataset: Dataset, case: Case
) -> None:
    bearer = token()
    args = {operation: arguments(operation, case, dataset) for operation in case.outcomes}
    baselines: dict[str, Json | None] = {}
    for operation in case.outcomes:
        response = await ask(app, operation, args[operation], bearer)
        baselines[operation] = response.json() if response.status_code == 200 else None
    apply(case, sandbox, dataset)
    problems: list[str] = []
    for operation, outcome in case.outcomes.items():
        response = await ask(app, operation, args[operation], bearer)
        problems += judge(operation, outcome, response, baselines[operation], dataset, args[operation])
    assert not problems, "\n".join(problems)


@pytest.mark.anyio
async def test_without_variants_nothing_is_warned_about_and_default_measure_names_are_understood(
    app: FastAPI, dataset: Dataset
) -> None:
    bearer = token()
    for operation in OPERATIONS:
        args = arguments(operation, CASES[0], dataset)
        response = await ask(app, operation, args, bearer)
        assert response.status_code == 200, response.text
        body: Json = response.json()
        assert body["partial"] is False, body["sources"]
        assert body.get("warnings", []) == []
        if operation == "kpi_conversion":  # October's trials have all ended by the dataset's end: all complete
            assert _trials_over_all_periods(body, body, dataset, args) == []
        if operation == "kpi_user_journey":
            assert _journey_matches_dataset(body, body, dataset, args) == []


# ---------------------------------------------------------------------------------------------- both faces

MCP_SAMPLE = ("overview-mrr-missing", "refund-rate-only", "trial-conversions-missing", "web-billing-customer")


@pytest.mark.anyio
@pytest.mark.parametrize("case", [c for c in CASES if c.id in MCP_SAMPLE], ids=list(MCP_SAMPLE))
async def test_mcp_returns_the_same_warnings_and_figures_as_rest(
    app: FastAPI, sandbox: SandboxState, dataset: Dataset, case: Case
) -> None:
    bearer = token()
    apply(case, sandbox, dataset)
    for operation in case.outcomes:
        args = arguments(operation, case, dataset)
        rest = await ask(app, operation, args, bearer)
        async with http_client(app, bearer) as http:
            tool = await call_tool(http, operation, args)
        assert rest.status_code == 200, rest.text
        assert not tool.is_error, tool_text(tool)
        assert tool.structured_content is not None
        assert tool.structured_content.get("warnings") == rest.json().get("warnings")
        assert tool.structured_content == rest.json()
        assert rest.json().get("warnings"), "the sample variant is expected to be warned about"


def test_docs_carry_the_variance_matrix() -> None:
    text = (Path(__file__).parents[2] / "docs" / "reliability.md").read_text(encoding="utf-8")
    assert "## Vendor variance" in text
    assert matrix() in text, "docs/reliability.md's matrix is stale: run `python -m tests.variance.cases`"
