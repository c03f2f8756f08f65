"""Patrol deadlines with one owner among several workers.

A patrol tag's duty runs on the calendar (:mod:`detectors.patrol`), but its check-ins reach
whichever worker the broker hands them to. So one worker — the one holding the PostgreSQL
session advisory lock :data:`OWNER_LOCK` on its detection connection — owns the deadlines:
it alone holds every tag in memory and ticks them; the others never declare a patrol overdue.
The lock goes with the connection: a worker that dies or loses the database loses it, and
another takes it on its next tick, adopting the tags from their saved states (with the
detector's settling time, as after a restart).

Any worker judges the check-ins it receives, from the tag's saved state, which it reads
locking the row (:func:`lock_states`) and writes back in the same transaction: so a check-in
that arrives after the owner declared the period overdue sees that and closes the event, and
a ``fire_hazard`` is raised by whoever received the check-in.

Before the owner decides a tag (a deadline came, or, every ``recheck_s``, a tag overdue that
may have been checked in elsewhere since), it locks the tags' rows, reads their committed
check-ins newer than what its state knows (:func:`committed_checkins`, one query for all of
them) and feeds them to the tag's detectors in time order, then ticks. Of what the replay
finds only ``patrol_overdue`` hits count (a clear the receiving worker may have sent too is
a no-op for the event); a hazard was raised by the worker that received the check-in.
Because both sides lock the row first, a check-in committed in the same instant as the tick
is either seen by the owner's read (no overdue) or judged after the owner's commit (its
state says overdue, so the check-in closes the event).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import psycopg

from detectors.base import Hit
from detectors.engine import DeviceDetectors, DeviceState
from detectors.patrol import CHECKIN, OVERDUE, PatrolState
from detectors.runtime import DetectionRuntime, Pass
from devices.messages import DeviceEvent
from devices.profiles import DeviceProfile

OWNER_LOCK: Final = 0x6777706174_01
"""Advisory lock (bigint) held, for its session, by the worker that owns patrol deadlines."""
REPLAY_LIMIT: Final = 500
"""Check-ins read per tag and decision; a tag with more waits for the next tick to go on."""

_CHECKINS = """
SELECT t.device_id, e.ts, e.seq, e.detail, e.received_at, e.ts_from_arrival
FROM unnest(%s::text[], %s::timestamptz[]) AS t(device_id, since)
CROSS JOIN LATERAL (
    SELECT d.ts, d.seq, d.detail, d.received_at, d.ts_from_arrival
    FROM device_events d
    WHERE d.device_id = t.device_id AND d.event = %s AND d.kind = 'event'
      AND d.ts > coalesce(t.since, '-infinity')
    ORDER BY d.ts
    LIMIT %s
) AS e
ORDER BY t.device_id, e.ts
"""


class DeadlineOwner:
    """Whether this worker owns patrol deadlines: it holds :data:`OWNER_LOCK` on the
    connection it was last given. A different connection (the old one failed) means the lock
    went with the old one, so it is tried again."""

    def __init__(self, key: int = OWNER_LOCK) -> None:
        self.key = key
        self._conn: psycopg.AsyncConnection | None = None

    @property
    def owned(self) -> bool:
        return self._conn is not None and not self._conn.closed

    async def claim(self, conn: psycopg.AsyncConnection) -> tuple[bool, bool]:
        """(owner now, just became owner). A session lock taken inside a transaction
        outlives its rollback, so this may run in the tick's transaction."""
        if self._conn is conn and not conn.closed:
            return True, False
        self._conn = None
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
        row = await cur.fetchone()
        if row and row[0]:
            self._conn = conn
            return True, True
        return False, False


async def lock_states(conn: psycopg.AsyncConnection, device_ids: list[str]) -> dict[str, bytes]:
    """The saved states of these devices, their rows locked until the transaction ends (in
    one order, so that two workers locking overlapping sets cannot deadlock)."""
    if not device_ids:
        return {}
    cur = await conn.execute(
        "SELECT device_id, state::text FROM detector_state WHERE device_id = ANY(%s)"
        " ORDER BY device_id FOR UPDATE",
        (sorted(device_ids),),
    )
    return {device_id: raw.encode() for device_id, raw in await cur.fetchall()}


