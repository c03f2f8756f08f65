"""When a patrol is due, and which due patrol a check-in does: pure arithmetic on epoch seconds.

A tag's interval cuts time into **periods** aligned to midnight, China time, of a Monday: a
daily tag's periods are the calendar days, a weekly tag's the weeks from Monday, a 12-hour
tag's 00:00–12:00 and 12:00–24:00 (mainland China keeps one offset all year, so a day is
always 24 h). Period ``k`` is ``[start(k), end(k))``; its patrol is **due by**
``deadline(k) = end(k) + grace``.

**Which period a check-in does.** Each check-in does at most one period: the earliest period
not done yet whose window ``[start, deadline)`` holds the check-in's time, else the period it
falls in. With a grace of two hours, a check-in at 01:00 does yesterday's patrol if yesterday
has none yet (late but within grace), and today's otherwise; one check-in never does two
days. A check-in after a period's deadline never does that period: the period was missed.

**Overdue.** A period whose deadline passed without a check-in was missed (``patrol_overdue``);
the next check-in, whatever period it does, ends the overdue condition.

**Duty.** A tag is due from the first period that starts at or after its duty began (its
registration, or the first time the service ticked it): the period it was registered in is
not held against anybody.

Time here is the check-in's own time (device or phone clock) and the caller's ``now``;
nothing reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

CHINA_TZ: Final = timezone(timedelta(hours=8), "CST")
ANCHOR: Final = datetime(2024, 1, 1, tzinfo=CHINA_TZ).timestamp()  # a Monday, 00:00 CST


@dataclass(frozen=True, slots=True)
class Schedule:
    """Periods of ``interval_s`` seconds from ``anchor``; a check-in counts for a period until
    ``grace_s`` after its end."""

    interval_s: float
    grace_s: float = 0.0
    anchor: float = ANCHOR

    def __post_init__(self) -> None:
        if not (math.isfinite(self.interval_s) and self.interval_s > 0):
            raise ValueError(f"interval must be > 0 s, got {self.interval_s}")
        if not (math.isfinite(self.grace_s) and self.grace_s >= 0):
            raise ValueError(f"grace must be ≥ 0 s, got {self.grace_s}")

    def start(self, k: int) -> float:
        return self.anchor + k * self.interval_s

    def end(self, k: int) -> float:
        return self.start(k + 1)

    def deadline(self, k: int) -> float:
        """When period ``k``'s patrol is overdue: its end plus the grace."""
        return self.end(k) + self.grace_s

    def period(self, t: float) -> int:
        """The period holding ``t`` (``start(k) <= t < end(k)``), exact at the boundaries."""
        k = math.floor((t - self.anchor) / self.interval_s)
        while self.start(k) > t:
            k -= 1
        while self.end(k) <= t:
            k += 1
        return k

    def first_due(self, since: float) -> int:
        """The first period starting at or after ``since``: where a duty begun then starts."""
        k = self.period(since)
        return k if self.start(k) == since else k + 1

    def last_decided(self, now: float) -> int:
        """The last period whose deadline is at or before ``now``."""
        return self.period(now - self.grace_s) - 1

    def assign(self, ts: float, next_open: int) -> int:
        """The period a check-in at ``ts`` does, when every period before ``next_open`` is done
        (or no longer due): the earliest open period whose window still holds ``ts``, else
        the period ``ts`` falls in (then below ``next_open``: a period done already)."""
        return min(self.period(ts), max(next_open, self.last_decided(ts) + 1))


@dataclass(frozen=True, slots=True)
class PeriodOutcome:
    """One due period of one tag: done by a check-in (its time and worker), or missed."""

    period: int
    start: float
    end: float
    deadline: float
    done_at: float | None = None
    worker: str | None = None

    @property
    def done(self) -> bool:
        return self.done_at is not None


def evaluate(
    schedule: Schedule,
    checkins: Iterable[tuple[float, str | None]],
    first: int,
    last: int,
) -> list[PeriodOutcome]:
    """Periods ``first`` … ``last`` of one tag, each done or missed, given its check-ins
    ``(time, worker id)`` — in any order; they are taken in time order, as
    :meth:`Schedule.assign` expects. Check-ins before ``first`` (or for periods already done)
    do no period here; periods before ``first`` count as done."""
    done: dict[int, tuple[float, str | None]] = {}
    next_open = first
    for ts, worker in sorted(checkins, key=lambda c: c[0]):
        k = schedule.assign(ts, next_open)
        if k < next_open or k > last:
            continue
        done[k] = (ts, worker)
        next_open = k + 1
    out = []
    for k in range(first, last + 1):
        at, worker = done.get(k, (None, None))
        out.append(
            PeriodOutcome(k, schedule.start(k), schedule.end(k), schedule.deadline(k), at, worker)
        )
    return out


def iso(ts: float) -> str:
    """Epoch seconds as RFC 3339 in China time, as evidence shows times to people."""
    return datetime.fromtimestamp(ts, UTC).astimezone(CHINA_TZ).isoformat()
