"""Scenario steps that break things the way the field does: a network outage whose buffered
messages come back in one burst, garbage payloads of named kinds, a device clock that jumps.

    [[steps]]                   # the device cannot reach the broker for 10 min: what it
    at = 60                     # makes is buffered (up to `buffer` messages, the oldest
    device = "WP-…"             # lost beyond) and replayed at the end with the original
    outage = 600                # ts and seq; `status = true` adds the broker's retained
    buffer = 1000               # `offline` at the start and the device's `online` at the end
    status = true

    [[steps]]                   # one message of each listed kind, in this order
    at = 30
    device = "SD-…"
    garbage = ["not_json", "out_of_range", "future_timestamp"]
    size = 100000               # bytes, for "oversize" only

    [[steps]]                   # the device's clock reads 3 h ahead for 5 min
    at = 90
    device = "EF-…"
    clock_offset = 10800        # seconds, negative for behind
    for = 300                   # optional: without it, until the fleet stops
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulators.clocks import ClockJump
from simulators.device_sim import DeviceSim, Outage
from simulators.fleet import FleetModel, Outgoing
from simulators.garbage import DEFAULT_OVERSIZE_BYTES, GARBAGE_KINDS, make_garbage
from simulators.scenario_fields import Fields, Where
from simulators.scenario_steps import fleet_sim, register_step, schedule_statuses

DEFAULT_BUFFER = 1000  # messages a device keeps through an outage


@dataclass(frozen=True, slots=True)
class OutageStep:
    where: Where
    at: float
    device: str
    seconds: float
    buffer: int
    status: bool

    def install(self, model: FleetModel) -> None:
        sim = fleet_sim(model, self.where, self.device)
        until = self.at + self.seconds
        for other in sim.outages:
            if self.at <= other.until and other.start <= until:
                raise self.where.error(
                    f"outage {self.at:g}–{until:g} s overlaps or touches the outage of step "
                    f"{other.step} ({other.start:g}–{other.until:g} s) on {self.device}"
                )
        number = self.where.number or 0
        if self.status:
            schedule_statuses(model, sim, self.at, until, number)
        model.add_outage(sim, Outage(self.at, until, self.buffer, number))

    def ends_at(self) -> float:
        return self.at + self.seconds


def _outage(fields: Fields, at: float, device: str) -> OutageStep:
    return OutageStep(
        fields.where, at, device, fields.seconds("outage", positive=True),
        fields.integer("buffer", default=DEFAULT_BUFFER), fields.boolean("status", default=False),
    )


@dataclass(frozen=True, slots=True)
class GarbageStep:
    where: Where
    at: float
    device: str
    kinds: tuple[str, ...]
    size: int

    def install(self, model: FleetModel) -> None:
        sim = fleet_sim(model, self.where, self.device)
        kinds, size, number = self.kinds, self.size, self.where.number or 0

        def make(m: FleetModel, s: DeviceSim, t: float) -> list[Outgoing]:
            return [make_garbage(m, s, t, kind, step=number, size=size) for kind in kinds]

        model.schedule(self.at, sim, make)

    def ends_at(self) -> float:
        return self.at


def _garbage(fields: Fields, at: float, device: str) -> GarbageStep:
    kinds = fields.raw.get("garbage")
    known = ", ".join(GARBAGE_KINDS)
    if not isinstance(kinds, list) or not kinds or not all(isinstance(k, str) for k in kinds):
        raise fields.where.error(f"garbage must be a non-empty list of kinds ({known})")
    unknown = [k for k in kinds if k not in GARBAGE_KINDS]
    if unknown:
        raise fields.where.error(f"unknown garbage kind(s) {', '.join(unknown)} (known: {known})")
    if "size" in fields.raw and "oversize" not in kinds:
        raise fields.where.error('size is only for the "oversize" kind')
    size = fields.integer("size", default=DEFAULT_OVERSIZE_BYTES, minimum=64)
    return GarbageStep(fields.where, at, device, tuple(kinds), size)


@dataclass(frozen=True, slots=True)
class ClockStep:
    where: Where
    at: float
    device: str
    offset_s: float
    seconds: float | None  # None: until the fleet stops

    def install(self, model: FleetModel) -> None:
        sim = fleet_sim(model, self.where, self.device)
        until = math.inf if self.seconds is None else self.at + self.seconds
        sim.clock.jumps.append(ClockJump(self.at, until, self.offset_s))

    def ends_at(self) -> float:
        return self.at + (self.seconds or 0.0)


def _clock(fields: Fields, at: float, device: str) -> ClockStep:
    return ClockStep(
        fields.where, at, device, fields.seconds("clock_offset", signed=True),
        fields.number("for", required=False, positive=True),
    )


register_step("outage", frozenset({"buffer", "status"}), _outage)
register_step("garbage", frozenset({"size"}), _garbage)
register_step("clock_offset", frozenset({"for"}), _clock)
