"""Deterministic synthetic dataset behind the sandbox emulators (Amplitude events + RevenueCat purchases).

Everything comes from one ``random.Random(seed)``; datetimes are timezone-aware UTC (the project time
zone). The data covers ``months`` calendar months up to and including ``end``; nothing happens after
the end of that day (``Dataset.end_at``). RevenueCat state (subscription status, refunds, trial
conversions) is "as of" ``end_at``. Raw tuples are plain data so tests can recompute any figure.

Showcase users (``SHOWCASE_USER_IDS``: the ids the README, the banner, the OpenAPI examples and the tool
descriptions name) are pinned: whatever ``end`` is, each is a named (never anonymous) Amplitude user with events up
to ``end``, and a RevenueCat customer with a converted trial, a monthly subscription active on ``end`` with at
least two renewals, and a refunded one-time purchase. They come from their own random stream, and the main stream
still draws their random counterpart (then discarded), so every other user is the same as without them.

Longer than our other modules on purpose: one seeded generator, whose draws must stay in one order for every user to
come out the same; splitting it would scatter that sequence.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any, Literal

Platform = Literal["iOS", "Android", "Web"]
Store = Literal["app_store", "play_store", "stripe", "rc_billing"]
SubscriptionStatus = Literal["trialing", "active", "expired", "in_grace_period", "in_billing_retry"]
JsonScalar = str | int | float | bool

COUNTRY_NAMES: Mapping[str, str] = {
    "US": "United States",
    "GB": "United Kingdom",
    "DE": "Germany",
    "FR": "France",
    "BR": "Brazil",
    "JP": "Japan",
    "IN": "India",
    "CA": "Canada",
}
_COUNTRY_WEIGHTS = (35, 10, 10, 8, 10, 7, 12, 8)
_CITIES: Mapping[str, str] = {
    "US": "San Francisco",
    "GB": "London",
    "DE": "Berlin",
    "FR": "Paris",
    "BR": "Sao Paulo",
    "JP": "Tokyo",
    "IN": "Bengaluru",
    "CA": "Toronto",
}
_LANGUAGES: Mapping[str, str] = {
    "US": "English",
    "GB": "English",
    "DE": "German",
    "FR": "French",
    "BR": "Portuguese",
    "JP": "Japanese",
    "IN": "English",
    "CA": "English",
}
# Share of the consumer price that is VAT/GST (tax-inclusive prices), used for MonetaryAmount.tax.
TAX_SHARE: Mapping[str, float] = {
    "US": 0.0,
    "GB": 0.1667,
    "DE": 0.1597,
    "FR": 0.1667,
    "BR": 0.0,
    "JP": 0.0909,
    "IN": 0.1525,
    "CA": 0.0,
}
# Store commission as a share of the price net of tax.
COMMISSION_SHARE: Mapping[str, float] = {"app_store": 0.15, "play_store": 0.15, "stripe": 0.03, "rc_billing": 0.05}

EVENT_TYPES = ("App Open", "Sign Up", "View Paywall", "Start Trial", "Subscribe", "View Content", "Share")
TRIAL_DAYS = 7
GRACE_DAYS = 6
BILLING_RETRY_DAYS = 16


@dataclass(frozen=True, slots=True)
class Product:
    """A store product; ``period_months`` is 0 for one-time purchases."""

    product_id: str
    display_name: str
    price_usd: float
    period_months: int


PRODUCTS: Mapping[str, Product] = {
    "loop_pro_monthly": Product("loop_pro_monthly", "Loop Pro Monthly", 9.99, 1),
    "loop_pro_annual": Product("loop_pro_annual", "Loop Pro Annual", 59.99, 12),
    "loop_credits_100": Product("loop_credits_100", "100 Loop Credits", 4.99, 0),
}
ENTITLEMENT_ID = "entl0a1b2c3d4e"
ENTITLEMENT_LOOKUP_KEY = "pro"


@dataclass(frozen=True, slots=True)
class Showcase:
    """How a pinned showcase user looks; dates are relative to the dataset's ``end``."""

    country: str
    platform: Platform
    store: Store
    first_seen_days_before_end: int
    purchase_days_after_first_seen: tuple[int, ...]  # one-time purchases; the first one is refunded


