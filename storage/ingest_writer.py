"""Writes one ingest batch in one transaction: readings, device events, device state and
dead letters, so that a batch is either wholly stored (and then acknowledged to the broker)
or not at all (and then redelivered).

Readings are COPied straight into the readings store inside a savepoint: the common case,
and half the database work of a staging table. When the batch holds a replay (a redelivery
after a crash, a device resending after an outage) the unique key refuses the COPY, the
savepoint is rolled back, and the batch goes through a staging table with
``INSERT … ON CONFLICT DO NOTHING`` instead: stored once, on whichever worker it lands.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
import psycopg

from devices.messages import Accepted, DeviceEvent, Heartbeat, Reading, Rejection, StatusChange

_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS readings_in (
    device_id text, metric text, ts timestamptz, value float8, seq int8,
    received_at timestamptz, ts_from_arrival bool
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS state_in (
    device_id text, last_seen float8, last_ts float8, last_seq int8, last_values jsonb,
    status text, status_at float8, messages int8
) ON COMMIT DELETE ROWS;
"""

_COPY_READINGS = (
    "COPY readings (device_id, metric, ts, value, seq, received_at, ts_from_arrival) FROM STDIN"
)

_MOVE_READINGS = """
INSERT INTO readings (device_id, metric, ts, value, seq, received_at, ts_from_arrival)
SELECT device_id, metric, ts, value, seq, received_at, ts_from_arrival
FROM readings_in
ON CONFLICT DO NOTHING
RETURNING device_id, ts
"""

# Every column only moves forward, so concurrent workers may commit in any order.
_MERGE_STATE = """
INSERT INTO device_state AS s
    (device_id, last_seen, last_ts, last_seq, last_values, status, status_at, messages, updated_at)
SELECT device_id, to_timestamp(last_seen), to_timestamp(last_ts), last_seq, last_values,
       status, to_timestamp(status_at), messages, now()
FROM state_in
ON CONFLICT (device_id) DO UPDATE SET
    last_seen = GREATEST(s.last_seen, EXCLUDED.last_seen),
    last_seq = CASE WHEN EXCLUDED.last_ts >= s.last_ts OR s.last_ts IS NULL
                    THEN COALESCE(EXCLUDED.last_seq, s.last_seq) ELSE s.last_seq END,
    last_values = CASE WHEN EXCLUDED.last_ts >= s.last_ts OR s.last_ts IS NULL
                       THEN s.last_values || EXCLUDED.last_values
                       ELSE EXCLUDED.last_values || s.last_values END,
    last_ts = GREATEST(s.last_ts, EXCLUDED.last_ts),
    status = CASE WHEN EXCLUDED.status_at >= s.status_at OR s.status_at IS NULL
                  THEN COALESCE(EXCLUDED.status, s.status) ELSE s.status END,
    status_at = GREATEST(s.status_at, EXCLUDED.status_at),
    messages = s.messages + EXCLUDED.messages,
    updated_at = now()
"""

_INSERT_EVENT = """
INSERT INTO device_events (device_id, ts, kind, event, seq, detail, received_at, ts_from_arrival)
VALUES (%s, to_timestamp(%s), %s, %s, %s, %s, to_timestamp(%s), %s)
ON CONFLICT DO NOTHING
RETURNING 1
"""

_COUNT_REJECTS = """
INSERT INTO reject_counts AS r (device_id, reason, count, last_at)
VALUES (%s, %s, %s, to_timestamp(%s))
ON CONFLICT (device_id, reason) DO UPDATE SET
    count = r.count + EXCLUDED.count, last_at = GREATEST(r.last_at, EXCLUDED.last_at)
"""


@dataclass(slots=True)
class IngestBatch:
    """What one batch of MQTT messages turned into, sorted by destination."""

    readings: list[Reading] = field(default_factory=list)
    heartbeats: list[Heartbeat] = field(default_factory=list)
    events: list[DeviceEvent] = field(default_factory=list)
    statuses: list[StatusChange] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    duplicates: int = 0

    def __len__(self) -> int:
        return (
            len(self.readings)
            + len(self.heartbeats)
            + len(self.events)
            + len(self.statuses)
            + len(self.rejections)
        )


@dataclass(frozen=True, slots=True)
class WriteResult:
    readings_rows: int  # rows that were new (replays do not count)
    events_rows: int
    dead_letters: int


