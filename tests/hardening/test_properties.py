"""Property tests of input normalization (`KpiService.resolve_*`) and of token-claim parsing.

Resolving a query makes its defaults concrete: a resolved query resolves to itself, never reaches past today, and
an invalid one is always an `InvalidInputError` naming one of the query's fields, never another exception. A token's
scope and role claims may hold any JSON value: verification either yields a principal whose scopes and roles are
sets of trimmed strings taken from those claims, or an `AuthenticationError`, never anything else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable
from datetime import date
from typing import Any, TypeVar

import anyio
from hypothesis import HealthCheck, example, given, reject, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr, ValidationError

from shared.auth.scopes import KPI_READ, PRIVILEGED_ROLES, Principal, has_kpi_access
from shared.auth.tokens import TokenVerifier
from shared.errors import AuthenticationError, InvalidInputError
from shared.models import kpi as m
from shared.operations import CONVERSION, MAU, OVERVIEW, REFUND_ANALYSIS, USER_JOURNEY, Operation
from shared.services.kpi import KpiService
from shared.settings import DEFAULT_CONVERSION_STEPS, Settings
from tests.conftest import JWT_SECRET, TODAY, clock

QueryT = TypeVar("QueryT", bound=BaseModel)
T = TypeVar("T")

EXAMPLES = int(os.environ.get("KPI_PROPERTY_EXAMPLES", "200"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    derandomize="KPI_PROPERTY_EXAMPLES" not in os.environ,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
INPUTS = KpiService(None, None, conversion_steps=DEFAULT_CONVERSION_STEPS, clock=clock).inputs()


def resolver(operation: Operation[QueryT, Any]) -> Callable[[QueryT], QueryT]:
    """The operation's resolution of a query, with the test's today and default funnel."""
    return lambda query: operation.resolve(query, INPUTS)


ANY_DATE = st.dates()
NEAR_TODAY = st.dates(min_value=date(2022, 1, 1), max_value=date(2027, 12, 31))
SOME_DATES = st.one_of(st.none(), ANY_DATE, NEAR_TODAY)
EVENT_TYPES = st.text(min_size=1, max_size=130)
USER_IDS = st.one_of(
    st.text(max_size=300),
    st.text(alphabet="abcXYZ019_.:@$+-=|/#~!* \n\t%?ü", min_size=0, max_size=300),
    st.integers(0, 99_999).map("user_{:05d}".format),
)


def model(cls: type[QueryT], **data: object) -> QueryT:
    """The query as the faces would build it; inputs the model itself refuses are the faces' 422 (tested there)."""
    try:
        return cls.model_validate(data)
    except ValidationError:
        reject()


def attempt(resolve: Callable[[T], T], value: T) -> T | InvalidInputError:
    """The resolved value, or the `InvalidInputError` it raised (anything else propagates and fails the test)."""
    try:
        return resolve(value)
    except InvalidInputError as exc:
        return exc


def days_of(query: BaseModel) -> list[date]:
    return [value for value in query.model_dump().values() if isinstance(value, date)]


def assert_resolves_properly(resolve: Callable[[QueryT], QueryT], query: QueryT) -> None:
    """Idempotent and never in the future, or an `InvalidInputError` naming a field of the query."""
    resolved = attempt(resolve, query)
    if isinstance(resolved, InvalidInputError):
        assert resolved.field in type(query).model_fields, resolved.field
        assert resolved.status == 422
        return
    assert resolve(resolved) == resolved
    assert all(day <= TODAY for day in days_of(resolved))
    # defaults made concrete: nothing is left open
    if isinstance(resolved, m.OverviewQuery):
        assert resolved.as_of is not None
    if isinstance(resolved, m.MauQuery):
        assert resolved.start_month is not None and resolved.end_month is not None
        assert resolved.start_month.day == resolved.end_month.day == 1
    if isinstance(resolved, m.ConversionQuery):
        assert resolved.steps is not None and 2 <= len(resolved.steps) <= m.MAX_FUNNEL_STEPS
        assert resolved.start_date is not None and resolved.end_date is not None


@PROPERTY
@given(SOME_DATES)
def test_a_resolved_overview_is_stable_and_never_in_the_future(as_of: date | None) -> None:
    assert_resolves_properly(resolver(OVERVIEW), model(m.OverviewQuery, as_of=as_of))


@PROPERTY
@given(SOME_DATES, SOME_DATES)
@example(None, date(1, 3, 1))  # once a ValueError: the default start fell before year 1
def test_a_resolved_mau_range_is_stable_and_never_in_the_future(start: date | None, end: date | None) -> None:
    query = model(m.MauQuery, start_month=start, end_month=end)
    assert_resolves_properly(resolver(MAU), query)


@PROPERTY
@given(
    st.one_of(st.none(), st.lists(EVENT_TYPES, max_size=m.MAX_FUNNEL_STEPS)),
    SOME_DATES,
    SOME_DATES,
    st.integers(1, 90),
    st.sampled_from(["ordered", "unordered", "sequential"]),
)
@example(None, None, date(1, 1, 5), 30, "ordered")  # once an OverflowError: the default start fell before year 1
def test_a_resolved_conversion_query_is_stable_and_never_in_the_future(
    steps: list[str] | None, start: date | None, end: date | None, window: int, mode: str
) -> None:
    query = model(
        m.ConversionQuery, steps=steps, start_date=start, end_date=end, conversion_window_days=window, mode=mode
    )
    assert_resolves_properly(resolver(CONVERSION), query)


