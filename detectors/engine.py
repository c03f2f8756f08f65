"""One device's detectors as a pure engine: messages and ticks in, hits and the next state out.

Build a :class:`DeviceDetectors` once per distinct profile (type + overrides; it is immutable
and shared by every device with that profile), keep one :class:`DeviceState` per device, and
feed each accepted message through :meth:`DeviceDetectors.on_message` (or the typed methods)
and the time through :meth:`DeviceDetectors.on_tick`. Every call returns an :class:`Outcome`:
the device's next state and the hits, in order.

Order and time (device clocks are wrong, messages come late, twice, out of order):

* Readings are judged in device time. A reading older than the newest one seen from the device
  is *late*: it is still proof of life (liveness) but reaches no reading detector, so it cannot
  move a hold timer backwards, start or confirm a trend, or teach the baseline; ingest has
  stored it, so history keeps it. ``Outcome.late`` says so, for counting.
* A reading with the same time as the newest is not late; detectors count a timestamp once,
  so a duplicate is harmless.
* ``clock.reset_after`` readings in a row, each late by more than ``clock.jump_s``, mean the
  device clock jumped back (a reset, an NTP correction): detectors drop timers and windows but
  keep open conditions, and the engine follows the new time line (``Outcome.rebased``).
* A gap longer than a trend's window is never a rate (see :mod:`detectors.trend`).
* Device events are not dropped for being late (a late fire alarm is still a fire alarm);
  :mod:`detectors.device_events` orders them per condition. Liveness and flapping run on the
  caller's clock (``now``, ``received_at``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from detectors.base import (
    EventDetector,
    Hit,
    HitFilter,
    Hits,
    PresenceDetector,
    ReadingDetector,
    TickDetector,
)
from detectors.config import ClockConfig, build, resolve
from devices.messages import Accepted, DeviceEvent, Heartbeat, Reading, StatusChange
from devices.profiles import DeviceProfile


class DeviceState(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """All a device's detectors remember: the newest device time of its readings, the run of
    far-late readings (clock reset), and each detector's state by key. Persist it with
    :meth:`DeviceDetectors.encode_state`; it is all that is needed to resume after a restart."""

    device_id: str
    newest_ts: float | None = None
    late_run: int = 0
    detectors: dict[str, Any] = msgspec.field(default_factory=dict)


class _StoredState(msgspec.Struct, frozen=True):
    device_id: str
    newest_ts: float | None = None
    late_run: int = 0
    detectors: dict[str, msgspec.Raw] = msgspec.field(default_factory=dict)


class Outcome(msgspec.Struct, frozen=True, gc=False):
    """The device's next state and the hits, in order. ``late``: the reading was older than the
    newest seen and reached no reading detector. ``rebased``: the device clock was taken to
    have jumped back and detectors re-anchored."""

    state: DeviceState
    hits: Hits = ()
    late: bool = False
    rebased: bool = False


_STORED = msgspec.json.Decoder(_StoredState)
_ENCODER = msgspec.json.Encoder()


class DeviceDetectors:
    """The detectors of one profile; pure, immutable, shareable across devices and threads."""

    def __init__(self, detectors: Iterable[Any], clock: ClockConfig | None = None) -> None:
        self.detectors = tuple(detectors)
        self.clock = clock or ClockConfig.model_validate({})
        self.by_key = {d.key: d for d in self.detectors}
        if len(self.by_key) != len(self.detectors):
            raise ValueError("two detectors share a key")
        self._presence = tuple(d for d in self.detectors if isinstance(d, PresenceDetector))
        self._filters = tuple(d for d in self.detectors if isinstance(d, HitFilter))
        special = set(self._presence) | set(self._filters)
        self._readers = tuple(d for d in self.detectors if isinstance(d, ReadingDetector))
        self._eventers = tuple(d for d in self.detectors if isinstance(d, EventDetector))
        self._tickers = tuple(
            d for d in self.detectors if isinstance(d, TickDetector) and d not in special
        )
        self._decoders = {d.key: msgspec.json.Decoder(d.state_type) for d in self.detectors}
        # Detectors with duties on a calendar (patrols) tick from registration on, whether or
        # not the device was ever heard from: the caller adopts such devices without a message.
        self.scheduled = any(getattr(d, "scheduled", False) for d in self.detectors)

    @classmethod
    def for_profile(cls, profile: DeviceProfile) -> DeviceDetectors:
        """Resolve and build from a device's profile (type profile ``with_overrides``); raises
        :class:`~detectors.config.DetectorConfigError` naming a bad key."""
        resolved = resolve(profile)
        return cls(build(profile, resolved), resolved.clock)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.by_key)

    # -- state -------------------------------------------------------------------------------

    def initial_state(self, device_id: str, now: float) -> DeviceState:
        """A device seen for the first time; liveness counts its grace period from ``now``."""
        dets: dict[str, Any] = {}
        for d in self._presence:
            dets[d.key] = d.on_tick(device_id, d.initial_state(), now)[0]
        return DeviceState(device_id, detectors=dets)

    def encode_state(self, state: DeviceState) -> bytes:
        return _ENCODER.encode(state)

    def decode_state(self, raw: bytes) -> tuple[DeviceState, list[str]]:
        """A persisted state, and the detector keys whose saved state was dropped (detector no
        longer configured, or its state no longer readable); those start afresh."""
        stored = _STORED.decode(raw)
        dets: dict[str, Any] = {}
        dropped: list[str] = []
        for key, blob in stored.detectors.items():
            decoder = self._decoders.get(key)
            if decoder is None:
                dropped.append(key)
                continue
            try:
                dets[key] = decoder.decode(blob)
            except (msgspec.ValidationError, msgspec.DecodeError):
                dropped.append(key)
        return DeviceState(stored.device_id, stored.newest_ts, stored.late_run, dets), dropped

    # -- messages ----------------------------------------------------------------------------

    def on_message(self, state: DeviceState, message: Accepted, now: float) -> Outcome:
        if isinstance(message, Reading):
            return self.on_reading(state, message, now)
        if isinstance(message, DeviceEvent):
            return self.on_event(state, message, now)
        if isinstance(message, Heartbeat):
            return self.on_heartbeat(state, message, now)
        return self.on_status(state, message, now)

    def on_reading(self, state: DeviceState, reading: Reading, now: float) -> Outcome:
        dets = state.detectors
        ts = reading.ts
        newest = state.newest_ts
        late = rebased = False
        late_run = 0
        if newest is not None and ts < newest:
            if newest - ts > self.clock.jump_s:
                late_run = state.late_run + 1
            if late_run >= self.clock.reset_after:
                rebased, late_run, newest = True, 0, None
                dets = {k: self.by_key[k].rebase(s) for k, s in dets.items() if k in self.by_key}
            else:
                late = True
        changed: dict[str, Any] = {}
        hits: list[Hit] = []
        for p in self._presence:  # inlined: runs for every reading
            key = p.key
            s = dets.get(key)
            ns, h = p.on_heard(
                reading.device_id, reading.received_at, p.initial_state() if s is None else s, now
            )
            if ns is not s:
                changed[key] = ns
            if h:
                hits.extend(h)
        if not late:
            for r in self._readers:
                key = r.key
                s = dets.get(key)
                if s is None:
                    s = r.initial_state()
                ns, h = r.on_reading(reading, s, now)
                if ns is not s:
                    changed[key] = ns
                if h:
                    hits.extend(h)
        if newest is None or ts > newest:
            newest = ts
        return self._finish(state, dets, changed, hits, now, newest, late_run, late, rebased)

    def on_heartbeat(self, state: DeviceState, heartbeat: Heartbeat, now: float) -> Outcome:
        """Proof of life; values it carries (battery, signal) are judged like a reading's. A
        heartbeat without values does not touch the device clock (its time is often the
        arrival time while telemetry carries the device's own)."""
        if not heartbeat.values:
            return self._heard(state, heartbeat.device_id, heartbeat.received_at, now)
        reading = Reading(
            heartbeat.device_id,
            heartbeat.ts,
            heartbeat.seq,
            heartbeat.values,
            heartbeat.received_at,
            heartbeat.ts_from_arrival,
        )
        return self.on_reading(state, reading, now)

    def _heard(self, state: DeviceState, device_id: str, received_at: float, now: float) -> Outcome:
        dets = state.detectors
        changed: dict[str, Any] = {}
        hits: list[Hit] = []
        for d in self._presence:
            self._run(d.on_heard, d, dets, changed, hits, device_id, received_at, now=now)
        return self._finish(state, dets, changed, hits, now)

    def on_event(self, state: DeviceState, event: DeviceEvent, now: float) -> Outcome:
        dets = state.detectors
        changed: dict[str, Any] = {}
        hits: list[Hit] = []
        for d in self._presence:
            self._run(
                d.on_heard, d, dets, changed, hits, event.device_id, event.received_at, now=now
            )
        for e in self._eventers:
            self._run(e.on_event, e, dets, changed, hits, event, now=now)
        return self._finish(state, dets, changed, hits, now)

    def on_status(self, state: DeviceState, status: StatusChange, now: float) -> Outcome:
        dets = state.detectors
        changed: dict[str, Any] = {}
        hits: list[Hit] = []
        for d in self._presence:
            self._run(d.on_status, d, dets, changed, hits, status, now=now)
        return self._finish(state, dets, changed, hits, now)

    # -- time --------------------------------------------------------------------------------

    def on_tick(self, state: DeviceState, now: float) -> Outcome:
        """Let time-driven detectors decide (hold timers, liveness, the end of flapping)."""
        dets = state.detectors
        changed: dict[str, Any] = {}
        hits: list[Hit] = []
        device_id = state.device_id
        for d in self._presence:
            self._run(d.on_tick, d, dets, changed, hits, device_id, now=now)
        for t in self._tickers:
            self._run(t.on_tick, t, dets, changed, hits, device_id, now=now)
        outcome = self._finish(state, dets, changed, hits, now)
        dets = outcome.state.detectors
        changed = {}
        released: list[Hit] = []
        for f in self._filters:
            self._run(f.on_tick, f, dets, changed, released, device_id, now=now)
        if not changed:
            return outcome
        return Outcome(
            msgspec.structs.replace(outcome.state, detectors={**dets, **changed}),
            (*outcome.hits, *released),
        )

    def resume(self, state: DeviceState, now: float) -> DeviceState:
        """A state restored after a restart, before its first tick: liveness, hold timers and
        flapping restart their server-time clocks at ``now``, because messages the broker
        queued while the service was down are still to come (without this every device silent
        for the length of the outage would be declared offline at the first tick). Open
        conditions stay open; a device that really went silent is found one timeout later."""
        dets = dict(state.detectors)
        for d in (*self._presence, *self._tickers, *self._filters):
            s = dets.get(d.key)
            if s is not None:
                dets[d.key] = d.resume(s, now)
        return msgspec.structs.replace(state, detectors=dets)

    def next_wake(self, state: DeviceState) -> float | None:
        """The earliest server time at which :meth:`on_tick` could return a hit; None: no
        timer runs (a tick at the caller's usual rate is still harmless)."""
        wake: float | None = None
        dets = state.detectors
        for d in (*self._presence, *self._tickers, *self._filters):
            s = dets.get(d.key)
            at = d.next_wake(s if s is not None else d.initial_state())
            if at is not None and (wake is None or at < wake):
                wake = at
        return wake

    # -- plumbing ----------------------------------------------------------------------------

    @staticmethod
    def _run(
        method: Any,
        d: Any,
        dets: dict[str, Any],
        changed: dict[str, Any],
        hits: list[Hit],
        *args: Any,
        now: float,
    ) -> None:
        key = d.key
        s = changed.get(key, dets.get(key))
        if s is None:
            s = d.initial_state()
        ns, h = method(*args, s, now)
        if ns is not s:
            changed[key] = ns
        if h:
            hits.extend(h)

    def _finish(
        self,
        state: DeviceState,
        dets: dict[str, Any],
        changed: dict[str, Any],
        hits: list[Hit],
        now: float,
        newest: float | None = None,
        late_run: int | None = None,
        late: bool = False,
        rebased: bool = False,
    ) -> Outcome:
        out: Hits = tuple(hits)
        if out:
            for f in self._filters:
                key = f.key
                s = changed.get(key, dets.get(key))
                ns, out = f.filter(out, s if s is not None else f.initial_state(), now)
                changed[key] = ns
        if changed:
            dets = {**dets, **changed}
        if newest is None:
            newest = state.newest_ts
        if late_run is None:
            late_run = state.late_run
        if dets is state.detectors and newest == state.newest_ts and late_run == state.late_run:
            return Outcome(state, out, late, rebased)
        return Outcome(DeviceState(state.device_id, newest, late_run, dets), out, late, rebased)