# Index (the `user_NNNNN` number) -> profile. At least 90 days of history gives a trial, a first paid month and two
# renewals on any `end`; the dataset always spans more than 420 days.
SHOWCASE: Mapping[int, Showcase] = {
    42: Showcase("US", "iOS", "app_store", 200, (20, 75)),
    43: Showcase("GB", "Android", "play_store", 120, (30,)),
}
SHOWCASE_USER_IDS: tuple[str, ...] = tuple(f"user_{i:05d}" for i in SHOWCASE)


@dataclass(frozen=True, slots=True)
class Money:
    """Price breakdown in USD, like RevenueCat's MonetaryAmount."""

    gross: float
    tax: float
    commission: float
    proceeds: float


def money_for(price_usd: float, store: Store, country: str) -> Money:
    """Split a tax-inclusive USD price into tax, store commission and proceeds."""
    tax = round(price_usd * TAX_SHARE[country], 2)
    commission = round((price_usd - tax) * COMMISSION_SHARE[store], 2)
    return Money(round(price_usd, 2), tax, commission, round(price_usd - tax - commission, 2))


@dataclass(frozen=True, slots=True)
class User:
    """An app user as Amplitude sees them (``in_revenuecat``: also a RevenueCat customer)."""

    user_id: str
    amplitude_id: int
    first_seen: date
    country: str  # ISO 3166 alpha-2; Amplitude reports COUNTRY_NAMES[country]
    platform: Platform
    in_revenuecat: bool
    device_id: str
    os: str
    app_version: str
    device: str
    device_type: str
    city: str
    language: str


@dataclass(frozen=True, slots=True)
class Event:
    """One Amplitude event; ``event_id`` is the user's chronological sequence number (1-based)."""

    event_id: int
    user_id: str
    amplitude_id: int
    event_type: str
    event_time: datetime
    session_id: int  # ms epoch of the session start
    event_properties: Mapping[str, JsonScalar]


@dataclass(frozen=True, slots=True)
class Transaction:
    """A paid store transaction (subscription period or one-time purchase); trials are not transactions."""

    transaction_id: str
    user_id: str
    product_id: str
    store: Store
    country: str
    price_usd: float
    purchased_at: datetime
    expires_at: datetime | None  # None for one-time purchases
    subscription_id: str | None  # None for one-time purchases
    purchase_id: str | None  # set for one-time purchases only
    is_renewal: bool
    refunded: bool
    refunded_at: datetime | None


@dataclass(frozen=True, slots=True)
class Trial:
    """A 7-day free trial; ``converted`` = its first paid transaction happened (at ``ends_at``) by ``end_at``."""

    subscription_id: str
    user_id: str
    product_id: str
    store: Store
    country: str
    started_at: datetime
    ends_at: datetime
    converted: bool


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscription's lifecycle; ``status`` and the period fields are as of ``Dataset.end_at``."""

    subscription_id: str
    user_id: str
    product_id: str
    store: Store
    country: str
    starts_at: datetime
    trial_ends_at: datetime | None
    current_period_starts_at: datetime
    current_period_ends_at: datetime
    ends_at: datetime | None  # when access ended / will end; None while it keeps renewing
    status: SubscriptionStatus
    auto_renew: bool
    unsubscribe_detected_at: datetime | None
    billing_issue_detected_at: datetime | None
    refunded_at: datetime | None  # a refund of the latest period revoked access
    store_subscription_identifier: str
    transaction_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Purchase:
    """A one-time (non-subscription) purchase."""

    purchase_id: str
    user_id: str
    product_id: str
    store: Store
    country: str
    purchased_at: datetime
    price_usd: float
    refunded: bool
    refunded_at: datetime | None
    transaction_id: str


