"""The one rule for every rate, share and percentage in every result, applied here and nowhere else.

- Unit: percent (0-100, never a fraction 0-1); the field's name ends in `_pct` and its description says "in percent"
  (`tests/shared/test_rates.py` walks every result model so a new operation cannot drift).
- Derivation: from the unrounded counts (or, for a vendor's own rate, its unrounded value), rounded once, here.
- Rounding: `PCT_DECIMALS` (2) decimal places, Python's `round` (half to even on the binary value).
- Undefined (a whole of zero or unknown): None, unless the field documents another value (a funnel step after an
  empty step is 0, as Amplitude reports it).
"""

from __future__ import annotations

from collections.abc import Iterable

PCT_DECIMALS = 2


def pct(part: float | None, whole: float | None) -> float | None:
    """`part / whole` in percent, rounded to `PCT_DECIMALS`; None when undefined (`whole` zero or unknown)."""
    exact = exact_pct(part, whole)
    return None if exact is None else round_pct(exact)


def exact_pct(part: float | None, whole: float | None) -> float | None:
    """`part / whole` in percent, unrounded (to average or sum before rounding once); None when undefined."""
    if part is None or whole is None or whole == 0:
        return None
    return part / whole * 100


def round_pct(value: float | None) -> float | None:
    """A percentage (already in percent, e.g. a vendor's rate) rounded to `PCT_DECIMALS`."""
    return None if value is None else round(value, PCT_DECIMALS)


def mean_pct(values: Iterable[float]) -> float | None:
    """The mean of unrounded percentages, rounded once; None for no values."""
    collected = list(values)
    return round_pct(sum(collected) / len(collected)) if collected else None
