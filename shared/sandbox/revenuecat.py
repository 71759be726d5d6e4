"""RevenueCat REST emulator (docs/upstream-apis.md): v2 metrics, charts and customer data, v1 get-or-create subscriber.

v2: ``Authorization: Bearer <key>``, project-scoped paths, JSON errors, per-domain rpm with the two
``RevenueCat-Rate-Limit-*`` headers on every 2xx (and on 429 with ``Retry-After``). v1: ``{"code", "message"}``
errors; an unknown app user id is CREATED (201), which is why the KPI service must never call it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal, cast
from urllib.parse import quote, unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .faults import apply_fault
from .revenuecat_charts import chart_data, chart_options, check_chart_name, overview, parse_chart_query
from .revenuecat_common import RevenueCatError, paginate, parameter_error
from .revenuecat_objects import customer_json, purchase_json, subscription_json, transaction_json, v1_subscriber_json
from .state import SandboxState
from .variants import apply_variants

Domain = Literal["charts_metrics", "customer_information"]
V2Handler = Callable[[SandboxState, Request], Response]
USAGE_HEADER = "RevenueCat-Rate-Limit-Current-Usage"
LIMIT_HEADER = "RevenueCat-Rate-Limit-Current-Limit"
TRANSACTION_STORES = ("app_store", "play_store")


def _v2_fault(status: int, retry_after: int | None) -> Response:
    return RevenueCatError(status, f"sandbox fault: HTTP {status}", retry_after=retry_after).response()


def _v1_fault(status: int, retry_after: int | None) -> Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(
        {"code": status, "message": f"sandbox fault: HTTP {status}"}, status_code=status, headers=headers
    )


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def _rpm(state: SandboxState, domain: Domain) -> int | None:
    return state.charts_rpm if domain == "charts_metrics" else state.customer_rpm


def _v2(state: SandboxState, name: str, domain: Domain, handler: V2Handler) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        headers: dict[str, str] = {}
        try:
            if _bearer(request) != state.revenuecat_api_key:
                raise RevenueCatError(401, "Invalid API key")
            if request.path_params.get("project_id") != state.revenuecat_project_id:
                raise RevenueCatError(403, "The API key does not have access to this project")
            limit = _rpm(state, domain)
            if limit is not None:
                decision = state.rate_limiter.hit(domain, limit)
                headers = {USAGE_HEADER: str(decision.usage), LIMIT_HEADER: str(decision.limit)}
                if not decision.allowed:
                    return RevenueCatError(429, "Rate limit exceeded", retry_after=decision.retry_after).response(
                        headers
                    )
            response = apply_variants(state.variants.for_request(name, request), request, handler(state, request))
        except RevenueCatError as exc:
            return exc.response()
        if 200 <= response.status_code < 300:
            response.headers.update(headers)
        return response

    async def route(request: Request) -> Response:
        state.faults.record(name)
        return await apply_fault(state.faults.take(name), _v2_fault, lambda: serve(request))

    return route


def _path(request: Request, name: str) -> str:
    """A path parameter, percent-decoded (the app routes on the raw path: `RawPathRouting`)."""
    return unquote(str(request.path_params[name]))


def _url(request: Request) -> str:
    return request.url.path


def read_overview(state: SandboxState, request: Request) -> Response:
    return JSONResponse(overview(state.dataset, request.query_params, state.wall_clock()))


def read_chart_options(state: SandboxState, request: Request) -> Response:
    chart = _path(request, "chart_name")
    check_chart_name(chart, state.unknown_chart_status)
    return JSONResponse(chart_options(state.dataset, chart))


def read_chart(state: SandboxState, request: Request) -> Response:
    chart = _path(request, "chart_name")
    check_chart_name(chart, state.unknown_chart_status)
    query = parse_chart_query(chart, request.query_params, state.chart_measure_names)
    return JSONResponse(chart_data(state.dataset, query))


def _known_customer(state: SandboxState, customer_id: str) -> bool:
    return state.dataset.customer_by_id(customer_id) is not None or state.created_customer(customer_id) is not None


def _customer_id(state: SandboxState, request: Request) -> str:
    customer_id = _path(request, "customer_id")
    if not _known_customer(state, customer_id):
        raise RevenueCatError(404, "Resource not found")
    return customer_id


def _environment(request: Request) -> str | None:
    environment = request.query_params.get("environment")
    if environment is not None and environment not in ("production", "sandbox"):
        raise RevenueCatError(400, "environment must be production or sandbox", param="environment")
    return environment


def read_customer(state: SandboxState, request: Request) -> Response:
    customer_id = _customer_id(state, request)
    expand = "attributes" in request.query_params.get("expand", "").split(",")
    body = customer_json(
        state.revenuecat_project_id,
        customer_id,
        state.dataset.customer_by_id(customer_id),
        state.created_customer(customer_id),
        state.dataset,
        expand,
    )
    return JSONResponse(body)


def _page(state: SandboxState, name: str, request: Request, items: list[dict[str, object]]) -> Response:
    """One page of ``items``, cut to a ``page_size`` variant's size when one applies."""
    body = paginate(items, request.query_params, _url(request), state.max_page_limit)
    size = state.variants.page_size(name, request)
    page = cast("list[dict[str, object]]", body["items"])
    if size is not None and len(page) > size:
        body["items"] = page[:size]
        cursor = quote(str(page[size - 1]["id"]), safe="")
        body["next_page"] = f"{_url(request)}?starting_after={cursor}&limit={size}"
    return JSONResponse(body)


