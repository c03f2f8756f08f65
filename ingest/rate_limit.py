"""A per-device rate limit, so that one device flooding the broker cannot crowd out the rest.

**A token bucket per device, timed by the device's own timestamps.** The usual bucket is
timed by arrival, which would cut exactly the traffic gridwatch must keep: after an outage
a device (or the broker, for gridwatch's persistent session) sends an hour of readings in
a second. Timed by the message's ``ts`` (arrival time only when it carries none), such a
backlog refills the bucket as fast as it was recorded, while a device that really sends
too often has timestamps that advance too slowly and runs dry. A device that lies about
time gains little: timestamps more than ``ingest.max_future_skew_s`` ahead are rejected
before they get here, so faking can buy at most ``rate × skew`` extra messages, once. A
device that sends no timestamps is timed by arrival and can be cut during a backlog larger
than its burst (``ingest.device_burst``): give such devices a larger burst.

**What is dropped is never silent.** It is acknowledged (the device's broker session must
not fill up with it) and not stored; it is counted as ``rate_limited``: per device and
reason in ``reject_counts`` (written in the batch's transaction by :class:`RateLimitStage`),
in the ingest figures, and the first drop of a device in each minute is kept as a dead
letter with the raw bytes, so a person can see what the device was sending.

Memory: one small bucket per device seen; devices are registry entries (the validator
turned away unknown ones before), so it is bounded by the registry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from devices.messages import Accepted, RawMessage, Rejection, RejectReason, StatusChange

#: One dead-letter sample per device per this many seconds (of arrival time).
SAMPLE_EVERY_S = 60.0

_COUNT = """
INSERT INTO reject_counts AS r (device_id, reason, count, last_at)
VALUES (%s, %s, %s, now())
ON CONFLICT (device_id, reason) DO UPDATE SET
    count = r.count + EXCLUDED.count, last_at = GREATEST(r.last_at, EXCLUDED.last_at)
"""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    clock: float  # the newest device time seen
    sampled_at: float = float("-inf")  # arrival time of the last dead-letter sample


class DeviceRateLimiter:
    """``admit(message, raw)`` → None (keep it), or "drop", or a :class:`Rejection` to keep
    as the dead-letter sample of this drop."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate_per_s
        self.burst = float(burst)
        self._buckets: dict[str, _Bucket] = {}
        # Drops not yet counted in the database (the samples are counted by the writer).
        self.pending: Counter[str] = Counter()
        self.dropped = 0

    def admit(self, message: Accepted, raw: RawMessage) -> Rejection | str | None:
        device_id = message.device_id
        now = message.ts if not isinstance(message, StatusChange) else raw.received_at
        bucket = self._buckets.get(device_id)
        if bucket is None:
            bucket = self._buckets[device_id] = _Bucket(self.burst, now)
        elif now > bucket.clock:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.clock) * self.rate)
            bucket.clock = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        self.dropped += 1
        if raw.received_at - bucket.sampled_at >= SAMPLE_EVERY_S:
            bucket.sampled_at = raw.received_at
            return Rejection(
                raw.topic, device_id, raw.payload, RejectReason.RATE_LIMITED,
                f"over {self.rate:g} messages/s (burst {self.burst:g}): this one and any "
                f"more within {SAMPLE_EVERY_S:g} s are dropped, only counted",
                raw.received_at,
            )  # fmt: skip
        self.pending[device_id] += 1
        return "drop"


class RateLimitStage:
    """Counts the limiter's drops in ``reject_counts`` with each batch (pipeline stage)."""

    def __init__(self, limiter: DeviceRateLimiter, on_counted: Callable[[int], None]) -> None:
        self.limiter = limiter
        self._on_counted = on_counted
        self._writing: Counter[str] = Counter()

    async def in_transaction(self, conn: psycopg.AsyncConnection, fresh: list[Accepted]) -> None:
        # The classifier may add drops of the next batch meanwhile: take a snapshot.
        self._writing = Counter(self.limiter.pending)
        if self._writing:
            reason = RejectReason.RATE_LIMITED.value
            async with conn.cursor() as cur:
                await cur.executemany(_COUNT, [(d, reason, n) for d, n in self._writing.items()])

    def committed(self) -> None:
        self.limiter.pending -= self._writing
        counted = sum(self._writing.values())
        self._writing = Counter()
        if counted:
            self._on_counted(counted)

    def rolled_back(self) -> None:
        self._writing = Counter()

    async def periodic(self, conn: psycopg.AsyncConnection, now: float) -> None:
        return None
