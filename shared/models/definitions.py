"""What each figure means, written once: the result models' field descriptions (so OpenAPI and the MCP output
schemas carry them) and the `provenance[].definition` of every result read these constants.

Every rate, share and percentage is in percent with two decimals, its name ends in `_pct` and its description says
"in percent" (`shared/services/rates.py` computes and rounds them all)."""

from __future__ import annotations

AMPLITUDE_ACTIVE = (
    "Distinct users with at least one event in the period, as Amplitude counts users (user ids and devices merged), "
    "from Amplitude's Users endpoint (`m=active`)."
)
DAU = "Amplitude daily active users: " + AMPLITUDE_ACTIVE[0].lower() + AMPLITUDE_ACTIVE[1:]
MAU_TO_DATE = (
    "Amplitude active users from the first of the month to `as_of`: "
    + AMPLITUDE_ACTIVE[0].lower()
    + (AMPLITUDE_ACTIVE[1:])
)
NEW_USERS = "Users whose first event in the project falls in the period (Amplitude's Users endpoint, `m=new`)."
MAU_MONTH = "Amplitude monthly active users of the calendar month (to today for the current month): " + (
    AMPLITUDE_ACTIVE[0].lower() + AMPLITUDE_ACTIVE[1:]
)
MRR = "Monthly recurring revenue now, in USD: active paid subscriptions normalized to one month (RevenueCat)."
REVENUE_28D = "Gross revenue of the last 28 days in USD, before store fees and taxes (RevenueCat)."
ACTIVE_SUBSCRIPTIONS = (
    "Paid subscriptions giving access now, including cancelled-but-unexpired ones and those in a grace period "
    "(RevenueCat)."
)
ACTIVE_TRIALS = "Trials giving access now (RevenueCat)."
NEW_CUSTOMERS_28D = "App user ids first seen in the last 28 days; aliases count once; may lag 1-2 h (RevenueCat)."
ACTIVE_USERS_28D = (
    "App user ids seen by the RevenueCat SDK in the last 28 days; not comparable with Amplitude MAU (RevenueCat)."
)
FUNNEL = (
    "Amplitude funnel: users who did the first step in the date range, and of them those who went on to do each "
    "next step (in the funnel mode's order) within the conversion window. Conversions are in percent, from the "
    "user counts."
)
STEP_CONVERSION = (
    "Users who reached this step as a share of the previous step's users, in percent (100 for the first step, "
    "0 after a step no user reached)."
)
CUMULATIVE_CONVERSION = (
    "Users who reached this step as a share of the first step's users, in percent (0 when no user did the first step)."
)
OVERALL_CONVERSION = (
    "Users who reached the last step as a share of the first step's users, in percent (0 when no user did the "
    "first step)."
)
TRIAL_CONVERSION_RATE = "Conversions / trials over the complete periods, in percent."
MAU_CHANGE_PCT = "Change from the previous month, in percent of the previous month's active users; null when undefined."
AVERAGE_PERIOD_REFUND_RATE = "Mean of the complete periods' refund rates, in percent (each from its counts)."
SUMMARY_REFUND_RATE = "Over complete periods: refunded / transactions, in percent."
EVENT_TOTALS = (
    "Amplitude event segmentation totals (`m=totals`): how many times the step's event was tracked in the range, "
    "asked only for a funnel step no user reached, to tell a misspelled or untracked event type from a real 0."
)
TRIAL_CONVERSION = (
    "Trials started in the range that converted to a paid subscription, over the periods whose trials have all "
    "ended (RevenueCat `trial_conversion_rate` chart; trials count in the period they started)."
)
REFUND_RATE = (
    "Refunded paid transactions / paid transactions, both counted in the period of the ORIGINAL transaction, in "
    "percent (RevenueCat `refund_rate` chart; trials excluded); past periods can still change."
)
PERIOD_REVENUE = (
    "Revenue of the period's transactions minus refunds of those transactions, in USD (RevenueCat `revenue` chart)."
)
JOURNEY_AMPLITUDE = "The user's Amplitude profile and events (newest first, up to the event limit), by user id."
JOURNEY_REVENUECAT = (
    "The customer's RevenueCat subscriptions with their store transactions (first purchase and renewals) and "
    "one-time purchases; refunds are known for one-time purchases only."
)
CUSTOMER_REFUNDS = (
    "Each given customer's refunded one-time purchases (RevenueCat API v2 exposes no refund state on subscriptions)."
)
