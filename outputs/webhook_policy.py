"""Pure rules of webhook delivery: who wants which change, and how long to wait after a
failure (exponential backoff with full jitter, or what the receiver's ``Retry-After`` asks)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from ingest.backoff import Backoff
from outputs.log_reader import EventFilter, LogRow


def retry_delay(failures: int, minimum: float, maximum: float, rng: random.Random) -> float:
    """Full-jitter exponential delay after ``failures`` consecutive failures (≥ 1)."""
    attempt = min(max(0, failures - 1), 60)  # 2**60 × minimum is past any maximum
    return Backoff(minimum, maximum, attempt=attempt, rng=rng).next_delay()


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True, slots=True)
class Subscription:
    """What fan-out needs of a subscription."""

    id: int
    start_seq: int
    filter: EventFilter

    def wants(self, row: LogRow) -> bool:
        return row.seq > self.start_seq and self.filter.matches(row)


def optional_set(values: Sequence[str] | None) -> frozenset[str] | None:
    return frozenset(values) if values is not None else None


def fan_out_pairs(rows: Sequence[LogRow], subs: Sequence[Subscription]) -> list[tuple[int, int]]:
    """``(subscription id, seq)`` for every change each subscription wants (pure)."""
    return [(s.id, row.seq) for row in rows for s in subs if s.wants(row)]


@dataclass(frozen=True, slots=True)
class Outcome:
    delivered: bool
    status: int | None
    error: str | None
    duration_ms: float
    retry_after_s: float | None = None