def read_subscriptions(state: SandboxState, request: Request) -> Response:
    customer_id = _customer_id(state, request)
    environment = _environment(request)
    subs = sorted(state.dataset.subscriptions_for(customer_id), key=lambda s: s.starts_at)
    items = [
        subscription_json(state.revenuecat_project_id, s, state.dataset, state.store_of(s.subscription_id, s.store))
        for s in subs
    ]
    if environment == "sandbox":
        items = []
    return _page(state, "revenuecat.subscriptions", request, items)


def read_purchases(state: SandboxState, request: Request) -> Response:
    customer_id = _customer_id(state, request)
    environment = _environment(request)
    purchases = sorted(state.dataset.purchases_for(customer_id), key=lambda p: p.purchased_at)
    items = [purchase_json(state.revenuecat_project_id, p) for p in purchases]
    if environment == "sandbox":
        items = []
    return _page(state, "revenuecat.purchases", request, items)


def read_transactions(state: SandboxState, request: Request) -> Response:
    subscription_id = _path(request, "subscription_id")
    subscription = state.dataset.subscription_by_id(subscription_id)
    if subscription is None:
        raise RevenueCatError(404, "Resource not found")
    store = state.store_of(subscription_id, subscription.store)
    if store not in TRANSACTION_STORES:
        # The vendor's operation serves App Store and Play Store subscriptions only (docs/upstream-apis.md#revenuecat-subscriptions-and-transactions).
        raise parameter_error(
            "subscription_id",
            f"Transactions are only available for App Store and Play Store subscriptions; this one is {store}.",
        )
    items = [transaction_json(t) for t in state.dataset.transactions_for_subscription(subscription_id)]
    return _page(state, "revenuecat.transactions", request, items)


def _v1_subscriber(state: SandboxState) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        token = _bearer(request) or header  # v1 historically also accepted the bare key
        if token != state.revenuecat_api_key:
            return JSONResponse({"code": 401, "message": "Invalid API key"}, status_code=401)
        app_user_id = _path(request, "app_user_id")
        if not app_user_id.strip():
            return JSONResponse({"code": 400, "message": "Bad parameters: app_user_id"}, status_code=400)
        customer = state.dataset.customer_by_id(app_user_id)
        created = state.created_customer(app_user_id)
        status = 200
        if customer is None and created is None:
            created = state.create_customer(app_user_id)
            status = 201
        body = v1_subscriber_json(app_user_id, customer, created, state.dataset, state.wall_clock())
        return JSONResponse(body, status_code=status)

    async def route(request: Request) -> Response:
        state.faults.record("revenuecat.v1_subscribers")
        return await apply_fault(state.faults.take("revenuecat.v1_subscribers"), _v1_fault, lambda: serve(request))

    return route


def revenuecat_routes(state: SandboxState) -> list[Route]:
    """Routes for the RevenueCat v2 endpoints the KPI service uses, plus v1 get-or-create, bound to ``state``."""
    project = "/v2/projects/{project_id}"
    table: list[tuple[str, str, Domain, V2Handler]] = [
        (f"{project}/metrics/overview", "revenuecat.overview", "charts_metrics", read_overview),
        (f"{project}/charts/{{chart_name}}/options", "revenuecat.chart_options", "charts_metrics", read_chart_options),
        (f"{project}/charts/{{chart_name}}", "revenuecat.chart", "charts_metrics", read_chart),
        (f"{project}/customers/{{customer_id}}/subscriptions", "revenuecat.subscriptions", "customer_information", read_subscriptions),
        (f"{project}/customers/{{customer_id}}/purchases", "revenuecat.purchases", "customer_information", read_purchases),
        (f"{project}/customers/{{customer_id}}", "revenuecat.customer", "customer_information", read_customer),
        (f"{project}/subscriptions/{{subscription_id}}/transactions", "revenuecat.transactions", "customer_information", read_transactions),
    ]  # fmt: skip
    routes = [Route(path, _v2(state, name, domain, handler), methods=["GET"]) for path, name, domain, handler in table]
    routes.append(Route("/v1/subscribers/{app_user_id}", _v1_subscriber(state), methods=["GET"]))
    return routes
