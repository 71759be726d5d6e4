import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta

from shared.sandbox import Dataset, generate_dataset

from .conftest import END


def test_same_seed_generates_identical_data(dataset: Dataset) -> None:
    again = generate_dataset(seed=42, users=2500, end=END)
    assert again.users == dataset.users
    assert again.events == dataset.events
    assert again.transactions == dataset.transactions
    assert again.subscriptions == dataset.subscriptions


def test_other_seed_generates_different_data(dataset: Dataset) -> None:
    other = generate_dataset(seed=7, users=200, end=END)
    assert other.users[0] != dataset.users[0]


def test_dataset_generates_in_seconds_not_minutes() -> None:
    # A guard against a pathological slowdown (it takes ~1.5 s on an idle 2-core machine), not a speed target:
    # speed is measured by `make bench`, and a tight bound here failed whenever the machine was busy.
    started = time.perf_counter()
    generate_dataset(seed=3, users=2500, end=END)
    assert time.perf_counter() - started < 15.0


def test_dataset_spans_fifteen_calendar_months_and_thousands_of_users(dataset: Dataset) -> None:
    assert dataset.start == date(2024, 9, 1)
    assert dataset.end == END
    assert len(dataset.users) == 2500
    assert 100_000 <= len(dataset.events) <= 250_000
    months = {(e.event_time.year, e.event_time.month) for e in dataset.events}
    assert len(months) >= 12


def test_nothing_happens_after_the_end_day(dataset: Dataset) -> None:
    limit = datetime(2025, 11, 21, tzinfo=UTC)
    assert dataset.end_at == limit
    assert max(e.event_time for e in dataset.events) < limit
    assert max(t.purchased_at for t in dataset.transactions) < limit
    assert all(t.refunded_at is None or t.refunded_at < limit for t in dataset.transactions)


def test_users_have_unique_ids_anonymous_ids_and_several_countries(dataset: Dataset) -> None:
    assert len({u.user_id for u in dataset.users}) == len(dataset.users)
    assert len({u.amplitude_id for u in dataset.users}) == len(dataset.users)
    anonymous = [u for u in dataset.users if u.user_id.startswith("$RCAnonymousID:")]
    assert 0.01 < len(anonymous) / len(dataset.users) < 0.06
    assert all(len(u.user_id) == len("$RCAnonymousID:") + 32 for u in anonymous)
    assert len({u.country for u in dataset.users}) >= 6
    assert 0.65 < sum(u.in_revenuecat for u in dataset.users) / len(dataset.users) < 0.85


def test_monthly_active_users_change_from_month_to_month(dataset: Dataset) -> None:
    mau = Counter[tuple[int, int]]()
    seen: set[tuple[int, int, int]] = set()
    for e in dataset.events:
        key = (e.event_time.year, e.event_time.month, e.amplitude_id)
        if key not in seen:
            seen.add(key)
            mau[key[:2]] += 1
    assert len(set(mau.values())) > 5


def test_funnel_steps_convert_less_and_less(dataset: Dataset) -> None:
    users_by_type: dict[str, set[int]] = {}
    for e in dataset.events:
        users_by_type.setdefault(e.event_type, set()).add(e.amplitude_id)
    n = len(dataset.users)
    assert len(users_by_type["Sign Up"]) == n
    paywall = len(users_by_type["View Paywall"]) / n
    trial = len(users_by_type["Start Trial"]) / n
    paid = len(users_by_type["Subscribe"]) / n
    assert 0.5 < paywall < 0.85
    assert 0.18 < trial < 0.32
    assert 0.07 < paid < 0.18
    assert paywall > trial > paid


def test_trials_match_start_trial_events_and_conversions_have_a_paid_transaction(dataset: Dataset) -> None:
    starters = {e.user_id for e in dataset.events if e.event_type == "Start Trial"}
    assert {t.user_id for t in dataset.trials} == starters
    first_paid = {t.subscription_id: t for t in dataset.transactions if t.subscription_id and not t.is_renewal}
    for trial in dataset.trials:
        paid = first_paid.get(trial.subscription_id)
        assert (paid is not None) == trial.converted
        if paid is not None:
            assert paid.purchased_at == trial.ends_at == trial.started_at + timedelta(days=7)


def test_revenuecat_data_covers_products_stores_refunds_and_billing_issues(dataset: Dataset) -> None:
    assert {t.product_id for t in dataset.transactions} == {"loop_pro_monthly", "loop_pro_annual", "loop_credits_100"}
    assert {t.store for t in dataset.transactions} == {"app_store", "play_store", "stripe", "rc_billing"}
    refunded = [t for t in dataset.transactions if t.refunded]
    assert 0.01 < len(refunded) / len(dataset.transactions) < 0.08
    assert all(t.refunded_at is not None and t.refunded_at > t.purchased_at for t in refunded)
    assert any(t.is_renewal for t in dataset.transactions)
    assert any(p.refunded for p in dataset.purchases)
    assert any(s.billing_issue_detected_at is not None for s in dataset.subscriptions)
    statuses = {s.status for s in dataset.subscriptions}
    assert {"active", "expired", "trialing"} <= statuses
    customer_ids = {c.customer_id for c in dataset.customers}
    assert {t.user_id for t in dataset.transactions} <= customer_ids


def test_helpers_find_users_events_and_subscriptions(dataset: Dataset) -> None:
    user = dataset.users[10]
    assert dataset.user_by_id(user.user_id) == user
    assert dataset.user_by_amplitude_id(user.amplitude_id) == user
    events = dataset.events_for(user.amplitude_id)
    assert events == tuple(e for e in dataset.events if e.amplitude_id == user.amplitude_id)
    assert [e.event_time for e in events] == sorted(e.event_time for e in events)
    assert events[0].event_type in ("App Open", "Sign Up")
    sub = dataset.subscriptions[0]
    assert dataset.subscription_by_id(sub.subscription_id) == sub
    assert [t.transaction_id for t in dataset.transactions_for_subscription(sub.subscription_id)] == list(
        sub.transaction_ids
    )
