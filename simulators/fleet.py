"""The fleet as a pure generator: which ``(topic, payload)`` goes out when, from a clock the
caller moves.

Time is simulated seconds since the fleet started (``t``). Each device has a retained
``online`` status at ``t = 0`` and its type's telemetry and heartbeat streams (intervals
from :mod:`simulators.signals`, overridable per type), each starting at a random phase
within its first interval so a fleet does not speak all at once. A battery device that
drops below the low-battery line says so once with a ``low_battery`` event. Scenario steps
(:mod:`simulators.scenario`) add one-off messages, value overrides, silences, outages and
clock jumps on top; with ``regular=False`` only what the steps make goes out.

Three clocks come out of ``t``: the simulated epoch ``start_ts + t`` drives the daily
cycle; the wall time ``start_ts + t / speed`` is when the message is due; and the payload's
``ts`` is that wall time as the device's own clock reads it (:mod:`simulators.clocks`).
With ``speed`` 300, a 5-minute interval ticks every second while ``ts`` stays near the real
time, as ingest expects.

Nothing here reads a clock, sleeps or touches a socket: :mod:`simulators.fleet_runner` does
that. Given the same devices, config and steps, the same messages come out in the same
order however the clock is moved.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from devices.messages import Kind
from devices.profiles import get_profile
from devices.registry import Device
from ingest.topics import UplinkTopics
from simulators.clocks import ClockModel
from simulators.device_sim import DeviceSim, Outage, Override
from simulators.signals import LOW_BATTERY_PCT, Moment, SignalModel, signals_for

PERIODIC_KINDS = (Kind.TELEMETRY, Kind.HEARTBEAT)

__all__ = [
    "DeviceSim",
    "FleetConfig",
    "FleetModel",
    "IntervalOverrides",
    "Make",
    "Outage",
    "Outgoing",
    "Override",
]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish: due at simulated ``t``; ``step`` is the scenario step
    (1-based) that made it, None for the fleet's regular traffic; ``buffered_at`` is when
    a message held through an outage was made (its payload unchanged since)."""

    t: float
    device_id: str
    kind: Kind
    topic: str
    payload: bytes
    retain: bool = False
    step: int | None = None
    buffered_at: float | None = None


IntervalOverrides = Mapping[tuple[str, Kind], float | None]
"""``(device type, kind) → seconds``; None switches that stream off."""


@dataclass(frozen=True, slots=True)
class FleetConfig:
    start_ts: float  # epoch seconds at t = 0
    speed: float = 1.0  # simulated seconds per wall second
    seed: int = 0
    topic_root: str = "gridwatch/v1"
    intervals: IntervalOverrides = field(default_factory=dict)
    jitter: float = 0.02  # each interval varies by up to this fraction, as device clocks do
    first_seq: int | None = None  # None: start_ts in ms, so a restarted fleet reuses no seq
    clock: ClockModel | None = None  # None: every device's clock is right
    regular: bool = True  # False: statuses, telemetry and heartbeats only when scripted

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ValueError(f"speed must be > 0, got {self.speed}")
        if not 0.0 <= self.jitter < 0.5:
            raise ValueError(f"jitter must be in [0, 0.5), got {self.jitter}")
        for (type_key, kind), seconds in self.intervals.items():
            if kind not in PERIODIC_KINDS:
                raise ValueError(f"{type_key}: only telemetry and heartbeat have an interval")
            if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
                raise ValueError(f"{type_key}.{kind.value} interval must be > 0, got {seconds}")

    def interval(self, model: SignalModel[Any], kind: Kind) -> float | None:
        key = (model.type_key, kind)
        if key in self.intervals:
            return self.intervals[key]
        return model.telemetry_s if kind is Kind.TELEMETRY else model.heartbeat_s

    def stamp_ms(self, t: float, clock_offset_s: float = 0.0) -> int:
        """The payload ``ts`` of a message due at ``t``, as a clock off by
        ``clock_offset_s`` reads it: epoch milliseconds."""
        return round((self.start_ts + t / self.speed) * 1000) + round(clock_offset_s * 1000)

    def moment(self, t: float) -> Moment:
        return Moment(t, self.start_ts + t)

    @property
    def seq_start(self) -> int:
        return self.first_seq if self.first_seq is not None else round(self.start_ts * 1000)


