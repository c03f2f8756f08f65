"""The fleet as a pure generator: which ``(topic, payload)`` goes out when, from a clock the
caller moves.

Time is simulated seconds since the fleet started (``t``). Each device has a retained
``online`` status at ``t = 0`` and its type's telemetry and heartbeat streams (intervals
from :mod:`simulators.signals`, overridable per type), each starting at a random phase
within its first interval so a fleet does not speak all at once. Scenario steps
(:mod:`simulators.scenario`) add one-off messages, value overrides and silences on top.

Two clocks come out of ``t``: the simulated epoch ``start_ts + t`` drives the daily cycle,
and the payload's ``ts`` is ``start_ts + t / speed``, the wall time at which the message is
due. With ``speed`` 300, a 5-minute interval ticks every second while ``ts`` stays near the
real time, as ingest expects.

Nothing here reads a clock, sleeps or touches a socket: :mod:`simulators.fleet_runner` does
that. Given the same devices, config and steps, the same messages come out in the same
order however the clock is moved.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from random import Random
from typing import Any

import orjson

from devices.messages import Kind
from devices.registry import Device
from ingest.topics import UplinkTopics
from simulators.signals import Moment, SignalModel, signals_for

PERIODIC_KINDS = (Kind.TELEMETRY, Kind.HEARTBEAT)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish: due at simulated ``t``; ``step`` is the scenario step
    (1-based) that made it, None for the fleet's regular traffic."""

    t: float
    device_id: str
    kind: Kind
    topic: str
    payload: bytes
    retain: bool = False
    step: int | None = None


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

    def stamp_ms(self, t: float) -> int:
        """The payload ``ts`` of a message due at ``t``: epoch milliseconds."""
        return round((self.start_ts + t / self.speed) * 1000)

    def moment(self, t: float) -> Moment:
        return Moment(t, self.start_ts + t)

    @property
    def seq_start(self) -> int:
        return self.first_seq if self.first_seq is not None else round(self.start_ts * 1000)


@dataclass(frozen=True, slots=True)
class Override:
    """A metric's value set by a scenario from ``start`` to ``until`` (both included)."""

    start: float
    until: float
    value: Callable[[float], float]


class DeviceSim:
    """One simulated device: its baseline, random stream, seq counter and scenario state."""

    __slots__ = ("base", "device", "model", "overrides", "rng", "seq", "silences")

    def __init__(self, device: Device, model: SignalModel[Any], seed: int, seq: int) -> None:
        self.device = device
        self.model = model
        self.rng = Random(f"{seed}:{device.device_id}")
        self.base = model.baseline(self.rng)
        self.seq = seq
        self.silences: list[tuple[float, float]] = []
        self.overrides: dict[str, list[Override]] = {}

    @property
    def device_id(self) -> str:
        return self.device.device_id

    def next_seq(self) -> int:
        seq = self.seq
        self.seq += 1
        return seq

    def silent(self, t: float) -> bool:
        return any(start <= t < end for start, end in self.silences)

    def overridden(self, t: float) -> dict[str, float]:
        """Metric values scenarios set at ``t``; the latest-starting override wins."""
        values: dict[str, float] = {}
        for metric, overrides in self.overrides.items():
            latest: Override | None = None
            for override in overrides:  # in the order added: a later one wins a tie
                if override.start <= t <= override.until and (
                    latest is None or override.start >= latest.start
                ):
                    latest = override
            if latest is not None:
                values[metric] = latest.value(t)
        return values


Make = Callable[["FleetModel", DeviceSim, float], "Outgoing | None"]
"""Builds a one-off message at its due time (None: nothing to send after all)."""


@dataclass(frozen=True, slots=True)
class _Periodic:
    sim: DeviceSim
    kind: Kind
    interval: float


@dataclass(frozen=True, slots=True)
class _Once:
    sim: DeviceSim
    make: Make


