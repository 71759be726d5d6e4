"""Warm answers straight from the cache: the same bytes and headers as the routes, and never a different verdict."""

from __future__ import annotations

from shared.sandbox import SandboxState
from tests.api.conftest import assert_problem, build_settings, problem_fields, reader, serve


def test_warm_answers_match_the_routes_for_every_get_operation(sandbox_url: str, sandbox: SandboxState) -> None:
    paths = ["/api/kpi/overview", "/api/kpi/mau", "/api/kpi/conversion", "/api/kpi/user/user_00042"]
    with serve(build_settings(sandbox_url)) as client:
        for path in paths:
            cold = client.get(path, headers=reader())
            calls = sandbox.counts
            warm = client.get(path, headers=reader())
            assert (cold.status_code, warm.status_code) == (200, 200)
            assert warm.content == cold.content
            assert warm.headers["content-type"] == cold.headers["content-type"] == "application/json"
            assert (cold.headers["X-KPI-Cache"], warm.headers["X-KPI-Cache"]) == ("miss", "hit")
            assert sandbox.counts == calls


def test_unusual_or_invalid_queries_get_the_routes_answer(sandbox_url: str) -> None:
    with serve(build_settings(sandbox_url)) as client:
        assert client.get("/api/kpi/mau", headers=reader()).status_code == 200
        repeated = client.get("/api/kpi/mau?end_month=2026-11-01&end_month=2026-10-01", headers=reader())
        assert repeated.status_code in (200, 422)
        future = client.get("/api/kpi/mau?end_month=2099-01-01", headers=reader())
        assert problem_fields(assert_problem(future, 422)) == {"end_month"}
        unknown = client.get("/api/kpi/mau?bogus=1", headers=reader())
        assert_problem(unknown, 422)
        assert client.get("/api/kpi/mau").status_code == 401
