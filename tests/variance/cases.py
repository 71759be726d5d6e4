"""The vendor-variance cases: each a way a real vendor's answer may differ, and what each operation must answer.

`python -m tests.variance.cases` prints the matrix (variants x operations -> outcome) as markdown; docs/reliability.md
carries it under "Vendor variance" (a test keeps the two equal).

Figure paths follow the warnings contract (`periods[].refund_rate_pct`, `revenuecat.mrr`, ...). In a case,
`revenuecat.subscriptions[{all}]` / `[{web}]` / `[{overridden}]` stand for every subscription of the journey's
user, those sold outside the App Store and Play Store, and the one the case re-labels as web billing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from shared.sandbox import Dataset, SandboxState
from shared.sandbox.variants import (
    Variant,
    append_item,
    array_values,
    drop_field,
    drop_measure,
    drop_next_page,
    empty_list,
    extra_empty_page,
    null_field,
    page_size,
    rename_measure,
    set_field,
    unknown_fields,
)

OPERATIONS = ("kpi_overview", "kpi_mau", "kpi_conversion", "kpi_user_journey", "kpi_refund_analysis")
SHORT = {
    "kpi_overview": "overview",
    "kpi_mau": "mau",
    "kpi_conversion": "conversion",
    "kpi_user_journey": "journey",
    "kpi_refund_analysis": "refund analysis",
}
# Symbolic journey users, resolved against the dataset (deterministic picks).
STORE_USER = "store"  # a renewed App Store subscriber
WEB_USER = "web"  # a renewed web-billing (rc_billing) subscriber: v2 serves its subscriptions no transactions
ANONYMOUS_USER = "anonymous"  # an `$RCAnonymousID:<hex>` customer
ODD_UNKNOWN_USER = "a/b#c|d~e!f*g=h+i@j:k$"  # URL-reserved characters the id pattern allows: nobody's id
INVALID_USER = "a b?c%é"  # a space, `?`, `%` and a non-ASCII letter: outside the documented id pattern

METRIC_FIGURES: Mapping[str, str] = {
    "mrr": "revenuecat.mrr",
    "revenue": "revenuecat.revenue_28d",
    "active_subscriptions": "revenuecat.active_subscriptions",
    "active_trials": "revenuecat.active_trials",
    "new_customers": "revenuecat.new_customers_28d",
    "active_users": "revenuecat.active_users_28d",
}
REFUND_COUNTS = frozenset(
    {
        "periods[].transactions",
        "periods[].refunded_transactions",
        "summary.transactions",
        "summary.refunded_transactions",
        "summary.refund_rate_pct",
    }
)
LISTS = ("revenuecat.subscriptions", "revenuecat.purchases", "revenuecat.transactions")


@dataclass(frozen=True)
class Outcome:
    """What one operation answers under a variant.

    `status` 200: every figure equals the same call without the variant, except `nulled` (null, with a warning naming
    it), `derived` (a warning naming it, value as without the variant) and `loose` (not compared: `check` verifies it
    against the dataset). Any other status: the documented problem.
    """

    status: int = 200
    nulled: frozenset[str] = frozenset()
    derived: frozenset[str] = frozenset()
    kept: frozenset[str] = frozenset()  # a warning naming it, value as the upstream sent it (e.g. an unknown enum)
    loose: frozenset[str] = frozenset()
    check: str | None = None  # name of an extra check in test_variance.CHECKS
    note: str = ""

    def cell(self) -> str:
        if self.status != 200:
            return f"**{self.status}**" + (f" ({self.note})" if self.note else "")
        parts: list[str] = []
        if self.nulled:
            parts.append("null + warning: " + ", ".join(f"`{f}`" for f in sorted(self.nulled)))
        if self.derived:
            parts.append("derived + warning: " + ", ".join(f"`{f}`" for f in sorted(self.derived)))
        if self.kept:
            parts.append("kept as sent + warning: " + ", ".join(f"`{f}`" for f in sorted(self.kept)))
        if self.note:
            parts.append(self.note)
        return "200; " + "; ".join(parts) if parts else "200, exact"


EXACT = Outcome()


@dataclass(frozen=True)
class Case:
    """A variant of the upstream answers (variants per endpoint, plus an optional setup) and the expected outcomes."""

    id: str
    title: str
    variants: tuple[tuple[str, Variant], ...] = ()
    outcomes: Mapping[str, Outcome] = field(default_factory=dict[str, Outcome])
    setup: Callable[[SandboxState, Dataset], None] | None = None
    journey_user: str = STORE_USER


def _legacy(state: SandboxState, dataset: Dataset) -> None:
    state.chart_measure_names = "legacy"


def _relabel_store_subscription(state: SandboxState, dataset: Dataset) -> None:
    state.override_store([relabelled_subscription(dataset)], "rc_billing")


def relabelled_subscription(dataset: Dataset) -> str:
    """The renewed App Store subscription the web-billing re-label case serves as `rc_billing`."""
    user = dataset.user_with_store("app_store")
    return next(
        s.subscription_id
        for s in dataset.subscriptions_for(user)
        if s.store == "app_store" and len(s.transaction_ids) >= 2
    )


def _metric_cases() -> list[Case]:
    cases: list[Case] = []
    for metric, figure in METRIC_FIGURES.items():
        nulled = Outcome(nulled=frozenset({figure}))
        cases.append(
            Case(
                f"overview-{metric}-missing",
                f"overview metric `{metric}` missing",
                (("revenuecat.overview", drop_field(f"metrics[id={metric}]")),),
                {"kpi_overview": nulled},
            )
        )
        cases.append(
            Case(
                f"overview-{metric}-null",
                f"overview metric `{metric}` with `value: null`",
                (("revenuecat.overview", null_field(f"metrics[id={metric}].value")),),
                {"kpi_overview": nulled},
            )
        )
    return cases


CASES: tuple[Case, ...] = (
    Case(
        "unknown-fields",
        "unknown fields in every object of every answer",
        (("*", unknown_fields()),),
        dict.fromkeys(OPERATIONS, EXACT),
    ),
    *_metric_cases(),
    Case(
        "overview-metrics-empty",
        "overview `metrics: []`",
        (("revenuecat.overview", empty_list("metrics")),),
        {"kpi_overview": Outcome(nulled=frozenset({*METRIC_FIGURES.values(), "revenuecat.last_updated_at"}))},
    ),
    Case(
        "overview-unknown-metric",
        "overview with an unknown metric id and period",
        (
            (
                "revenuecat.overview",
                append_item(
                    "metrics",
                    {
                        "object": "overview_metric",
                        "id": "arpu_x",
                        "name": "ARPU",
                        "description": "new",
                        "unit": "€",
                        "period": "P7D",
                        "value": 1.5,
                        "last_updated_at": None,
                        "last_updated_at_iso8601": None,
                    },
                ),
            ),
        ),
        {"kpi_overview": EXACT},
    ),
    Case(
        "users-seriesmeta-missing",
        "Amplitude users without `seriesMeta`",
        (("amplitude.users", drop_field("data.seriesMeta")),),
        {"kpi_overview": EXACT, "kpi_mau": EXACT},
    ),
    Case(
        "users-series-empty",
        "Amplitude users with `series: []`",
        (("amplitude.users", empty_list("data.series")),),
        {
            "kpi_overview": Outcome(nulled=frozenset({"amplitude.dau", "amplitude.mau", "amplitude.new_users"})),
            "kpi_mau": Outcome(status=502, note="no series: nothing to report"),
        },
    ),
    Case(
        "funnel-median-missing",
        "funnel without `medianTransTimes`",
        (("amplitude.funnels", drop_field("data[0].medianTransTimes")),),
        {
            "kpi_conversion": Outcome(
                nulled=frozenset({"steps[1].median_time_to_convert_seconds", "steps[2].median_time_to_convert_seconds"})
            )
        },
    ),
    Case(
        "funnel-average-missing",
        "funnel without `avgTransTimes`",
        (("amplitude.funnels", drop_field("data[0].avgTransTimes")),),
        {
            "kpi_conversion": Outcome(
                nulled=frozenset(
                    {"steps[1].average_time_to_convert_seconds", "steps[2].average_time_to_convert_seconds"}
                )
            )
        },
    ),
    Case(
        "funnel-fractions-missing",
        "funnel without `cumulative` and `stepByStep` (conversions come from the counts)",
        (
            ("amplitude.funnels", drop_field("data[0].cumulative")),
            ("amplitude.funnels", drop_field("data[0].stepByStep")),
        ),
        {"kpi_conversion": EXACT},
    ),
    Case(
        "funnel-cumulativeraw-missing",
        "funnel without `cumulativeRaw`",
        (("amplitude.funnels", drop_field("data[0].cumulativeRaw")),),
        {"kpi_conversion": Outcome(status=502, note="step counts are the funnel")},
    ),
    Case(
        "trial-legacy-names",
        "`trial_conversion_rate` measures `Conversion Rate`, `Trials`, `Conversions` (older names)",
        setup=_legacy,
        outcomes={"kpi_conversion": EXACT},
    ),
    Case(
        "trial-starts-renamed-trials",
        "`trial_conversion_rate`: `Trial Starts` named `Trials`",
        (("revenuecat.chart", rename_measure("trial_conversion_rate", "Trial Starts", "Trials")),),
        {"kpi_conversion": EXACT},
    ),
    Case(
        "trial-starts-unrecognisable",
        "`trial_conversion_rate`: `Trial Starts` renamed beyond recognition",
        (("revenuecat.chart", rename_measure("trial_conversion_rate", "Trial Starts", "Measure A")),),
        {
            "kpi_conversion": Outcome(
                nulled=frozenset({"trial_conversion.trials", "trial_conversion.conversion_rate_pct"})
            )
        },
    ),
    Case(
        "trial-conversions-missing",
        "`trial_conversion_rate` without `Conversions`",
        (("revenuecat.chart", drop_measure("trial_conversion_rate", "Conversions")),),
        {
            "kpi_conversion": Outcome(
                nulled=frozenset({"trial_conversion.conversions", "trial_conversion.conversion_rate_pct"})
            )
        },
    ),
    Case(
        "trial-array-values",
        "`trial_conversion_rate` `values` as rows `[cohort, v0, v1, ...]`",
        (("revenuecat.chart", array_values("trial_conversion_rate")),),
        {
            "kpi_conversion": Outcome(
                loose=frozenset({"trial_conversion"}),
                check="trials_over_all_periods",
                note="rows carry no `incomplete` flag: every period counts",
            )
        },
    ),
    Case(
        "refund-legacy-names",
        "`refund_rate` measures `Refund Rate`, `Refunded Transactions`, `Transactions` (older order)",
        setup=_legacy,
        outcomes={"kpi_refund_analysis": EXACT},
    ),
    Case(
        "refund-rate-only",
        "`refund_rate` with the rate alone (counts dropped)",
        (
            ("revenuecat.chart", drop_measure("refund_rate", "Transactions")),
            ("revenuecat.chart", drop_measure("refund_rate", "Refunded Transactions")),
        ),
        {"kpi_refund_analysis": Outcome(nulled=REFUND_COUNTS)},
    ),
    Case(
        "refund-rate-missing",
        "`refund_rate` without `Refund Rate`",
        (("revenuecat.chart", drop_measure("refund_rate", "Refund Rate")),),
        {"kpi_refund_analysis": Outcome(derived=frozenset({"periods[].refund_rate_pct"}))},
    ),
    Case(
        "refund-refunded-renamed",
        "`refund_rate`: `Refunded Transactions` named `Refunded`",
        (("revenuecat.chart", rename_measure("refund_rate", "Refunded Transactions", "Refunded")),),
        {"kpi_refund_analysis": EXACT},
    ),
    Case(
        "refund-rate-renamed",
        "`refund_rate`: `Refund Rate` named `Refunds (%)`",
        (("revenuecat.chart", rename_measure("refund_rate", "Refund Rate", "Refunds (%)")),),
        {"kpi_refund_analysis": EXACT},
    ),
    Case(
        "refund-transactions-renamed",
        "`refund_rate`: `Transactions` named `Paid Transactions`",
        (("revenuecat.chart", rename_measure("refund_rate", "Transactions", "Paid Transactions")),),
        {"kpi_refund_analysis": EXACT},
    ),
    Case(
        "revenue-missing",
        "`revenue` chart without `Revenue`",
        (("revenuecat.chart", drop_measure("revenue", "Revenue")),),
        {"kpi_refund_analysis": Outcome(nulled=frozenset({"periods[].revenue", "summary.revenue"}))},
    ),
    Case(
        "charts-array-values",
        "`refund_rate` and `revenue` `values` as rows, cohort in seconds",
        (("revenuecat.chart", array_values()),),
        {
            "kpi_refund_analysis": Outcome(
                loose=frozenset({"periods[].incomplete", "summary"}),
                check="summary_over_all_periods",
                note="rows carry no `incomplete` flag: only the period containing today is incomplete",
            )
        },
    ),
    Case(
        "charts-array-values-ms",
        "`refund_rate` and `revenue` `values` as rows, cohort in milliseconds",
        (("revenuecat.chart", array_values(cohort_ms=True)),),
        {
            "kpi_refund_analysis": Outcome(
                loose=frozenset({"periods[].incomplete", "summary"}),
                check="summary_over_all_periods",
                note="rows carry no `incomplete` flag: only the period containing today is incomplete",
            )
        },
    ),
    Case(
        "subscription-unknown-status",
        "subscriptions with an unknown `status` value",
        (("revenuecat.subscriptions", set_field("items[*].status", "paused_by_store")),),
        {
            "kpi_user_journey": Outcome(kept=frozenset({"revenuecat.subscriptions[{all}].status"})),
            "kpi_refund_analysis": EXACT,
        },
    ),
    Case(
        "subscription-relabelled-web",
        "a renewed App Store subscription served as web billing (`rc_billing`: transactions answer 400)",
        setup=_relabel_store_subscription,
        outcomes={
            "kpi_user_journey": Outcome(
                nulled=frozenset({"revenuecat.subscriptions[{overridden}].renewals"}),
                loose=frozenset({"timeline", "revenuecat.subscriptions[{overridden}].store"}),
                check="renewals_of_others_kept",
            ),
            "kpi_refund_analysis": EXACT,
        },
    ),
    Case(
        "web-billing-customer",
        "a web-billing customer (`rc_billing` / `stripe` subscriptions, transactions answer 400)",
        journey_user=WEB_USER,
        outcomes={
            "kpi_user_journey": Outcome(
                nulled=frozenset({"revenuecat.subscriptions[{web}].renewals"}), check="journey_matches_dataset"
            )
        },
    ),
    Case(
        "lists-one-item-a-page",
        "v2 lists cut to one item a page (client follows `next_page`)",
        tuple((name, page_size(1)) for name in LISTS),
        {"kpi_user_journey": EXACT, "kpi_refund_analysis": EXACT},
    ),
    Case(
        "lists-extra-empty-page",
        "v2 lists with an extra, empty last page",
        tuple((name, extra_empty_page()) for name in LISTS),
        {"kpi_user_journey": EXACT, "kpi_refund_analysis": EXACT},
    ),
    Case(
        "lists-next-page-absent",
        "v2 lists with `next_page` absent (not null) on the last page",
        tuple((name, drop_next_page()) for name in LISTS),
        {"kpi_user_journey": EXACT, "kpi_refund_analysis": EXACT},
    ),
    Case(
        "lists-missing-pages",
        "v2 lists that drop `next_page` before the last page",
        tuple(v for name in LISTS for v in ((name, page_size(1)), (name, drop_next_page()))),
        {
            "kpi_user_journey": Outcome(
                loose=frozenset({"timeline", "revenuecat"}),
                note="later pages are invisible: shorter lists, no warning (undetectable)",
            )
        },
    ),
    Case(
        "anonymous-id",
        "journey of an `$RCAnonymousID:` customer (`$` and `:` in the id)",
        journey_user=ANONYMOUS_USER,
        outcomes={"kpi_user_journey": Outcome(check="journey_matches_dataset")},
    ),
    Case(
        "unknown-odd-id",
        "journey of an unknown id with `/ # ~ ! * = + @ : $` and a pipe",
        journey_user=ODD_UNKNOWN_USER,
        outcomes={"kpi_user_journey": Outcome(status=404, note="unknown to both sources")},
    ),
    Case(
        "invalid-id",
        "journey of an id with a space, `?`, `%` and `é`",
        journey_user=INVALID_USER,
        outcomes={"kpi_user_journey": Outcome(status=422, note="outside the documented id pattern")},
    ),
)


def matrix() -> str:
    """The markdown table: one row per case, one column per operation."""
    head = "| upstream variant | " + " | ".join(SHORT[o] for o in OPERATIONS) + " |"
    rule = "|---|" + "---|" * len(OPERATIONS)
    rows = [
        f"| {case.title} | "
        + " | ".join(case.outcomes[o].cell() if o in case.outcomes else "·" for o in OPERATIONS)
        + " |"
        for case in CASES
    ]
    return "\n".join([head, rule, *rows])


if __name__ == "__main__":
    print(matrix())  # noqa: T201 - the matrix is this module's output
