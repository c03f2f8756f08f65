"""Reading the change log (``event_log``) in ``seq`` order, without ever skipping a row.

``seq`` is taken when a transaction inserts its row, not when it commits, so rows become
visible out of order: a reader that has handed on seq 6 must not later find seq 5. Two
rules together make the order safe:

1. **The xmin rule** (storage/migrations/0003_events.sql): a row is handed on only when its
   transaction ``tx`` is older than every transaction still running
   (``tx < pg_snapshot_xmin(pg_current_snapshot())``). The set of such rows never grows
   later, whatever commits next.
2. **Gaps wait.** The xmin rule alone does not order by ``seq``: transaction A (xid 100)
   inserts seq 5 and stays open while B (xid 98, which got its xid earlier, from its first
   write) inserts seq 6 and commits; 98 < xmin = 100, so seq 6 passes rule 1 while seq 5 is
   still invisible. So a missing ``seq`` below a visible row stops the reader until every
   transaction that could hold it has ended: when it first sees the gap the reader takes a
   fresh xid ``H`` (``pg_current_xact_id()`` in a transaction of its own; xids are handed
   out in order, so the holder's, taken before its ``seq``, is below ``H``) and waits until
   ``xmin >= H``. The gap is then either filled (read it, in order) or final (a rolled-back
   insert: skip it). A snapshot's ``xmax`` would not do as ``H``: it is the latest
   *completed* xid + 1, and a transaction still running may hold a larger one (it then
   shows in neither ``xip`` nor ``xmin``). This relies on the writer having its xid before
   it takes its ``seq``, which holds because ``storage.events.log_change`` always follows
   the event's own UPDATE/INSERT in the same transaction. Gaps are rare (a rolled-back
   batch, a conflict between workers), so the xid this costs is too.

Rule 2 is what guarantees the order; rule 1 is kept as the schema asks (``strict_xmin``),
at the price of waiting out any older write transaction still open (a long registry
import delays outputs until it commits).

Waiting is on ``LISTEN gridwatch_events`` (a :class:`ChangeListener` on its own
connection) with a timeout, so a missed notification costs at most that timeout; while
the reader stands at an unsettled row it polls briefly instead (nothing notifies when an
unrelated transaction ends).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from ingest.backoff import Backoff
from storage.events import EVENTS_CHANNEL

log = logging.getLogger(__name__)

CHANGE_TYPES = frozenset({"opened", "updated", "state_changed", "escalated", "closed"})
SEVERITIES = ("red", "orange", "yellow", "blue")  # most severe first

# The columns of a LogRow, from ``event_log`` aliased ``l``.
ROW_COLUMNS = sql.SQL(
    "l.seq, l.tx::text::bigint, l.event_id, l.change, l.at, l.grid_code, l.ancestors,"
    " l.severity, coalesce(l.payload->>'category', ''), l.payload::text"
)

# One statement, one snapshot: the snapshot's bounds come back with the rows it sees.
_READ = sql.SQL(
    "WITH s AS (SELECT pg_current_snapshot() AS snap)"
    " SELECT pg_snapshot_xmin(s.snap)::text::bigint, {}"
    " FROM s LEFT JOIN LATERAL"
    " (SELECT * FROM event_log WHERE seq > %s ORDER BY seq LIMIT %s) l ON true"
    " ORDER BY l.seq"
).format(ROW_COLUMNS)

_HEAD = "SELECT coalesce(max(seq), 0) FROM event_log"
_XMIN = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
_NEW_XID = "SELECT pg_current_xact_id()::text::bigint"


@dataclass(frozen=True, slots=True)
class LogRow:
    """One ``event_log`` row; ``payload`` is the grid event as JSON text (UTF-8 bytes)."""

    seq: int
    tx: int
    event_id: str
    change: str
    at: datetime
    grid_code: str | None
    ancestors: tuple[str, ...]
    severity: str
    category: str
    payload: bytes

    @classmethod
    def from_record(cls, record: Sequence[Any]) -> LogRow:
        seq, tx, event_id, change, at, grid_code, ancestors, severity, category, payload = record
        return cls(
            seq=int(seq),
            tx=int(tx),
            event_id=event_id,
            change=change,
            at=at,
            grid_code=grid_code,
            ancestors=tuple(ancestors or ()),
            severity=severity,
            category=category,
            payload=payload.encode() if isinstance(payload, str) else bytes(payload),
        )

    def in_subtree(self, grid: str) -> bool:
        """Whether the event lies in ``grid`` or below it."""
        return self.grid_code == grid or grid in self.ancestors


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which changes a consumer wants; ``None`` means any."""

    grid: str | None = None
    severities: frozenset[str] | None = None
    categories: frozenset[str] | None = None
    changes: frozenset[str] | None = None

    def matches(self, row: LogRow) -> bool:
        return (
            (self.grid is None or row.in_subtree(self.grid))
            and (self.severities is None or row.severity in self.severities)
            and (self.categories is None or row.category in self.categories)
            and (self.changes is None or row.change in self.changes)
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the reader needs of a PostgreSQL snapshot: every xid below ``xmin`` has ended
    (and no transaction running then or later has one)."""

    xmin: int


@dataclass(slots=True)
class Settler:
    """Decides which rows read after a cursor may be handed on (pure; see the module doc).

    ``upto`` is the highest ``seq`` visible when a gap was first seen (None: no gap to wait
    on); ``horizon`` an xid handed out after that sighting (the caller fetches one when
    :attr:`needs_horizon`). Once ``xmin >= horizon`` every gap at or below ``upto`` is final.
    """

    strict_xmin: bool = True
    upto: int | None = None
    horizon: int | None = None

    @property
    def needs_horizon(self) -> bool:
        return self.upto is not None and self.horizon is None

    def settle(
        self, after: int, rows: Sequence[LogRow], snap: Snapshot
    ) -> tuple[list[LogRow], bool]:
        """The rows (in ``seq`` order, all with ``seq > after``) that may go now, and whether
        reading stopped at something not settled yet (look again soon: no NOTIFY will come
        when the transaction it waits for ends)."""
        out: list[LogRow] = []
        expected = after + 1
        gaps_final = self.horizon is not None and snap.xmin >= self.horizon
        blocked = False
        for row in rows:
            if self.strict_xmin and row.tx >= snap.xmin:
                blocked = True
                break
            if row.seq != expected:
                if self.upto is None or (gaps_final and row.seq > self.upto):
                    self.upto, self.horizon, gaps_final = rows[-1].seq, None, False
                if not (gaps_final and row.seq <= self.upto):
                    blocked = True
                    break
            out.append(row)
            expected = row.seq + 1
        if self.upto is not None and expected - 1 >= self.upto:
            self.upto = self.horizon = None
        return out, blocked


@dataclass(frozen=True, slots=True)
class ReadResult:
    rows: list[LogRow]
    pending: bool  # stopped at an unsettled row or gap


@dataclass(slots=True)
class LogReader:
    """Reads the change log after a cursor, in order, a batch at a time. One per consumer
    (it remembers the gap it is waiting on); the connection should be in autocommit so that
    every read takes a fresh snapshot."""

    batch: int = 500
    strict_xmin: bool = True
    settle_poll_s: float = 0.01
    settler: Settler = field(init=False)

    def __post_init__(self) -> None:
        self.settler = Settler(strict_xmin=self.strict_xmin)

    async def read(self, conn: psycopg.AsyncConnection, after: int) -> ReadResult:
        ready, pending = await self._read(conn, after)
        if self.settler.needs_horizon:
            self.settler.horizon = await _scalar(conn, _NEW_XID)
            if not ready:  # with nothing older still running, the gap is final already
                ready, pending = await self._read(conn, after)
        return ReadResult(ready, pending)

    async def _read(self, conn: psycopg.AsyncConnection, after: int) -> tuple[list[LogRow], bool]:
        cur = await conn.execute(_READ, (after, self.batch))
        records = await cur.fetchall()
        snap = Snapshot(int(records[0][0]))
        rows = [LogRow.from_record(r[1:]) for r in records if r[1] is not None]
        return self.settler.settle(after, rows, snap)

    async def next_batch(
        self,
        conn: psycopg.AsyncConnection,
        listener: ChangeListener,
        after: int,
        *,
        within: float,
    ) -> list[LogRow]:
        """The next rows after ``after`` as soon as there are any; ``[]`` after ``within`` s."""
        deadline = time.monotonic() + within
        while True:
            mark = listener.mark()
            result = await self.read(conn, after)
            if result.rows:
                return result.rows
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            if result.pending:
                await asyncio.sleep(min(self.settle_poll_s, remaining))
            else:
                await listener.wait(mark, remaining)

    async def settled_head(self, conn: psycopg.AsyncConnection, *, within: float = 30.0) -> int:
        """The highest ``seq`` below which nothing can appear any more: the log's head once
        every transaction that could hold a lower ``seq`` has ended. Where a new consumer
        starts."""
        head = await _scalar(conn, _HEAD)
        horizon = await _scalar(conn, _NEW_XID)
        async with asyncio.timeout(within):
            while True:  # nothing notifies when an unrelated transaction ends: look again
                if await _scalar(conn, _XMIN) >= horizon:
                    return head
                await asyncio.sleep(self.settle_poll_s)


async def _scalar(conn: psycopg.AsyncConnection, query: str) -> int:
    cur = await conn.execute(query)
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def fetch_range(
    conn: psycopg.AsyncConnection,
    after: int,
    upto: int,
    *,
    grid: str | None = None,
    severities: Iterable[str] | None = None,
    limit: int = 500,
) -> list[LogRow]:
    """Rows with ``after < seq <= upto`` in order (``upto`` must be settled: a position some
    reader has reached), narrowed in SQL by subtree and severity."""
    where = [sql.SQL("l.seq > %s"), sql.SQL("l.seq <= %s")]
    params: list[Any] = [after, upto]
    if grid is not None:
        where.append(sql.SQL("(l.grid_code = %s OR %s = ANY(l.ancestors))"))
        params += [grid, grid]
    if severities is not None:
        where.append(sql.SQL("l.severity = ANY(%s)"))
        params.append(list(severities))
    query = sql.SQL("SELECT {} FROM event_log l WHERE {} ORDER BY l.seq LIMIT %s").format(
        ROW_COLUMNS, sql.SQL(" AND ").join(where)
    )
    cur = await conn.execute(query, [*params, limit])
    return [LogRow.from_record(r) for r in await cur.fetchall()]


class ChangeListener:
    """``LISTEN`` on its own connection; wakes whoever waits when a notification arrives.

    Use :meth:`mark` before reading and :meth:`wait` after: a notification that arrived in
    between is not lost. A reconnect also counts as a wake-up (notifications sent while the
    connection was down are gone).
    """

    def __init__(
        self,
        conninfo: str,
        channels: Sequence[str] = (EVENTS_CHANNEL,),
        *,
        backoff: Backoff | None = None,
        connect_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.channels = tuple(channels)
        self.connected = asyncio.Event()
        self.latest: dict[str, str] = {}
        self._backoff = backoff or Backoff(0.2, 5.0)
        self._connect_kwargs = connect_kwargs or {}
        self._generation = 0
        self._changed = asyncio.Event()

    def mark(self) -> int:
        return self._generation

    async def wait(self, mark: int, within: float | None) -> bool:
        """True when something arrived since ``mark``; False after ``within`` seconds."""
        if self._generation != mark:
            return True
        event = self._changed
        try:
            async with asyncio.timeout(within):
                await event.wait()
        except TimeoutError:
            return False
        return True

    def poke(self) -> None:
        """Wake the waiters from this process (e.g. a local worker freed a slot)."""
        self._wake()

    def _wake(self) -> None:
        self._generation += 1
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff."""
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.conninfo, **{**self._connect_kwargs, "autocommit": True}
                )
                async with conn:
                    for channel in self.channels:
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self._backoff.reset()
                    self.connected.set()
                    self._wake()
                    async for notify in conn.notifies():
                        self.latest[notify.channel] = notify.payload
                        self._wake()
            except psycopg.Error as exc:
                self.connected.clear()
                delay = self._backoff.next_delay()
                log.warning("change listener lost the database: %s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
            finally:
                self.connected.clear()