class FleetModel:
    def __init__(self, devices: Iterable[Device], config: FleetConfig) -> None:
        self.config = config
        self.topics = UplinkTopics(config.topic_root)
        self.sims: dict[str, DeviceSim] = {}
        self.skipped: Counter[str] = Counter()  # device types without a signal model
        self.now = 0.0
        self._heap: list[tuple[float, int, _Periodic | _Once]] = []
        self._order = itertools.count()
        for device in devices:
            model = signals_for(device.type)
            if model is None:
                self.skipped[device.type] += 1
                continue
            if device.device_id in self.sims:
                raise ValueError(f"device {device.device_id} is listed twice")
            sim = DeviceSim(device, model, config.seed, config.seq_start)
            self.sims[device.device_id] = sim
            self.schedule(0.0, sim, FleetModel._online)
            for kind in PERIODIC_KINDS:
                interval = config.interval(model, kind)
                if interval is not None:
                    self._push(sim.rng.uniform(0.0, interval), _Periodic(sim, kind, interval))

    # -- what steps use -------------------------------------------------------------------

    def sim(self, device_id: str) -> DeviceSim:
        return self.sims[device_id]

    def schedule(self, t: float, sim: DeviceSim, make: Make) -> None:
        if t < self.now:
            raise ValueError(f"cannot schedule at {t} s: the fleet is already at {self.now} s")
        self._push(t, _Once(sim, make))

    def telemetry(self, sim: DeviceSim, t: float, step: int | None = None) -> Outgoing:
        """The device's regular values at ``t`` with any scenario overrides applied."""
        values = sim.model.telemetry(sim.base, sim.rng, self.config.moment(t))
        values.update(sim.overridden(t))
        return self.message(sim, Kind.TELEMETRY, t, {"values": values}, step=step)

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
        """A canonical JSON message: ``ts`` (epoch ms), ``seq`` when asked, then ``body``."""
        payload: dict[str, object] = {"ts": self.config.stamp_ms(t)}
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
    ) -> Outgoing:
        topic = self.topics.build(sim.device_id, kind)
        return Outgoing(t, sim.device_id, kind, topic, payload, retain, step)

    # -- the clock ------------------------------------------------------------------------

    def messages_until(self, t: float) -> Iterator[Outgoing]:
        """Every message due at or before ``t``, in order, drawn lazily: stop iterating at
        any point and the next call carries on from there."""
        heap = self._heap
        while heap and heap[0][0] <= t:
            due, _, action = heapq.heappop(heap)
            self.now = due
            if isinstance(action, _Periodic):
                out = self._regular(action, due)
                spread = 1.0 + self.config.jitter * action.sim.rng.uniform(-1.0, 1.0)
                self._push(due + action.interval * spread, action)
            else:
                out = action.make(self, action.sim, due)
            if out is not None:
                yield out

    def next_time(self) -> float | None:
        """When the next message is due, or None when nothing more will come."""
        return self._heap[0][0] if self._heap else None

    def stop_messages(self, t: float) -> list[Outgoing]:
        """Retained ``offline`` statuses for every device, for a clean stop at ``t``."""
        return [
            self.message(sim, Kind.STATUS, t, {"status": "offline"}, seq=False, retain=True)
            for sim in self.sims.values()
        ]

    def _push(self, t: float, action: _Periodic | _Once) -> None:
        heapq.heappush(self._heap, (t, next(self._order), action))

    def _regular(self, action: _Periodic, t: float) -> Outgoing | None:
        sim = action.sim
        if sim.silent(t):
            return None
        if action.kind is Kind.TELEMETRY:
            return self.telemetry(sim, t)
        values = sim.model.heartbeat(sim.base, sim.rng, self.config.moment(t))
        return self.message(sim, Kind.HEARTBEAT, t, {"values": values})

    @staticmethod
    def _online(model: FleetModel, sim: DeviceSim, t: float) -> Outgoing | None:
        if sim.silent(t):
            return None
        return model.message(sim, Kind.STATUS, t, {"status": "online"}, seq=False, retain=True)