InTransaction = Callable[[psycopg.AsyncConnection, list[Accepted]], Awaitable[None]]
"""Work that must commit or fail with the batch: given the messages stored for the first
time (replays left out), in arrival order."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _micros(epoch: float) -> int:
    """The one rounding of a device's float timestamp to the store's microseconds.

    Both write paths render timestamps from this integer, so a replay that takes the staging
    path meets exactly the key the direct COPY stored (PostgreSQL's own float conversion can
    round the last microsecond differently).
    """
    return round(epoch * 1_000_000)


def _micros_of(ts: datetime) -> int:
    return (ts - _EPOCH) // _MICROSECOND


class _StateRow:
    __slots__ = (
        "last_seen",
        "last_seq",
        "last_ts",
        "last_values",
        "messages",
        "status",
        "status_at",
    )

    def __init__(self) -> None:
        self.last_seen = 0.0
        self.last_ts: float | None = None
        self.last_seq: int | None = None
        self.last_values: dict[str, float] = {}
        self.status: str | None = None
        self.status_at: float | None = None
        self.messages = 0

    def seen(self, received_at: float, *, new: bool = True) -> None:
        """A message of the device; ``new`` unless it is a replay already stored (a broker
        redelivering what a killed worker had written but not acknowledged): counted once."""
        self.messages += new
        if received_at > self.last_seen:
            self.last_seen = received_at

    def values(self, ts: float, seq: int | None, values: dict[str, float] | object) -> None:
        if self.last_ts is None or ts >= self.last_ts:
            self.last_ts, self.last_seq = ts, seq
            self.last_values.update(values)  # type: ignore[call-overload]
        else:
            for name, value in values.items():  # type: ignore[attr-defined]
                self.last_values.setdefault(name, value)


def _state_rows(
    batch: IngestBatch,
    new_keys: set[tuple[str, int]] | None = None,
    fresh_events: Sequence[DeviceEvent | StatusChange] | None = None,
) -> dict[str, _StateRow]:
    """Per device, what the batch says of its state; replays (readings not in ``new_keys``,
    events and statuses not in ``fresh_events``; None: all new) are not counted again."""
    fresh = None if fresh_events is None else {id(e) for e in fresh_events}
    rows: dict[str, _StateRow] = {}
    for item in (*batch.readings, *batch.heartbeats):
        row = rows.get(item.device_id) or rows.setdefault(item.device_id, _StateRow())
        new = (new_keys is None or not item.values
               or (item.device_id, _micros(item.ts)) in new_keys)
        row.seen(item.received_at, new=new)
        row.values(item.ts, item.seq, item.values)
    for event in batch.events:
        row = rows.get(event.device_id) or rows.setdefault(event.device_id, _StateRow())
        row.seen(event.received_at, new=fresh is None or id(event) in fresh)
    for status in batch.statuses:
        row = rows.get(status.device_id) or rows.setdefault(status.device_id, _StateRow())
        row.seen(status.received_at, new=fresh is None or id(status) in fresh)
        if row.status_at is None or status.ts >= row.status_at:
            row.status, row.status_at = status.status, status.ts
    return rows


def _iso(epoch: float) -> str:
    """ISO 8601 of :func:`_micros` (a batch's timestamps share few seconds: cached)."""
    seconds, fraction = divmod(_micros(epoch), 1_000_000)
    return f"{_utc_second(seconds)}.{fraction:06d}+00:00"


@functools.lru_cache(maxsize=4096)
def _utc_second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def _reading_lines(
    items: Sequence[Reading | Heartbeat]
) -> bytes:
    """COPY text rows, one per metric, with ISO 8601 timestamps rounded by :func:`_micros`
    (the same text for the readings table and the staging table).

    Device ids and metric names are validated to [A-Za-z0-9_.:-] before they get here, so
    COPY text format needs no escaping.
    """
    out: list[str] = []
    for r in items:
        seq = "\\N" if r.seq is None else str(r.seq)
        flag = "t" if r.ts_from_arrival else "f"
        head = f"{r.device_id}\t"
        tail = f"\t{_iso(r.ts)}\t"
        rest = f"\t{seq}\t{_iso(r.received_at)}\t{flag}\n"
        for metric, value in r.values.items():
            out.append(f"{head}{metric}{tail}{value!r}{rest}")
    return "".join(out).encode()


def _fresh(
    batch: IngestBatch,
    new_keys: set[tuple[str, int]] | None,
    fresh_events: list[DeviceEvent | StatusChange],
) -> list[Accepted]:
    """The batch's messages that were stored now for the first time, in arrival order.

    Heartbeats always count (a repeated "I am alive" is harmless to liveness); readings and
    heartbeats' values count when any of their rows was new.
    """

    def new(item: Reading | Heartbeat) -> bool:
        return new_keys is None or (item.device_id, _micros(item.ts)) in new_keys

    kept: list[Accepted] = [r for r in batch.readings if new(r)]
    kept += batch.heartbeats
    kept += fresh_events
    kept.sort(key=lambda m: m.received_at)
    return kept


def _null(value: object) -> str:
    return "\\N" if value is None else repr(value)


def _state_lines(rows: dict[str, _StateRow]) -> bytes:
    out = []
    for device_id, s in rows.items():
        values = orjson.dumps(s.last_values).decode().replace("\\", "\\\\")
        status = "\\N" if s.status is None else s.status
        seq = "\\N" if s.last_seq is None else str(s.last_seq)
        out.append(
            f"{device_id}\t{s.last_seen!r}\t{_null(s.last_ts)}\t{seq}\t{values}\t{status}\t"
            f"{_null(s.status_at)}\t{s.messages}\n"
        )
    return "".join(out).encode()


class IngestWriter:
    """Owns one connection (the staging tables are per session) and writes batches on it."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn
        self._prepared = False
        self.replayed_batches = 0  # batches that held a replay and took the staging path

    async def write(self, batch: IngestBatch, then: InTransaction | None = None) -> WriteResult:
        conn = self.conn
        if not self._prepared:
            await conn.execute(_STAGING)
            await conn.commit()
            self._prepared = True
        readings_rows = events_rows = 0
        async with conn.transaction():
            values_items = [*batch.readings, *(h for h in batch.heartbeats if h.values)]
            new_keys: set[tuple[str, int]] | None = None
            if values_items:
                readings_rows, new_keys = await self._readings(values_items)
            fresh_events: list[DeviceEvent | StatusChange] = []
            if batch.events or batch.statuses:
                params = [
                    (
                        e.device_id,
                        e.ts,
                        "event",
                        e.event,
                        e.seq,
                        orjson.dumps(e.detail).decode(),
                        e.received_at,
                        e.ts_from_arrival,
                    )
                    for e in batch.events
                ] + [
                    (s.device_id, s.ts, "status", s.status, None, "{}", s.received_at, False)
                    for s in batch.statuses
                ]
                async with conn.cursor() as cur:
                    await cur.executemany(_INSERT_EVENT, params, returning=True)
                    for item in (*batch.events, *batch.statuses):
                        if await cur.fetchone() is not None:
                            fresh_events.append(item)
                        cur.nextset()
                events_rows = len(fresh_events)
            states = _state_rows(batch, new_keys, fresh_events)
            if states:
                async with conn.cursor().copy("COPY state_in FROM STDIN") as copy:
                    await copy.write(_state_lines(states))
                await conn.execute(_MERGE_STATE)
            if batch.rejections:
                await self._dead_letters(batch.rejections)
            if then is not None:
                await then(conn, _fresh(batch, new_keys, fresh_events))
        return WriteResult(readings_rows, events_rows, len(batch.rejections))

    async def _readings(
        self, items: list[Reading | Heartbeat]
    ) -> tuple[int, set[tuple[str, int]] | None]:
        """Store readings once; returns how many rows were new and, when some were replays,
        the ``(device_id, ts in µs)`` that were new (None: all were)."""
        conn = self.conn
        try:
            async with conn.transaction(), conn.cursor().copy(_COPY_READINGS) as copy:
                await copy.write(_reading_lines(items))
            return sum(len(r.values) for r in items), None
        except psycopg.errors.UniqueViolation:
            self.replayed_batches += 1
        async with conn.cursor().copy("COPY readings_in FROM STDIN") as copy:
            await copy.write(_reading_lines(items))
        cur = await conn.execute(_MOVE_READINGS)
        new = {(device_id, _micros_of(ts)) for device_id, ts in await cur.fetchall()}
        return cur.rowcount, new

    async def _dead_letters(self, rejections: list[Rejection]) -> None:
        conn = self.conn
        async with conn.cursor().copy(
            "COPY dead_letters (received_at, topic, device_id, reason, detail, payload) FROM STDIN"
        ) as copy:
            for r in rejections:
                await copy.write_row(
                    (
                        _to_dt(r.received_at),
                        r.topic,
                        r.device_id,
                        r.reason.value,
                        r.detail,
                        r.payload,
                    )
                )
        counts: dict[tuple[str, str], tuple[int, float]] = {}
        for r in rejections:
            key = (r.device_id or "", r.reason.value)
            n, last = counts.get(key, (0, 0.0))
            counts[key] = (n + 1, max(last, r.received_at))
        async with conn.cursor() as cur:
            await cur.executemany(
                _COUNT_REJECTS, [(d, reason, n, last) for (d, reason), (n, last) in counts.items()]
            )


def _to_dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
