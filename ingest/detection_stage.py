"""Hands stored messages to detection, inside the batch's transaction.

Per batch: devices this worker has not seen yet are taken over from their saved detector
state; the pass runs; the states of devices that produced hits are saved with the batch,
and the hits go to the sinks (grid events) in the same transaction. Other changed states are
checkpointed periodically, in bulk: after a crash a device's detectors resume from its last
checkpoint, which can cost a timer's progress but never a raised condition (those are saved
with the hit) and never an event (saved with the batch).

Devices with a duty on a calendar (patrol tags, ``scheduled`` detectors) are different, because
their check-ins reach any worker while their deadlines must be judged by one: see
:mod:`ingest.patrol_owner`. Their states are read with the row locked and saved in the
transaction of every batch or tick that changes them (never left to the checkpoint); only the
worker that owns patrol deadlines keeps them in memory and ticks them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Set
from typing import Protocol

import psycopg

from detectors.base import Hit
from detectors.config import DetectorConfigError
from detectors.runtime import DetectionRuntime, Pass
from devices.messages import Accepted
from devices.profiles import DeviceProfile
from ingest.patrol_owner import DeadlineOwner, PatrolDeadlines, lock_states
from ingest.validate import KnownDevice
from storage.detector_state import load_states, save_states

log = logging.getLogger(__name__)

HitSink = Callable[[psycopg.AsyncConnection, list[Hit], float], Awaitable[None]]


class Stage(Protocol):
    """Work that runs with every stored batch, in its transaction, and on a timer."""

    async def in_transaction(
        self, conn: psycopg.AsyncConnection, fresh: list[Accepted]
    ) -> None: ...
    def committed(self) -> None: ...
    def rolled_back(self) -> None: ...
    async def periodic(self, conn: psycopg.AsyncConnection, now: float) -> None: ...


class DetectionStage:
    def __init__(
        self,
        known: Callable[[], Mapping[str, KnownDevice]],
        *,
        sinks: list[HitSink] | None = None,
        tick_s: float = 1.0,
        checkpoint_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        patrol_recheck_s: float = 10.0,
    ) -> None:
        self.runtime = DetectionRuntime()
        self._known = known
        self.sinks = sinks if sinks is not None else []
        self.tick_s = tick_s
        self.checkpoint_s = checkpoint_s
        self._clock = clock
        self._pending: list[tuple[Pass, set[str]]] = []  # with the devices saved already
        self._dirty: set[str] = set()
        self._last_tick = 0.0
        self._last_checkpoint = clock()
        self._scheduled_from: Mapping[str, KnownDevice] | None = None
        self.hits = 0
        self.owner = DeadlineOwner()
        self._owner_last = False  # the owner's connection may be gone before a tick notices
        self.deadlines = PatrolDeadlines(recheck_s=patrol_recheck_s)
        self._reloaded: set[str] = set()  # scheduled devices a batch read from the database

    def _profiles(self, device_ids: set[str]) -> dict[str, DeviceProfile]:
        known = self._known()
        return {d: known[d].profile for d in device_ids if d in known}

    async def _adopt(
        self, conn: psycopg.AsyncConnection, profiles: Mapping[str, DeviceProfile], now: float
    ) -> None:
        missing = self.runtime.missing(profiles)
        if missing:
            saved = await load_states(conn, missing)
            self.runtime.adopt({d: profiles[d] for d in missing}, saved, now)

    async def _apply(
        self,
        conn: psycopg.AsyncConnection,
        done: Pass,
        profiles: Mapping[str, DeviceProfile],
        now: float,
        save: Set[str] = frozenset(),
    ) -> None:
        """Save the states of devices with hits (and of those in ``save`` the pass changed)
        with the hits and hand the hits to the sinks; memory follows on :meth:`committed`."""
        saved = {h.device_id for h in done.hits} | (save & done.states.keys())
        if saved:
            await save_states(
                conn,
                (
                    (d, *self.runtime.encode(d, s, profiles[d]))
                    for d, s in done.states.items()
                    if d in saved
                ),
            )
        if done.hits:
            for sink in self.sinks:
                await sink(conn, done.hits, now)
        self._pending.append((done, saved))

    def _scheduled(self, profile: DeviceProfile) -> bool:
        try:
            return self.runtime.engine(profile).scheduled
        except DetectorConfigError:  # its messages fail the same way, and say so
            return False

    async def _reload(
        self, conn: psycopg.AsyncConnection, profiles: Mapping[str, DeviceProfile], now: float
    ) -> None:
        """Read scheduled devices' saved states with their rows locked: another worker (the
        deadline owner, or the one that took their last check-in) may have changed them."""
        saved = await lock_states(conn, sorted(profiles))
        states = self.runtime.states
        for device_id, profile in profiles.items():
            raw = saved.get(device_id)
            engine = self.runtime.engine(profile)
            if raw is not None:
                states[device_id] = engine.decode_state(raw)[0]  # carried on, not resumed
            elif device_id not in states:
                states[device_id] = engine.initial_state(device_id, now)
            self._reloaded.add(device_id)

    def _forget_reloaded(self) -> None:
        """A worker that does not own deadlines keeps no scheduled device in memory: the next
        batch reads it again, and its ticks (and a provisional fork) never see one."""
        if self._reloaded and not self.owner.owned:
            self.runtime.forget(self._reloaded)
        self._reloaded.clear()

    def _drop_scheduled(self) -> None:
        """Ownership changed hands: held scheduled states may be stale; whoever owns the
        deadlines now takes them over from the database."""
        known = self._known()
        self.runtime.forget(
            [d for d in self.runtime.states if d in known and self._scheduled(known[d].profile)]
        )
        self._scheduled_from = None

    async def _adopt_scheduled(self, conn: psycopg.AsyncConnection, now: float) -> None:
        """Devices with a duty on a calendar (patrol tags) are ticked from registration on,
        heard from or not: take them over whenever the registry (re)loads."""
        known = self._known()
        if known is self._scheduled_from:
            return
        waiting: dict[str, DeviceProfile] = {}
        for device_id, device in known.items():
            if device_id in self.runtime.states:
                continue
            try:
                scheduled = self.runtime.engine(device.profile).scheduled
            except DetectorConfigError as exc:  # its messages would fail the same way
                log.error("detectors not built: %s", exc, extra={"device_id": device_id})
                continue
            if scheduled:
                waiting[device_id] = device.profile
        await self._adopt(conn, waiting, now)
        self._scheduled_from = known

    async def in_transaction(self, conn: psycopg.AsyncConnection, fresh: list[Accepted]) -> None:
        now = self._clock()
        profiles = self._profiles({m.device_id for m in fresh})
        scheduled = {d: p for d, p in profiles.items() if self._scheduled(p)}
        if scheduled:
            await self._reload(conn, scheduled, now)
        await self._adopt(conn, profiles, now)
        done = self.runtime.run(fresh, profiles, now)
        await self._apply(conn, done, profiles, now, save=scheduled.keys())

    def committed(self) -> None:
        for done, saved in self._pending:
            self.runtime.commit(done)
            self._dirty.update(d for d in done.states if d not in saved)
            self.hits += len(done.hits)
        self._pending.clear()
        self._forget_reloaded()

    def rolled_back(self) -> None:
        self._pending.clear()
        self._forget_reloaded()

    async def periodic(self, conn: psycopg.AsyncConnection, now: float) -> None:
        """Ticks (hold timers, liveness, flapping; patrol deadlines on the worker that owns
        them) and the bulk checkpoint of states."""
        if now - self._last_tick >= self.tick_s:
            self._last_tick = now
            try:
                async with conn.transaction():
                    await self._tick(conn, now)
            except BaseException:
                self.rolled_back()
                raise
            self.committed()
        if self._dirty and now - self._last_checkpoint >= self.checkpoint_s:
            await self.checkpoint(conn)

    async def _tick(self, conn: psycopg.AsyncConnection, now: float) -> None:
        was_owner, (owner, gained) = self._owner_last, await self.owner.claim(conn)
        self._owner_last = owner
        if gained or (was_owner and not owner):
            self._drop_scheduled()
            if gained:
                log.info("this worker owns patrol deadlines")
            else:
                log.warning("this worker no longer owns patrol deadlines")
        if owner:
            await self._adopt_scheduled(conn, now)
        profiles = self._profiles(set(self.runtime.states))
        scheduled = {d: p for d, p in profiles.items() if self._scheduled(p)}
        if scheduled:
            others = {d: p for d, p in profiles.items() if d not in scheduled}
        else:
            others = profiles
        done = self.runtime.tick(others, now)
        if owner and scheduled:
            judged = await self.deadlines.judge(conn, self.runtime, scheduled, now)
            done.hits.extend(judged.hits)
            done.states.update(judged.states)
        await self._apply(conn, done, profiles, now, save=scheduled.keys())

    async def checkpoint(self, conn: psycopg.AsyncConnection) -> None:
        dirty, self._dirty = self._dirty, set()
        self._last_checkpoint = self._clock()
        profiles = self._profiles(dirty)
        states = self.runtime.states
        try:
            async with conn.transaction():
                await save_states(
                    conn,
                    (
                        (d, *self.runtime.encode(d, states[d], p))
                        for d, p in profiles.items()
                        if d in states
                    ),
                )
        except BaseException:
            self._dirty |= dirty
            raise
        log.debug("detector states checkpointed", extra={"devices": len(dirty)})