Make = Callable[["FleetModel", DeviceSim, float], "Outgoing | Sequence[Outgoing] | None"]
"""Builds a one-off message (or several) at its due time (None: nothing after all)."""


@dataclass(frozen=True, slots=True)
class _Periodic:
    sim: DeviceSim
    kind: Kind
    interval: float


@dataclass(frozen=True, slots=True)
class _Once:
    sim: DeviceSim
    make: Make
    bypass: bool  # made by the broker, not the device: an outage does not hold it


class FleetModel:
    def __init__(self, devices: Iterable[Device], config: FleetConfig) -> None:
        self.config = config
        self.topics = UplinkTopics(config.topic_root)
        self.sims: dict[str, DeviceSim] = {}
        self.skipped: Counter[str] = Counter()  # device types without a signal model
        self.now = 0.0
        self._heap: list[tuple[float, int, _Periodic | _Once]] = []
        self._pending: deque[Outgoing] = deque()  # made, not yet taken (the rest of a burst)
        self._order = itertools.count()
        for device in devices:
            model = signals_for(device.type)
            if model is None:
                self.skipped[device.type] += 1
                continue
            if device.device_id in self.sims:
                raise ValueError(f"device {device.device_id} is listed twice")
            offset = config.clock.offset(config.seed, device.device_id) if config.clock else 0.0
            sim = DeviceSim(device, model, config.seed, config.seq_start, offset)
            self.sims[device.device_id] = sim
            if not config.regular:
                continue
            self.schedule(0.0, sim, FleetModel._online)
            for kind in PERIODIC_KINDS:
                interval = config.interval(model, kind)
                if interval is not None:
                    self._push(sim.rng.uniform(0.0, interval), _Periodic(sim, kind, interval))

    # -- what steps use -------------------------------------------------------------------

    def sim(self, device_id: str) -> DeviceSim:
        return self.sims[device_id]

    def schedule(self, t: float, sim: DeviceSim, make: Make, *, bypass: bool = False) -> None:
        """Run ``make`` at ``t``; what it makes is held by an outage unless ``bypass``."""
        if t < self.now:
            raise ValueError(f"cannot schedule at {t} s: the fleet is already at {self.now} s")
        self._push(t, _Once(sim, make, bypass))

    def add_outage(self, sim: DeviceSim, outage: Outage) -> None:
        """Hold the device's messages during ``outage`` and replay them when it ends."""
        sim.outages.append(outage)

        def replay(model: FleetModel, s: DeviceSim, t: float) -> list[Outgoing]:
            held = [replace(out, t=t, buffered_at=out.t) for out in s.buffer]
            s.buffer.clear()
            return held

        self.schedule(outage.until, sim, replay, bypass=True)

    def telemetry(self, sim: DeviceSim, t: float, step: int | None = None) -> Outgoing:
        """The device's regular values at ``t`` with any scenario overrides applied."""
        values = sim.model.telemetry(sim.base, sim.rng, self.config.moment(t))
        for metric, value in sim.overridden(t).items():
            if metric not in sim.model.heartbeat_metrics:
                values[metric] = value
        return self.message(sim, Kind.TELEMETRY, t, {"values": values}, step=step)

    def heartbeat(self, sim: DeviceSim, t: float, step: int | None = None) -> list[Outgoing]:
        """The heartbeat at ``t`` (overrides of the metrics it carries applied), then a
        ``low_battery`` event the first time the battery is below the line."""
        values = sim.model.heartbeat(sim.base, sim.rng, self.config.moment(t))
        values.update(sim.overridden(t, sim.model.heartbeat_metrics))
        out = [self.message(sim, Kind.HEARTBEAT, t, {"values": values}, step=step)]
        battery = values.get("battery_pct")
        if battery is not None:
            low = battery < LOW_BATTERY_PCT
            if low and not sim.low_battery_said and _says(sim, "low_battery"):
                body = {"event": "low_battery", "detail": {"battery_pct": battery}}
                out.append(self.message(sim, Kind.EVENT, t, body, step=step))
            sim.low_battery_said = low
        return out

    def message(
        self,
        sim: DeviceSim,
        kind: Kind,
        t: float,
        body: Mapping[str, object],
        *,
        step: int | None = None,
        seq: bool = True,
        retain: bool = False,
    ) -> Outgoing:
        """A canonical JSON message: ``ts`` (epoch ms by the device's clock), ``seq`` when
        asked, then ``body``."""
        payload: dict[str, object] = {"ts": self.config.stamp_ms(t, sim.clock.offset_at(t))}
        if seq:
            payload["seq"] = sim.next_seq()
        payload.update(body)
        return self.raw(sim, kind, t, orjson.dumps(payload), step=step, retain=retain)

    def raw(
        self,
        sim: DeviceSim,
        kind: Kind,
        t: float,
        payload: bytes,
        *,
        step: int | None = None,
        retain: bool = False,
        topic: str | None = None,
    ) -> Outgoing:
        topic = topic if topic is not None else sim.topic(kind, self.topics)
        return Outgoing(t, sim.device_id, kind, topic, payload, retain, step)

    def status(self, sim: DeviceSim, t: float, word: str, step: int | None = None) -> Outgoing:
        """A retained status as the broker publishes a device's will: no device clock, no seq."""
        payload = orjson.dumps({"status": word})
        return self.raw(sim, Kind.STATUS, t, payload, step=step, retain=True)

    # -- the clock ------------------------------------------------------------------------

    def messages_until(self, t: float) -> Iterator[Outgoing]:
        """Every message due at or before ``t``, in order, drawn lazily: stop iterating at
        any point (even inside a burst) and the next call carries on from there."""
        heap, pending = self._heap, self._pending
        while True:
            while pending:
                yield pending.popleft()
            if not heap or heap[0][0] > t:
                return
            due, _, action = heapq.heappop(heap)
            self.now = due
            made: Outgoing | Sequence[Outgoing] | None
            if isinstance(action, _Periodic):
                made = self._regular(action, due)
                spread = 1.0 + self.config.jitter * (2.0 * action.sim.rng.random() - 1.0)
                self._push(due + action.interval * spread, action)
                bypass = False
            else:
                made = action.make(self, action.sim, due)
                bypass = action.bypass
            if made is None:
                continue
            for out in (made,) if isinstance(made, Outgoing) else made:
                outage = None if bypass else action.sim.outage_at(out.t)
                if outage is None:
                    pending.append(out)
                elif out.kind is not Kind.STATUS:
                    action.sim.keep(out, outage)

    def next_time(self) -> float | None:
        """When the next message is due, or None when nothing more will come."""
        if self._pending:
            return self.now
        return self._heap[0][0] if self._heap else None

    def stop_messages(self, t: float) -> list[Outgoing]:
        """Retained ``offline`` statuses for a clean stop at ``t``, from every device that
        said ``online`` (so none when regular traffic is off: the statuses are part of it)."""
        return [
            self.message(sim, Kind.STATUS, t, {"status": "offline"}, seq=False, retain=True)
            for sim in self.sims.values()
            if sim.announced
        ]

    @property
    def lost(self) -> int:
        """Messages lost from full outage buffers so far."""
        return sum(sim.lost for sim in self.sims.values())

    def _push(self, t: float, action: _Periodic | _Once) -> None:
        heapq.heappush(self._heap, (t, next(self._order), action))

    def _regular(self, action: _Periodic, t: float) -> Outgoing | list[Outgoing] | None:
        sim = action.sim
        if sim.silent(t):
            return None
        if action.kind is Kind.TELEMETRY:
            return self.telemetry(sim, t)
        return self.heartbeat(sim, t)

    @staticmethod
    def _online(model: FleetModel, sim: DeviceSim, t: float) -> Outgoing | None:
        if sim.silent(t):
            return None
        sim.announced = True
        return model.message(sim, Kind.STATUS, t, {"status": "online"}, seq=False, retain=True)


def _says(sim: DeviceSim, event: str) -> bool:
    return event in get_profile(sim.device.type).events