@dataclass(frozen=True, slots=True)
class Customer:
    """A RevenueCat customer; ``customer_id`` equals the Amplitude ``user_id``."""

    customer_id: str
    first_seen_at: datetime
    last_seen_at: datetime
    country: str
    platform: Platform
    app_version: str


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """The whole synthetic world. ``events`` are grouped by user (in ``users`` order), chronological within a user."""

    seed: int
    start: date
    end: date
    users: tuple[User, ...]
    events: tuple[Event, ...]
    customers: tuple[Customer, ...]
    subscriptions: tuple[Subscription, ...]
    trials: tuple[Trial, ...]
    purchases: tuple[Purchase, ...]
    transactions: tuple[Transaction, ...]
    _event_spans: Mapping[int, tuple[int, int]] = field(repr=False)

    def __repr__(self) -> str:
        return (
            f"Dataset(seed={self.seed}, start={self.start}, end={self.end}, users={len(self.users)}, "
            f"events={len(self.events)}, transactions={len(self.transactions)})"
        )

    @property
    def end_at(self) -> datetime:
        """Exclusive upper bound of all data: midnight UTC after ``end``."""
        return datetime(self.end.year, self.end.month, self.end.day, tzinfo=UTC) + timedelta(days=1)

    @cached_property
    def _users_by_id(self) -> dict[str, User]:
        return {u.user_id: u for u in self.users}

    @cached_property
    def _users_by_amplitude_id(self) -> dict[int, User]:
        return {u.amplitude_id: u for u in self.users}

    @cached_property
    def _customers_by_id(self) -> dict[str, Customer]:
        return {c.customer_id: c for c in self.customers}

    @cached_property
    def _subscriptions_by_id(self) -> dict[str, Subscription]:
        return {s.subscription_id: s for s in self.subscriptions}

    @cached_property
    def _transactions_by_id(self) -> dict[str, Transaction]:
        return {t.transaction_id: t for t in self.transactions}

    @cached_property
    def _daily_active(self) -> dict[date, frozenset[int]]:
        days: dict[date, set[int]] = {}
        for e in self.events:
            days.setdefault(e.event_time.date(), set()).add(e.amplitude_id)
        return {d: frozenset(ids) for d, ids in days.items()}

    def user_by_id(self, user_id: str) -> User | None:
        return self._users_by_id.get(user_id)

    def user_by_amplitude_id(self, amplitude_id: int) -> User | None:
        return self._users_by_amplitude_id.get(amplitude_id)

    def events_for(self, amplitude_id: int) -> tuple[Event, ...]:
        """The user's events, oldest first."""
        lo, hi = self._event_spans.get(amplitude_id, (0, 0))
        return self.events[lo:hi]

    def active_amplitude_ids_on(self, day: date) -> frozenset[int]:
        """Amplitude ids with at least one event on ``day`` (UTC)."""
        return self._daily_active.get(day, frozenset())

    def customer_by_id(self, customer_id: str) -> Customer | None:
        return self._customers_by_id.get(customer_id)

    def subscriptions_for(self, customer_id: str) -> tuple[Subscription, ...]:
        return tuple(s for s in self.subscriptions if s.user_id == customer_id)

    def purchases_for(self, customer_id: str) -> tuple[Purchase, ...]:
        return tuple(p for p in self.purchases if p.user_id == customer_id)

    def subscription_by_id(self, subscription_id: str) -> Subscription | None:
        return self._subscriptions_by_id.get(subscription_id)

    def transactions_for_subscription(self, subscription_id: str) -> tuple[Transaction, ...]:
        sub = self.subscription_by_id(subscription_id)
        if sub is None:
            return ()
        return tuple(self._transactions_by_id[t] for t in sub.transaction_ids)

    def user_with_store(self, store: Store) -> str:
        """A showcase customer (deterministic) with a ``store`` subscription: renewed, ideally still active.

        Preference: a paid subscription with renewals that is still active, then any renewed one, then any;
        named (not anonymous) user ids first; ties broken by user id. ValueError when the store sold none.
        """
        candidates = [s for s in self.subscriptions if s.store == store]
        if not candidates:
            raise ValueError(f"the dataset has no {store} subscription")

        def rank(sub: Subscription) -> tuple[bool, bool, bool, str]:
            return (
                len(sub.transaction_ids) < 2,
                sub.status != "active",
                sub.user_id.startswith("$"),
                sub.user_id,
            )

        return min(candidates, key=rank).user_id

    def web_billing_user(self) -> str:
        """A customer with a renewed web-billing (``rc_billing``) subscription: v2 serves it no transactions."""
        return self.user_with_store("rc_billing")


