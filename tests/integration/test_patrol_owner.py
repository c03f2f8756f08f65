"""Patrol deadlines with one owner, at the detection stage, on the real PostgreSQL: two stages
on two connections stand for two workers. The one that ticks first owns the deadlines (the
other never raises ``patrol_overdue``); a check-in the other worker is committing while the
owner's deadline comes is waited for, not declared overdue; a check-in that comes while the
owner is declaring the period overdue is judged after it and closes it; the owner learns of
check-ins judged elsewhere and goes on with the next periods; when the owner's connection
goes, the other worker takes over."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
import pytest

from detectors.base import CLEARED, RAISED, Hit
from detectors.patrol import PatrolState
from devices.messages import DeviceEvent
from devices.profiles import get_profile
from ingest.detection_stage import DetectionStage
from ingest.patrol_owner import OWNER_LOCK
from ingest.validate import KnownDevice

pytestmark = pytest.mark.integration

TAG = "PT-RACE"
INTERVAL, GRACE = 2.0, 1.0
PROFILE = get_profile("patrol_tag").with_overrides(
    {"patrol_interval": "PT2S", "detectors": {"patrol": {"grace": "PT1S", "settle_s": 0}}}
)
KNOWN = {TAG: KnownDevice(TAG, PROFILE, None)}  # type: ignore[arg-type]


class Worker:
    """A detection stage on its own connection, recording the hits it hands on; a sink can
    be held (the tick's transaction stays open) until ``release`` is set."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn
        self.now = 0.0
        self.hits: list[Hit] = []
        self.hold_on_raise = False
        self.raised = asyncio.Event()
        self.release = asyncio.Event()
        self.stage = DetectionStage(
            lambda: KNOWN, sinks=[self._sink], tick_s=0.0, clock=lambda: self.now
        )

    async def _sink(self, _conn: psycopg.AsyncConnection, hits: list[Hit], _now: float) -> None:
        self.hits.extend(hits)
        if any(h.raised and h.type == "patrol_overdue" for h in hits):
            self.raised.set()
            if self.hold_on_raise:
                await self.release.wait()

    def overdue(self, phase: str) -> list[Hit]:
        return [h for h in self.hits if h.type == "patrol_overdue" and h.phase == phase]

    async def tick(self, now: float) -> None:
        self.now = now
        await self.stage.periodic(self.conn, now)

    async def checkin(self, ts: float, then: Callable[[], Awaitable[Any]] | None = None) -> None:
        """Store a check-in and judge it in one transaction, as ingest does; ``then`` runs
        before the commit."""
        self.now = ts
        event = DeviceEvent(TAG, ts, None, "checkin", {"worker_id": "m1"}, ts)
        try:
            async with self.conn.transaction():
                await self.conn.execute(
                    "INSERT INTO device_events (device_id, ts, kind, event, detail, received_at)"
                    " VALUES (%s, %s, 'event', 'checkin', %s, %s)",
                    (TAG, _at(ts), orjson.dumps(event.detail).decode(), _at(ts)),
                )
                await self.stage.in_transaction(self.conn, [event])
                if then is not None:
                    await then()
        except BaseException:
            self.stage.rolled_back()
            raise
        self.stage.committed()

    def state(self) -> PatrolState:
        return self.stage.runtime.states[TAG].detectors["patrol"]


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


async def _until(predicate: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Wait for a condition of the database's lock table, which tells nobody when it changes."""
    async with asyncio.timeout(within):
        while not await predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_one_owner_judges_deadlines_from_committed_checkins(database: str) -> None:
    connect = psycopg.AsyncConnection.connect
    async with (
        await connect(database, autocommit=True) as conn_o,
        await connect(database, autocommit=True) as conn_n,
        await connect(database, autocommit=True) as watcher,
    ):
        owner, other = Worker(conn_o), Worker(conn_n)

        async def blocked_on_a_lock() -> bool:
            cur = await watcher.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
            return (await cur.fetchone())[0] > 0

        t0 = 1_900_000_000.25
        await owner.tick(t0)  # takes the lock, starts the tag's duty and saves it
        await other.tick(t0)
        assert owner.stage.owner.owned and not other.stage.owner.owned
        assert TAG not in other.stage.runtime.states
        schedule = owner.stage.runtime.engine(PROFILE).by_key["patrol"].schedule
        k = schedule.first_due(t0)

        # 1. the other worker is committing a check-in for period k when its deadline comes:
        # the owner waits for the row, reads the check-in and declares nothing
        async def owner_ticks_meanwhile() -> None:
            tick = asyncio.create_task(owner.tick(schedule.deadline(k) + 0.1))
            await _until(blocked_on_a_lock)
            assert not tick.done()
            owner.pending = tick  # type: ignore[attr-defined]

        await other.checkin(schedule.start(k) + 0.5, then=owner_ticks_meanwhile)
        await owner.pending  # type: ignore[attr-defined]
        assert owner.overdue(RAISED) == [] and other.overdue(RAISED) == []
        assert owner.state().done_until == schedule.end(k)
        assert TAG not in other.stage.runtime.states  # read again with every batch

        # 2. nobody checks in during k+1: the owner raises at its deadline, and a check-in
        # the other worker takes while that transaction is open is judged after it: it sees
        # the period overdue and clears it
        owner.hold_on_raise = True
        tick = asyncio.create_task(owner.tick(schedule.deadline(k + 1) + 0.1))
        await asyncio.wait_for(owner.raised.wait(), 10)
        late = asyncio.create_task(other.checkin(schedule.deadline(k + 1) + 0.2))
        await _until(blocked_on_a_lock)
        owner.release.set()
        await tick
        await late
        assert [h.ts for h in owner.overdue(RAISED)] == [schedule.deadline(k + 1)]
        assert len(other.overdue(CLEARED)) == 1 and other.overdue(RAISED) == []
        assert owner.state().overdue_at is not None  # the owner has not seen it yet

        # 3. the owner's recheck of overdue tags reads that check-in and goes on: the next
        # period nobody does is declared overdue again, by the owner alone
        owner.hold_on_raise = False
        owner.stage.deadlines.recheck_s = 0.0
        k3 = schedule.period(schedule.deadline(k + 1) + 0.2) + 1
        await owner.tick(schedule.deadline(k3) - 0.5)
        assert owner.state().overdue_at is None and owner.stage.deadlines.replayed >= 1
        await owner.tick(schedule.deadline(k3) + 0.1)
        await other.tick(schedule.deadline(k3) + 0.1)
        assert [h.ts for h in owner.overdue(RAISED)][-1] == schedule.deadline(k3)
        assert other.overdue(RAISED) == []

        # 4. the owner's connection goes: the other worker takes the deadlines over, from
        # the saved state (overdue since k3: nothing new to raise until a check-in)
        await conn_o.close()
        await _until(lambda: _lock_free(watcher))
        await other.tick(schedule.deadline(k3) + 0.2)
        assert other.stage.owner.owned
        assert other.state().overdue_at == schedule.deadline(k3)
        await other.checkin(schedule.deadline(k3) + 0.3)
        assert len(other.overdue(CLEARED)) == 2
        k5 = schedule.period(schedule.deadline(k3) + 0.3) + 1
        await other.tick(schedule.deadline(k5) + 0.1)
        assert [h.ts for h in other.overdue(RAISED)] == [schedule.deadline(k5)]


async def _lock_free(conn: psycopg.AsyncConnection) -> bool:
    cur = await conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s",
        (OWNER_LOCK & 0xFFFFFFFF,),
    )
    return (await cur.fetchone())[0] == 0
