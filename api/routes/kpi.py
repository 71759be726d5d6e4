"""`/api/kpi/*`: the five KPI operations. Each route checks the caller, calls one service method, returns its model."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response
from starlette.convertors import Convertor, register_url_convertor

from api.deps import KpiReader, KpiServiceDep
from api.fastpath import served_response
from api.openapi import problem_responses
from shared.models import kpi as m


class _AnyConvertor(Convertor[str]):
    """A path parameter that takes every character, `/` and newlines included, so that the user id validation
    (not the router) judges it: Starlette's `path` stops at a newline and `$` lets a trailing one through."""

    regex = "(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("any", _AnyConvertor())
router = APIRouter(prefix="/api/kpi", tags=["kpi"])
_ALL_UPSTREAM: dict[int | str, dict[str, Any]] = problem_responses(401, 403, 422, 502, 503, 504)


@router.get(
    "/overview",
    operation_id="kpi_overview",
    response_model=m.OverviewResult,
    responses=_ALL_UPSTREAM,
    summary="Company KPI overview",
)
async def read_overview(_: KpiReader, kpi: KpiServiceDep, query: Annotated[m.OverviewQuery, Query()]) -> Response:
    """DAU, month-to-date MAU and new users (Amplitude) with MRR, 28-day revenue, active subscriptions and trials,
    new customers and active users (RevenueCat). If one source fails transiently the other's figures are still
    returned, marked `partial`, with that source's error in `sources`."""
    return served_response(await kpi.overview(query), kpi.clock())


@router.get(
    "/mau",
    operation_id="kpi_mau",
    response_model=m.MauResult,
    responses=problem_responses(401, 403, 422, 502, 503, 504),
    summary="Monthly active users",
)
async def read_mau(_: KpiReader, kpi: KpiServiceDep, query: Annotated[m.MauQuery, Query()]) -> Response:
    """Monthly active users (Amplitude) per calendar month with month-over-month change; the current month is
    marked `partial`. Default range: the last six months including the current one."""
    return served_response(await kpi.mau(query), kpi.clock())


@router.get(
    "/conversion",
    operation_id="kpi_conversion",
    response_model=m.ConversionResult,
    responses=problem_responses(401, 403, 422, 502, 503, 504),
    summary="Funnel conversion",
)
async def read_conversion(_: KpiReader, kpi: KpiServiceDep, query: Annotated[m.ConversionQuery, Query()]) -> Response:
    """An Amplitude funnel over event steps (repeat `steps` once per step, in order): users per step, step and
    cumulative conversion, median times; plus RevenueCat's trial conversion for the same range when configured."""
    return served_response(await kpi.conversion(query), kpi.clock())


@router.get(
    "/user/{user_id:any}",
    operation_id="kpi_user_journey",
    response_model=m.JourneyResult,
    responses=problem_responses(401, 403, 404, 422, 502, 503, 504),
    summary="One user's journey",
)
async def read_user_journey(_: KpiReader, kpi: KpiServiceDep, user_id: Annotated[m.UserId, Path()]) -> Response:
    """One user's Amplitude events and RevenueCat subscriptions, renewals, purchases and refunds as one timeline,
    oldest first. 404 when neither source knows the user."""
    return served_response(await kpi.user_journey(user_id), kpi.clock())


@router.post(
    "/refund-analysis",
    operation_id="kpi_refund_analysis",
    response_model=m.RefundAnalysisResult,
    responses=problem_responses(401, 403, 413, 422, 502, 503, 504),
    summary="Refund analysis",
)
async def analyze_refunds(
    _: KpiReader,
    kpi: KpiServiceDep,
    query: Annotated[
        m.RefundAnalysisQuery,
        Body(
            openapi_examples={
                "by month": {
                    "summary": "Monthly refund rate for a quarter, with two customers",
                    "value": {
                        "start_date": "2026-07-01",
                        "end_date": "2026-09-30",
                        "resolution": "month",
                        "user_ids": ["user_00042", "user_00043"],
                    },
                }
            }
        ),
    ],
) -> Response:
    """RevenueCat refund rate and revenue per period over a date range (refunds count in the original
    transaction's period), summary totals, and refunded purchases of up to 100 given customers."""
    return served_response(await kpi.refund_analysis(query), kpi.clock())
