"""Hands stored messages to detection, inside the batch's transaction.

Per batch: devices this worker has not seen yet are taken over from their saved detector
state; the pass runs; the states of devices that produced hits are saved with the batch,
and the hits go to the sinks (grid events) in the same transaction. Other changed states are
checkpointed periodically, in bulk: after a crash a device's detectors resume from its last
checkpoint, which can cost a timer's progress but never a raised condition (those are saved
with the hit) and never an event (saved with the batch).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import psycopg

from detectors.base import Hit
from detectors.config import DetectorConfigError
from detectors.runtime import DetectionRuntime, Pass
from devices.messages import Accepted
from devices.profiles import DeviceProfile
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
    ) -> None:
        self.runtime = DetectionRuntime()
        self._known = known
        self.sinks = sinks if sinks is not None else []
        self.tick_s = tick_s
        self.checkpoint_s = checkpoint_s
        self._clock = clock
        self._pending: list[Pass] = []
        self._dirty: set[str] = set()
        self._last_tick = 0.0
        self._last_checkpoint = clock()
        self._scheduled_from: Mapping[str, KnownDevice] | None = None
        self.hits = 0

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
    ) -> None:
        if done.hits:
            hit_devices = {h.device_id for h in done.hits}
            await save_states(
                conn,
                (
                    (d, *self.runtime.encode(d, s, profiles[d]))
                    for d, s in done.states.items()
                    if d in hit_devices
                ),
            )
            for sink in self.sinks:
                await sink(conn, done.hits, now)
        self._pending.append(done)

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
        await self._adopt(conn, profiles, now)
        await self._apply(conn, self.runtime.run(fresh, profiles, now), profiles, now)

    def committed(self) -> None:
        for done in self._pending:
            self.runtime.commit(done)
            self._dirty.update(done.states)
            self.hits += len(done.hits)
        self._pending.clear()

    def rolled_back(self) -> None:
        self._pending.clear()

    async def periodic(self, conn: psycopg.AsyncConnection, now: float) -> None:
        """Ticks (hold timers, liveness, flapping) and the bulk checkpoint of states."""
        if now - self._last_tick >= self.tick_s:
            self._last_tick = now
            try:
                async with conn.transaction():
                    await self._adopt_scheduled(conn, now)
                    profiles = self._profiles(set(self.runtime.states))
                    await self._apply(conn, self.runtime.tick(profiles, now), profiles, now)
            except BaseException:
                self.rolled_back()
                raise
            self.committed()
        if self._dirty and now - self._last_checkpoint >= self.checkpoint_s:
            await self.checkpoint(conn)

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
