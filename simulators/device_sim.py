"""One simulated device's state: its baseline, random stream, seq counter, clock, and what
scenario steps changed (value overrides, silences, outages with their buffer)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from random import Random
from typing import TYPE_CHECKING, Any

from devices.messages import Kind
from devices.registry import Device
from ingest.topics import UplinkTopics
from simulators.clocks import DeviceClock
from simulators.signals import SignalModel

if TYPE_CHECKING:
    from simulators.fleet import Outgoing


@dataclass(frozen=True, slots=True)
class Override:
    """A metric's value set by a scenario from ``start`` to ``until`` (both included)."""

    start: float
    until: float
    value: Callable[[float], float]


@dataclass(frozen=True, slots=True)
class Outage:
    """The device cannot reach the broker from ``start`` to ``until`` (excluded): what it
    makes meanwhile waits in a buffer of ``capacity`` messages (the oldest are lost when it
    is full) and goes out in one burst, unchanged, when it is back. Statuses are not kept:
    a status describes the connection, and there is none."""

    start: float
    until: float
    capacity: int
    step: int

    def covers(self, t: float) -> bool:
        return self.start <= t < self.until


class DeviceSim:
    __slots__ = (
        "_topics",
        "announced",
        "base",
        "buffer",
        "clock",
        "device",
        "lost",
        "low_battery_said",
        "model",
        "outages",
        "overrides",
        "rng",
        "seq",
        "silences",
    )

    def __init__(
        self,
        device: Device,
        model: SignalModel[Any],
        seed: int,
        seq: int,
        clock_offset_s: float = 0.0,
    ) -> None:
        self.device = device
        self.model = model
        self.rng = Random(f"{seed}:{device.device_id}")
        self.base = model.baseline(self.rng)
        self.seq = seq
        self.clock = DeviceClock(clock_offset_s)
        self.silences: list[tuple[float, float]] = []
        self.overrides: dict[str, list[Override]] = {}
        self.outages: list[Outage] = []
        self.buffer: deque[Outgoing] = deque()
        self.lost = 0  # messages pushed out of a full outage buffer
        self.low_battery_said = False
        self.announced = False  # its regular `online` status has gone out
        self._topics: dict[Kind, str] = {}

    def topic(self, kind: Kind, topics: UplinkTopics) -> str:
        """The device's uplink topic of ``kind`` (built once: it is on every message)."""
        topic = self._topics.get(kind)
        if topic is None:
            topic = self._topics[kind] = topics.build(self.device.device_id, kind)
        return topic

    @property
    def device_id(self) -> str:
        return self.device.device_id

    def next_seq(self) -> int:
        seq = self.seq
        self.seq += 1
        return seq

    def silent(self, t: float) -> bool:
        if not self.silences:  # the common case, on the hot path
            return False
        return any(start <= t < end for start, end in self.silences)

    def outage_at(self, t: float) -> Outage | None:
        if not self.outages:
            return None
        for outage in self.outages:
            if outage.covers(t):
                return outage
        return None

    def keep(self, out: Outgoing, outage: Outage) -> None:
        """Buffer a message made during ``outage``; a full buffer loses its oldest."""
        if len(self.buffer) >= outage.capacity:
            self.buffer.popleft()
            self.lost += 1
        self.buffer.append(out)

    def overridden(self, t: float, names: frozenset[str] | None = None) -> dict[str, float]:
        """Metric values scenarios set at ``t`` (only ``names`` when given); the
        latest-starting override wins."""
        values: dict[str, float] = {}
        if not self.overrides:
            return values
        for metric, overrides in self.overrides.items():
            if names is not None and metric not in names:
                continue
            latest: Override | None = None
            for override in overrides:  # in the order added: a later one wins a tie
                if override.start <= t <= override.until and (
                    latest is None or override.start >= latest.start
                ):
                    latest = override
            if latest is not None:
                values[metric] = latest.value(t)
        return values