async def committed_checkins(
    conn: psycopg.AsyncConnection, since: Mapping[str, float | None], limit: int = REPLAY_LIMIT
) -> dict[str, list[DeviceEvent]]:
    """Each tag's stored check-ins after ``since[tag]`` (None: all), oldest first, at most
    ``limit`` per tag; one query for every tag."""
    if not since:
        return {}
    ids = list(since)
    times = [None if since[d] is None else datetime.fromtimestamp(since[d], UTC) for d in ids]
    cur = await conn.execute(_CHECKINS, (ids, times, CHECKIN, limit))
    out: dict[str, list[DeviceEvent]] = {}
    for device_id, ts, seq, detail, received_at, from_arrival in await cur.fetchall():
        out.setdefault(device_id, []).append(
            DeviceEvent(
                device_id,
                ts.timestamp(),
                seq,
                CHECKIN,
                detail or {},
                received_at.timestamp(),
                from_arrival,
            )
        )
    return out


# -- pure parts ------------------------------------------------------------------------------


def patrol_states(state: DeviceState) -> list[PatrolState]:
    return [s for s in state.detectors.values() if isinstance(s, PatrolState)]


def known_checkin(state: DeviceState) -> float | None:
    """The newest check-in the device's patrol state has taken in (None: none)."""
    times = [s.last_checkin for s in patrol_states(state) if s.last_checkin is not None]
    return max(times) if times else None


def on_duty(state: DeviceState) -> bool:
    """Its duty has begun, so a tick may find a period missed (before that, a tick only
    starts the duty and nothing needs reading first)."""
    return any(s.due_from is not None for s in patrol_states(state))


@dataclass(slots=True)
class Candidates:
    """Tags to decide on this tick: ``due`` (their next wake came) and ``waiting`` (no
    wake: overdue until a check-in, which may have reached another worker)."""

    due: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)

    def ids(self) -> list[str]:
        return [*self.due, *self.waiting]

    def to_read(self, states: Mapping[str, DeviceState]) -> list[str]:
        return [d for d in self.ids() if on_duty(states[d])]


def select(
    engines: Mapping[str, DeviceDetectors],
    states: Mapping[str, DeviceState],
    now: float,
    recheck: bool,
) -> Candidates:
    """Which held tags to decide now; ``recheck`` adds those that wait on a check-in."""
    out = Candidates()
    for device_id, engine in engines.items():
        wake = engine.next_wake(states[device_id])
        if wake is None:
            if recheck:
                out.waiting.append(device_id)
        elif wake <= now:
            out.due.append(device_id)
    return out


def decide(
    engine: DeviceDetectors,
    state: DeviceState,
    checkins: Iterable[DeviceEvent],
    now: float,
    *,
    tick: bool = True,
) -> tuple[DeviceState, list[Hit]]:
    """Take in the committed check-ins (in time order), keeping only their
    ``patrol_overdue`` hits, then let time decide (unless ``tick`` is False)."""
    hits: list[Hit] = []
    for event in sorted(checkins, key=lambda e: e.ts):
        outcome = engine.on_event(state, event, now)
        state = outcome.state
        hits.extend(h for h in outcome.hits if h.type == OVERDUE)
    if tick:
        outcome = engine.on_tick(state, now)
        state = outcome.state
        hits.extend(outcome.hits)
    return state, hits


# -- the owner's tick ------------------------------------------------------------------------


class PatrolDeadlines:
    """The owner's side: decide the held tags whose time came, from committed check-ins."""

    def __init__(self, recheck_s: float = 10.0, replay_limit: int = REPLAY_LIMIT) -> None:
        self.recheck_s = recheck_s
        self.replay_limit = replay_limit
        self._rechecked = float("-inf")
        self.replayed = 0  # check-ins taken in from the database, for tests and figures

    async def judge(
        self,
        conn: psycopg.AsyncConnection,
        runtime: DetectionRuntime,
        profiles: Mapping[str, DeviceProfile],
        now: float,
    ) -> Pass:
        """What time decides for the held scheduled devices (``profiles``); memory is not
        changed (the caller saves the pass in the transaction, then commits it)."""
        recheck = now - self._rechecked >= self.recheck_s
        if recheck:
            self._rechecked = now
        states = runtime.states
        engines = {d: runtime.engine(p) for d, p in profiles.items() if d in states}
        chosen = select(engines, states, now, recheck)
        result = Pass()
        if not chosen.due and not chosen.waiting:
            return result
        read = chosen.to_read(states)
        checkins: dict[str, list[DeviceEvent]] = {}
        if read:
            await lock_states(conn, read)
            checkins = await committed_checkins(
                conn, {d: known_checkin(states[d]) for d in read}, self.replay_limit
            )
        for device_id in chosen.ids():
            state = states[device_id]
            events = checkins.get(device_id, [])
            self.replayed += len(events)
            full = len(events) >= self.replay_limit  # more to read: decide next tick
            new, hits = decide(engines[device_id], state, events, now, tick=not full)
            if new != state:
                result.states[device_id] = new
            result.hits.extend(hits)
        return result
