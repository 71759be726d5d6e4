"""What a result says about its figures: which are missing and why (`warnings`), and where each group came from
(`provenance`). An optional part of an upstream answer that is missing, renamed or unusable costs the figures that
depend on it (null and a warning naming them), never the whole operation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Generic, TypeVar

from shared.errors import Source
from shared.models import kpi as m
from shared.provenance import recording

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class MissingFigure(Exception):
    """A figure cannot be read from the upstream answer; `reason` says why in plain words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Fetched(Generic[T_co]):
    """An upstream answer with the requests that produced it and when it was read."""

    value: T_co
    requests: list[str]
    fetched_at: datetime


async def fetch(call: Callable[[], Awaitable[T]], clock: Callable[[], datetime]) -> Fetched[T]:
    """Run one upstream call (or a few behind one figure group), recording its requests."""
    with recording() as requests:
        value = await call()
    return Fetched(value, list(requests), clock())


@dataclass
class Notes:
    """The warnings and provenance of one result (or of one branch of it, merged in a fixed order)."""

    warnings: list[m.FigureWarning] = field(default_factory=list[m.FigureWarning])
    provenance: list[m.Provenance] = field(default_factory=list[m.Provenance])
    checks_failed: bool = False
    """An optional check that could have added a warning did not run: the answer is cached only briefly."""

    def missing(self, figure: str, source: Source, reason: str) -> None:
        """Record that `figure` is null (or derived) and why."""
        self.warnings.append(m.FigureWarning(figure=figure, source=source, reason=reason))

    def suspect(self, figure: str, source: Source, reason: str) -> None:
        """Record that `figure` was given but is likely a mistake in the question (a misspelled event type, say):
        the same warning entry as `missing`, under the name that says what it is."""
        self.missing(figure, source, reason)

    def read(self, figure: str, source: Source, read: Callable[[], T]) -> T | None:
        """`read()`, or None with a warning when the upstream answer lacks what it needs."""
        try:
            return read()
        except MissingFigure as missing:
            self.missing(figure, source, missing.reason)
            return None

    def cite(
        self,
        figures: Sequence[str],
        source: Source,
        fetched: Fetched[object] | Sequence[Fetched[object]],
        *,
        period: tuple[date | None, date | None],
        basis: m.PeriodBasis,
        definition: str,
        upstream_updated_at: datetime | None = None,
    ) -> None:
        """Say where `figures` came from: the upstream answers `fetched`, the period they cover and what they mean."""
        answers = [fetched] if isinstance(fetched, Fetched) else list(fetched)
        self.provenance.append(
            m.Provenance(
                figures=list(figures),
                source=source,
                requests=[request for answer in answers for request in answer.requests],
                period_start=period[0],
                period_end=period[1],
                period_basis=basis,
                definition=definition,
                fetched_at=max(answer.fetched_at for answer in answers),
                upstream_updated_at=upstream_updated_at,
            )
        )

    def extend(self, other: Notes) -> None:
        self.warnings += other.warnings
        self.provenance += other.provenance