def add_months(moment: datetime, months: int) -> datetime:
    """Same day-of-month ``months`` later, clipped to the month's last day."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    last_day = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    return moment.replace(year=year, month=month, day=min(moment.day, last_day))


def first_of_month(day: date, months_back: int = 0) -> date:
    """First day of the month ``months_back`` months before ``day``'s month."""
    index = day.year * 12 + day.month - 1 - months_back
    return date(index // 12, index % 12 + 1, 1)


class _Ids:
    """Deterministic vendor-style identifiers."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def hex(self, n: int) -> str:
        return f"{self._rng.getrandbits(4 * n):0{n}x}"

    def digits(self, n: int) -> str:
        return "".join(self._rng.choice("0123456789") for _ in range(n))

    def store_transaction(self, store: Store) -> str:
        if store == "app_store":
            return "2000000" + self.digits(9)
        if store == "play_store":
            return f"GPA.33{self.digits(2)}-{self.digits(4)}-{self.digits(4)}-{self.digits(5)}"
        if store == "stripe":
            return "ch_" + self.hex(24)
        return "rcbtxn_" + self.hex(16)

    def store_subscription(self, store: Store, first_transaction: str) -> str:
        if store == "app_store":
            return first_transaction
        if store == "play_store":
            return "GPA.33" + self.digits(2) + "-" + self.digits(4) + "-" + self.digits(4) + "-" + self.digits(5)
        if store == "stripe":
            return "sub_" + self.hex(14)
        return "rcbsub_" + self.hex(16)


_DEVICES: Mapping[Platform, tuple[str, str, str]] = {
    "iOS": ("ios 17.4", "Apple iPhone", "Apple iPhone 15"),
    "Android": ("android 14", "Google Pixel", "Google Pixel 8"),
    "Web": ("Chrome 124", "Mac", "Mac"),
}


_PLATFORMS: tuple[Platform, ...] = ("iOS", "Android", "Web")
_PLATFORM_STORE: Mapping[Platform, Store] = {"iOS": "app_store", "Android": "play_store"}
_WEB_STORES: tuple[Store, ...] = ("stripe", "rc_billing")


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_NO_PROPS: Mapping[str, JsonScalar] = {}
# Event property mappings are shared between events (read-only by contract: typed as Mapping).
_CONTENT_PROPS: tuple[Mapping[str, JsonScalar], ...] = tuple(
    {"content_id": f"c{i:03d}", "category": category}
    for i in range(200)
    for category in ("loops", "tutorials", "packs")
)
_SHARE_PROPS: Mapping[str, JsonScalar] = {"channel": "link"}
_SETTINGS_PAYWALL_PROPS: Mapping[str, JsonScalar] = {"source": "settings"}
_RawEvent = tuple[int, str, Mapping[str, JsonScalar], int]  # (epoch seconds, type, props, session start seconds)


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _ts(moment: datetime) -> int:
    return int(moment.timestamp())


class _Generator:
    def __init__(self, seed: int, users: int, end: date, months: int) -> None:
        self.rng = random.Random(seed)
        self.ids = _Ids(self.rng)
        self.seed = seed
        self.n_users = users
        self.end = end
        self.start = first_of_month(end, months - 1)
        self.end_at = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
        self.span_days = (end - self.start).days + 1
        self.users: list[User] = []
        self.events: list[Event] = []
        self.spans: dict[int, tuple[int, int]] = {}
        self.customers: list[Customer] = []
        self.subscriptions: list[Subscription] = []
        self.trials: list[Trial] = []
        self.purchases: list[Purchase] = []
        self.transactions: list[Transaction] = []

    def run(self) -> Dataset:
        for i in range(self.n_users):
            profile = SHOWCASE.get(i)
            if profile is None:
                self._user(i)
            else:
                self._discard(lambda i=i: self._user(i))
                self._showcase(i, profile)
        return self._build()

    def _build(self) -> Dataset:
        return Dataset(
            seed=self.seed,
            start=self.start,
            end=self.end,
            users=tuple(self.users),
            events=tuple(self.events),
            customers=tuple(self.customers),
            subscriptions=tuple(self.subscriptions),
            trials=tuple(self.trials),
            purchases=tuple(self.purchases),
            transactions=tuple(self.transactions),
            _event_spans=self.spans,
        )

    def _user(self, i: int) -> None:
        rng = self.rng
        anonymous = rng.random() < 0.03
        user_id = f"$RCAnonymousID:{self.ids.hex(32)}" if anonymous else f"user_{i:05d}"
        amplitude_id = 100_000_000 + i
        # A quarter of the users were already around in the first month; the rest arrive over the span.
        offset = rng.randrange(min(30, self.span_days)) if rng.random() < 0.25 else rng.randrange(self.span_days)
        first_seen = self.start + timedelta(days=offset)
        country = rng.choices(tuple(COUNTRY_NAMES), weights=_COUNTRY_WEIGHTS)[0]
        platform = rng.choices(_PLATFORMS, weights=(45, 40, 15))[0]
        engagement = rng.betavariate(2, 8)
        lifetime = int(rng.expovariate(1 / 120)) + 1
        last_day = min(first_seen + timedelta(days=lifetime), self.end)

        rnd = rng.random
        base = (first_seen.toordinal() - _EPOCH_ORDINAL) * 86400
        raw: list[_RawEvent] = []
        t0s = base + 7 * 3600 + int(rnd() * 15 * 3600)
        t0 = _utc(t0s)
        raw.append((t0s, "App Open", _NO_PROPS, t0s))
        raw.append((t0s + 5, "Sign Up", {"method": rng.choice(("email", "apple", "google"))}, t0s))
        self._browse(raw, t0s + 5, t0s)
        for d in range(1, (last_day - first_seen).days + 1):
            if rnd() < engagement:
                for _ in range(1 + (rnd() < 0.3)):
                    start = base + d * 86400 + 6 * 3600 + int(rnd() * 17 * 3600)
                    raw.append((start, "App Open", _NO_PROPS, start))
                    self._browse(raw, start, start)

        store: Store = _PLATFORM_STORE.get(platform) or rng.choice(_WEB_STORES)
        product = PRODUCTS["loop_pro_monthly" if rng.random() < 0.7 else "loop_pro_annual"]
        paid_props: dict[str, JsonScalar] = {"product_id": product.product_id, "price": product.price_usd}

        # Funnel: Sign Up -> View Paywall (~60%) -> Start Trial (~25%) -> Subscribe (~12%).
        trial_at: datetime | None = None
        direct_at: datetime | None = None
        if rng.random() < 0.6:
            if rng.random() < 0.55:
                paywall_s, session = t0s + rng.randrange(30, 600), t0s
            else:
                paywall_s = t0s + rng.randrange(1, 11) * 86400 + rng.randrange(0, 6 * 3600)
                session = paywall_s - 10
                raw.append((session, "App Open", _NO_PROPS, session))
            raw.append((paywall_s, "View Paywall", {"source": "onboarding"}, session))
            paywall_at = _utc(paywall_s)
            if rng.random() < 0.42:
                trial_at = paywall_at + timedelta(seconds=rng.randrange(20, 300))
                raw.append((_ts(trial_at), "Start Trial", {"product_id": product.product_id}, session))
            elif rng.random() < 0.05:
                direct_at = paywall_at + timedelta(seconds=rng.randrange(60, 600))
                raw.append((_ts(direct_at), "Subscribe", paid_props, session))
        in_rc = trial_at is not None or direct_at is not None or rng.random() < 0.667

        if trial_at is not None and trial_at < self.end_at:
            converts = rng.random() < 0.48
            self._subscription(user_id, product, store, country, trial_at, trial=True, converts=converts)
            if converts:
                sub_at = trial_at + timedelta(days=TRIAL_DAYS)
                raw.append((_ts(sub_at), "Subscribe", paid_props, _ts(sub_at)))
        if direct_at is not None and direct_at < self.end_at:
            self._subscription(user_id, product, store, country, direct_at, trial=False, converts=True)

        if in_rc and rng.random() < 0.08:
            for _ in range(rng.randint(1, 3)):
                when = _utc(base + rng.randrange(86400 * (lifetime + 1)))
                if when < self.end_at:
                    self._purchase(user_id, store, country, when)

        raw.sort(key=lambda r: r[0])
        lo = len(self.events)
        limit = _ts(self.end_at)
        append = self.events.append
        for seq, (when, kind, props, session) in enumerate(raw, start=1):
            if when >= limit:
                break
            append(Event(seq, user_id, amplitude_id, kind, _utc(when), session * 1000, props))
        self.spans[amplitude_id] = (lo, len(self.events))

        os_name, device, device_type = _DEVICES[platform]
        self.users.append(
            User(
                user_id=user_id,
                amplitude_id=amplitude_id,
                first_seen=first_seen,
                country=country,
                platform=platform,
                in_revenuecat=in_rc,
                device_id=self.ids.hex(32),
                os=os_name,
                app_version=f"3.{rng.randrange(2, 6)}.{rng.randrange(10)}",
                device=device,
                device_type=device_type,
                city=_CITIES[country],
                language=_LANGUAGES[country],
            )
        )
        if in_rc:
            last_seen = self.events[-1].event_time if len(self.events) > lo else t0
            self.customers.append(Customer(user_id, t0, last_seen, country, platform, self.users[-1].app_version))

    def _discard(self, build: Callable[[], None]) -> None:
        """Run ``build`` for its draws on the main random stream only: drop everything it added."""
        lists: tuple[list[Any], ...] = (
            self.users,
            self.events,
            self.customers,
            self.subscriptions,
            self.trials,
            self.purchases,
            self.transactions,
        )
        sizes = [len(items) for items in lists]
        build()
        for items, size in zip(lists, sizes, strict=True):
            del items[size:]

    def _showcase(self, i: int, profile: Showcase) -> None:
        """A pinned user (see the module docstring), drawn from a stream of its own so it looks the same every day."""
        rng = random.Random(f"loop-kpi-showcase:{self.seed}:{i}")
        ids = _Ids(rng)
        user_id, amplitude_id = f"user_{i:05d}", 100_000_000 + i
        first_seen = self.end - timedelta(days=profile.first_seen_days_before_end)
        base = (first_seen.toordinal() - _EPOCH_ORDINAL) * 86400
        product = PRODUCTS["loop_pro_monthly"]
        paid_props: dict[str, JsonScalar] = {"product_id": product.product_id, "price": product.price_usd}
        limit = _ts(self.end_at)

        t0s = base + 9 * 3600 + rng.randrange(3600)
        trial_s = t0s + 240
        raw: list[_RawEvent] = [
            (t0s, "App Open", _NO_PROPS, t0s),
            (t0s + 5, "Sign Up", {"method": "email"}, t0s),
            (t0s + 60, "View Content", _CONTENT_PROPS[rng.randrange(len(_CONTENT_PROPS))], t0s),
            (t0s + 120, "View Paywall", {"source": "onboarding"}, t0s),
            (trial_s, "Start Trial", {"product_id": product.product_id}, t0s),
        ]
        trial_at = _utc(trial_s)
        trial_end = trial_at + timedelta(days=TRIAL_DAYS)
        raw.append((_ts(trial_end), "Subscribe", paid_props, _ts(trial_end)))
        # Every other day, the end day included: an App Open and some browsing.
        for d in range(0, profile.first_seen_days_before_end + 1, 2):
            start = base + (profile.first_seen_days_before_end - d) * 86400 + 8 * 3600 + rng.randrange(8 * 3600)
            if start > t0s + 3600:
                raw.append((start, "App Open", _NO_PROPS, start))
                raw.append((start + 30, "View Content", _CONTENT_PROPS[rng.randrange(len(_CONTENT_PROPS))], start))
        raw.sort(key=lambda r: r[0])
        lo = len(self.events)
        for seq, (when, kind, props, session) in enumerate((r for r in raw if r[0] < limit), start=1):
            self.events.append(Event(seq, user_id, amplitude_id, kind, _utc(when), session * 1000, props))
        self.spans[amplitude_id] = (lo, len(self.events))

        # The subscription: a 7-day trial, then monthly periods renewing through `end` (no cancellation or refund).
        sub_id = "sub" + ids.hex(12)
        self.trials.append(
            Trial(sub_id, user_id, product.product_id, profile.store, profile.country, trial_at, trial_end, True)
        )
        tx_ids: list[str] = []
        period_start = trial_end
        while True:
            period_end = add_months(period_start, 1)
            tx_id = ids.store_transaction(profile.store)
            tx_ids.append(tx_id)
            self.transactions.append(
                Transaction(
                    tx_id,
                    user_id,
                    product.product_id,
                    profile.store,
                    profile.country,
                    product.price_usd,
                    period_start,
                    period_end,
                    sub_id,
                    None,
                    len(tx_ids) > 1,
                    False,
                    None,
                )
            )
            if period_end >= self.end_at:
                break
            period_start = period_end
        self.subscriptions.append(
            Subscription(
                subscription_id=sub_id,
                user_id=user_id,
                product_id=product.product_id,
                store=profile.store,
                country=profile.country,
                starts_at=trial_at,
                trial_ends_at=trial_end,
                current_period_starts_at=period_start,
                current_period_ends_at=period_end,
                ends_at=None,
                status="active",
                auto_renew=True,
                unsubscribe_detected_at=None,
                billing_issue_detected_at=None,
                refunded_at=None,
                store_subscription_identifier=ids.store_subscription(profile.store, tx_ids[0]),
                transaction_ids=tuple(tx_ids),
            )
        )

        # One-time purchases; the first is refunded three days later.
        credits = PRODUCTS["loop_credits_100"]
        for n, days in enumerate(profile.purchase_days_after_first_seen):
            when = _utc(base + days * 86400 + 18 * 3600)
            refunded_at = when + timedelta(days=3) if n == 0 else None
            purchase_id, tx_id = "prch" + ids.hex(12), ids.store_transaction(profile.store)
            refunded = refunded_at is not None
            self.purchases.append(
                Purchase(
                    purchase_id,
                    user_id,
                    credits.product_id,
                    profile.store,
                    profile.country,
                    when,
                    credits.price_usd,
                    refunded,
                    refunded_at,
                    tx_id,
                )
            )
            self.transactions.append(
                Transaction(
                    tx_id,
                    user_id,
                    credits.product_id,
                    profile.store,
                    profile.country,
                    credits.price_usd,
                    when,
                    None,
                    None,
                    purchase_id,
                    False,
                    refunded,
                    refunded_at,
                )
            )

        os_name, device, device_type = _DEVICES[profile.platform]
        user = User(
            user_id=user_id,
            amplitude_id=amplitude_id,
            first_seen=first_seen,
            country=profile.country,
            platform=profile.platform,
            in_revenuecat=True,
            device_id=ids.hex(32),
            os=os_name,
            app_version="3.5.1",
            device=device,
            device_type=device_type,
            city=_CITIES[profile.country],
            language=_LANGUAGES[profile.country],
        )
        self.users.append(user)
        self.customers.append(
            Customer(
                user_id, _utc(t0s), self.events[-1].event_time, profile.country, profile.platform, user.app_version
            )
        )

    def _browse(self, raw: list[_RawEvent], after: int, session: int) -> None:
        rnd = self.rng.random
        t = after
        for _ in range(int(rnd() * 3)):
            t += 20 + int(rnd() * 280)
            raw.append((t, "View Content", _CONTENT_PROPS[int(rnd() * len(_CONTENT_PROPS))], session))
        if rnd() < 0.1:
            raw.append((t + 5 + int(rnd() * 55), "Share", _SHARE_PROPS, session))
        if rnd() < 0.04:
            raw.append((t + 5 + int(rnd() * 55), "View Paywall", _SETTINGS_PAYWALL_PROPS, session))

    def _refund_time(self, purchased_at: datetime, probability: float) -> datetime | None:
        if self.rng.random() >= probability:
            return None
        when = purchased_at + timedelta(hours=self.rng.randrange(12, 20 * 24))
        return when if when < self.end_at else None

    def _purchase(self, user_id: str, store: Store, country: str, when: datetime) -> None:
        product = PRODUCTS["loop_credits_100"]
        refunded_at = self._refund_time(when, 0.06)
        purchase_id = "prch" + self.ids.hex(12)
        tx_id = self.ids.store_transaction(store)
        self.purchases.append(
            Purchase(
                purchase_id,
                user_id,
                product.product_id,
                store,
                country,
                when,
                product.price_usd,
                refunded_at is not None,
                refunded_at,
                tx_id,
            )
        )
        self.transactions.append(
            Transaction(
                tx_id,
                user_id,
                product.product_id,
                store,
                country,
                product.price_usd,
                when,
                None,
                None,
                purchase_id,
                False,
                refunded_at is not None,
                refunded_at,
            )
        )

    def _subscription(
        self,
        user_id: str,
        product: Product,
        store: Store,
        country: str,
        start: datetime,
        *,
        trial: bool,
        converts: bool,
    ) -> None:
        rng = self.rng
        sub_id = "sub" + self.ids.hex(12)
        tx_ids: list[str] = []
        end_at = self.end_at

        def finish(
            status: SubscriptionStatus,
            period: tuple[datetime, datetime],
            ends_at: datetime | None,
            *,
            auto_renew: bool = True,
            unsubscribe: datetime | None = None,
            billing: datetime | None = None,
            refunded_at: datetime | None = None,
        ) -> None:
            first = tx_ids[0] if tx_ids else self.ids.store_transaction(store)
            self.subscriptions.append(
                Subscription(
                    subscription_id=sub_id,
                    user_id=user_id,
                    product_id=product.product_id,
                    store=store,
                    country=country,
                    starts_at=start,
                    trial_ends_at=start + timedelta(days=TRIAL_DAYS) if trial else None,
                    current_period_starts_at=period[0],
                    current_period_ends_at=period[1],
                    ends_at=ends_at,
                    status=status,
                    auto_renew=auto_renew,
                    unsubscribe_detected_at=unsubscribe,
                    billing_issue_detected_at=billing,
                    refunded_at=refunded_at,
                    store_subscription_identifier=self.ids.store_subscription(store, first),
                    transaction_ids=tuple(tx_ids),
                )
            )

        period_start = start
        if trial:
            trial_end = start + timedelta(days=TRIAL_DAYS)
            self.trials.append(
                Trial(
                    sub_id,
                    user_id,
                    product.product_id,
                    store,
                    country,
                    start,
                    trial_end,
                    converts and trial_end < end_at,
                )
            )
            cancel_at = start + timedelta(hours=rng.randrange(2, TRIAL_DAYS * 24 - 2))
            if trial_end >= end_at:
                cancelled = not converts and cancel_at < end_at
                finish(
                    "trialing",
                    (start, trial_end),
                    trial_end if cancelled else None,
                    auto_renew=not cancelled,
                    unsubscribe=cancel_at if cancelled else None,
                )
                return
            if not converts:
                finish("expired", (start, trial_end), trial_end, auto_renew=False, unsubscribe=cancel_at)
                return
            period_start = trial_end

        cancel_p = 0.09 if product.period_months == 1 else 0.4
        renewal = False
        while True:
            period_end = add_months(period_start, product.period_months)
            tx_id = self.ids.store_transaction(store)
            refunded_at = self._refund_time(period_start, 0.04)
            tx_ids.append(tx_id)
            self.transactions.append(
                Transaction(
                    tx_id,
                    user_id,
                    product.product_id,
                    store,
                    country,
                    product.price_usd,
                    period_start,
                    period_end,
                    sub_id,
                    None,
                    renewal,
                    refunded_at is not None,
                    refunded_at,
                )
            )
            renewal = True
            if refunded_at is not None:
                finish("expired", (period_start, period_end), refunded_at, auto_renew=False, refunded_at=refunded_at)
                return
            cancels = rng.random() < cancel_p
            cancel_at = period_start + (period_end - period_start) * rng.uniform(0.05, 0.95)
            if period_end >= end_at:
                if cancels and cancel_at < end_at:
                    finish("active", (period_start, period_end), period_end, auto_renew=False, unsubscribe=cancel_at)
                else:
                    finish("active", (period_start, period_end), None)
                return
            if cancels:
                finish("expired", (period_start, period_end), period_end, auto_renew=False, unsubscribe=cancel_at)
                return
            if rng.random() < 0.05:
                issue_at = period_end
                recovers = rng.random() < 0.55
                recover_at = issue_at + timedelta(hours=rng.randrange(12, (BILLING_RETRY_DAYS - 1) * 24))
                if not recovers or recover_at >= end_at:
                    grace_end = issue_at + timedelta(days=GRACE_DAYS)
                    retry_end = issue_at + timedelta(days=BILLING_RETRY_DAYS)
                    if end_at <= grace_end:
                        finish("in_grace_period", (issue_at, grace_end), None, billing=issue_at)
                    elif end_at <= retry_end:
                        finish("in_billing_retry", (issue_at, retry_end), None, billing=issue_at)
                    else:
                        finish("expired", (period_start, period_end), grace_end, auto_renew=False, billing=issue_at)
                    return
                period_start = recover_at
                continue
            period_start = period_end


def generate_dataset(seed: int = 42, users: int = 2500, end: date | None = None, months: int = 15) -> Dataset:
    """Build the deterministic dataset for (seed, users, end, months); ``end`` defaults to today (UTC)."""
    if users < 1 or months < 1:
        raise ValueError("users and months must be positive")
    return _Generator(seed, users, end or datetime.now(UTC).date(), months).run()