@PROPERTY
@given(
    st.one_of(ANY_DATE, NEAR_TODAY),
    st.one_of(ANY_DATE, NEAR_TODAY),
    st.one_of(st.none(), st.lists(USER_IDS, max_size=m.MAX_REFUND_USER_IDS)),
)
def test_a_resolved_refund_query_is_stable_never_in_the_future_and_without_duplicate_ids(
    start: date, end: date, user_ids: list[str] | None
) -> None:
    query = model(m.RefundAnalysisQuery, start_date=start, end_date=end, user_ids=user_ids)
    assert_resolves_properly(resolver(REFUND_ANALYSIS), query)
    resolved = attempt(resolver(REFUND_ANALYSIS), query)
    if not isinstance(resolved, InvalidInputError) and resolved.user_ids is not None:
        assert len(set(resolved.user_ids)) == len(resolved.user_ids)
        assert set(resolved.user_ids) == set(user_ids or ())


@PROPERTY
@given(USER_IDS)
def test_a_user_id_is_kept_as_given_or_refused_naming_user_id(user_id: str) -> None:
    query: m.UserJourneyQuery | None = None
    try:
        query = m.UserJourneyQuery(user_id=user_id)
    except ValidationError as exc:
        locations = [error["loc"] for error in exc.errors()]
    else:
        locations = []
    if query is None:
        assert locations == [("user_id",)]
        return
    assert query.user_id == user_id
    assert USER_JOURNEY.resolve(query, INPUTS) == query
    assert 1 <= len(user_id) <= m.USER_ID_MAX_LENGTH and user_id.isascii() and user_id.isprintable()


# ---------------------------------------------------------------------------------------------- token claims

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # NaN and ±Infinity included: json.dumps writes them and PyJWT reads them back
    st.text(max_size=40),
    st.sampled_from([KPI_READ, "admin", "exec", f"openid {KPI_READ}", " admin ", "kpi:read\u2003x"]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
CLAIM_NAMES = ("scope", "scp", "scopes", "role", "roles")
VERIFIER = TokenVerifier(Settings(KPI_JWT_SECRET=SecretStr(JWT_SECRET)))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(payload: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    """An HS256 token with the test secret over any JSON payload, signed by hand (PyJWT would vet the claims)."""
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", **(header or {})}).encode())
    body = b64(json.dumps(payload).encode())
    signature = hmac.new(JWT_SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def verify(token: str) -> Principal | AuthenticationError:
    async def run() -> Principal | AuthenticationError:
        try:
            return await VERIFIER.verify(token)
        except AuthenticationError as exc:
            return exc

    return anyio.run(run)


def names_in(*values: object) -> set[str]:
    """The names a claim value can carry (RFC 6749 §3.3): a string's parts between space characters (a tab or a
    non-breaking space is part of a name), the non-empty strings of a list that hold no space."""
    names: set[str] = set()
    for value in values:
        if isinstance(value, str):
            names |= {name for name in value.split(" ") if name}
        elif isinstance(value, list):
            items: list[object] = value  # pyright: ignore[reportUnknownVariableType]
            names |= {item for item in items if isinstance(item, str) and item and " " not in item}
    return names


@PROPERTY
@given(st.dictionaries(st.sampled_from(CLAIM_NAMES), JSON_VALUES))
def test_scope_and_role_claims_of_any_json_type_yield_sets_of_names_taken_from_those_claims(
    claims: dict[str, Any],
) -> None:
    outcome = verify(signed({"sub": "fuzz", "exp": int(time.time()) + 600, **claims}))

    assert isinstance(outcome, Principal), outcome
    for names, sources in ((outcome.scopes, ("scope", "scp", "scopes")), (outcome.roles, ("role", "roles"))):
        assert isinstance(names, frozenset)
        assert all(isinstance(name, str) and name and " " not in name for name in names)
        assert names <= names_in(*(claims.get(source) for source in sources))
    if has_kpi_access(outcome):
        granted = names_in(*(claims.get(name) for name in ("scope", "scp", "scopes")))
        privileged = names_in(*(claims.get(name) for name in ("role", "roles"))) & PRIVILEGED_ROLES
        assert KPI_READ in granted or privileged


@PROPERTY
@given(
    st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=8),
    st.dictionaries(st.sampled_from(("sub", "exp", "nbf", "iat", "iss", "aud", "jti", *CLAIM_NAMES)), JSON_VALUES),
    st.dictionaries(st.sampled_from(("kid", "typ", "roles", "scope", "cty", "crit")), JSON_VALUES, max_size=3),
)
def test_any_signed_payload_and_header_yield_a_principal_or_an_authentication_error_only(
    extra: dict[str, Any], standard: dict[str, Any], header: dict[str, Any]
) -> None:
    outcome = verify(signed({**extra, **standard}, header))

    assert isinstance(outcome, Principal | AuthenticationError)
    if isinstance(outcome, AuthenticationError):
        assert outcome.status == 401 and outcome.detail and len(outcome.detail) < 100
        return
    assert isinstance(outcome.subject, str) and outcome.subject.strip()
    assert all(isinstance(name, str) for name in outcome.scopes | outcome.roles)
    # the header never grants anything
    assert outcome.scopes <= names_in(*(standard.get(name) for name in ("scope", "scp", "scopes")))
    assert outcome.roles <= names_in(*(standard.get(name) for name in ("role", "roles")))
