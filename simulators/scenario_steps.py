"""Scenario step kinds, registered by the key that names them.

A step has ``at`` (simulated seconds after the fleet starts), a ``device`` and exactly one
key that says what happens. This module holds the kinds that shape values and traffic
(``event``, ``ramp``, ``silent_for``, ``raw``); :mod:`simulators.scenario_incidents` adds
the ones that break things (``outage``, ``garbage``, ``clock_offset``). Growing the engine
is a parser and a :func:`register_step` call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from devices.messages import Kind
from devices.profiles import get_profile
from simulators.device_sim import DeviceSim, Override
from simulators.fleet import FleetModel, Outgoing
from simulators.scenario_fields import Fields, ScenarioError, Where

COMMON_KEYS = frozenset({"at", "device"})
DEFAULT_RAMP_EVERY_S = 10.0


class Step(Protocol):
    @property
    def where(self) -> Where: ...

    @property
    def at(self) -> float: ...

    @property
    def device(self) -> str: ...

    def install(self, model: FleetModel) -> None:
        """Schedule this step's effects on ``model``; ScenarioError if it does not fit."""
        ...

    def ends_at(self) -> float:
        """When its last scripted effect happens (a held value counts until it is released)."""
        ...


StepParser = Callable[[Fields, float, str], Step]

STEP_KINDS: dict[str, tuple[frozenset[str], StepParser]] = {}
"""The key that names a step's kind → (the keys that kind takes, its parser)."""


def register_step(key: str, keys: frozenset[str], parser: StepParser) -> None:
    STEP_KINDS[key] = (keys | {key}, parser)


def parse_step(raw: object, where: Where) -> Step:
    if not isinstance(raw, dict):
        raise where.error(f"a step must be a table/object, got {raw!r}")
    kinds = [key for key in STEP_KINDS if key in raw]
    if len(kinds) != 1:
        known = ", ".join(STEP_KINDS)
        found = ", ".join(kinds) or "none"
        raise where.error(f"a step needs exactly one of {known} (found {found})")
    kind = kinds[0]
    allowed, parse = STEP_KINDS[kind]
    fields = Fields(raw, where)
    fields.unknown(COMMON_KEYS | allowed, f"a {kind} step")
    return parse(fields, fields.seconds("at"), fields.text("device"))


def fleet_sim(model: FleetModel, where: Where, device: str) -> DeviceSim:
    try:
        return model.sim(device)
    except KeyError:
        raise where.error(
            f"device {device!r} is not in the fleet (not in the devices file, filtered out, "
            "or of a type that does not publish)"
        ) from None


@dataclass(frozen=True, slots=True)
class EventStep:
    where: Where
    at: float
    device: str
    event: str
    detail: Mapping[str, Any]

    def install(self, model: FleetModel) -> None:
        sim = fleet_sim(model, self.where, self.device)
        allowed = get_profile(sim.device.type).events
        if self.event not in allowed:
            raise self.where.error(
                f"event {self.event!r} is not an event of {sim.device.type} "
                f"(one of {', '.join(sorted(allowed))})"
            )
        body: dict[str, object] = {"event": self.event}
        if self.detail:
            body["detail"] = dict(self.detail)
        number = self.where.number

        def make(m: FleetModel, s: DeviceSim, t: float) -> Outgoing:
            return m.message(s, Kind.EVENT, t, body, step=number)

        model.schedule(self.at, sim, make)

    def ends_at(self) -> float:
        return self.at


def _event(fields: Fields, at: float, device: str) -> EventStep:
    return EventStep(fields.where, at, device, fields.text("event"), fields.table("detail"))


@dataclass(frozen=True, slots=True)
class RampStep:
    """A metric moves linearly; the device reports it every ``every`` seconds meanwhile, in
    a heartbeat when its heartbeats carry that metric (battery, signal), else in telemetry."""

    where: Where
    at: float
    device: str
    metric: str
    start_value: float
    end_value: float
    over: float
    every: float
    hold: float | None  # seconds the end value stays after the ramp; None: until the end

    def value(self, t: float) -> float:
        if self.over == 0 or t >= self.at + self.over:
            return self.end_value
        share = max(0.0, (t - self.at) / self.over)
        return round(self.start_value + (self.end_value - self.start_value) * share, 3)

    def sample_times(self) -> list[float]:
        """``at``, every ``every`` seconds while ramping, and the end of the ramp."""
        count = math.ceil(self.over / self.every) if self.over else 0
        return [self.at + k * self.every for k in range(count)] + [self.at + self.over]

    def install(self, model: FleetModel) -> None:
        sim = fleet_sim(model, self.where, self.device)
        metrics = get_profile(sim.device.type).metrics
        if self.metric not in metrics:
            raise self.where.error(
                f"metric {self.metric!r} is not a metric of {sim.device.type} "
                f"(one of {', '.join(sorted(metrics))})"
            )
        spec = metrics[self.metric]
        for value in (self.start_value, self.end_value):
            if not spec.admits(value):
                raise self.where.error(
                    f"{self.metric}={value} is outside its physical range "
                    f"{spec.minimum}..{spec.maximum} {spec.unit} (use a garbage step for that)"
                )
        until = math.inf if self.hold is None else self.at + self.over + self.hold
        sim.overrides.setdefault(self.metric, []).append(Override(self.at, until, self.value))
        number = self.where.number
        in_heartbeat = self.metric in sim.model.heartbeat_metrics

        def make(m: FleetModel, s: DeviceSim, t: float) -> Outgoing | list[Outgoing] | None:
            if s.silent(t):
                return None
            return m.heartbeat(s, t, step=number) if in_heartbeat else m.telemetry(s, t, number)

        for t in self.sample_times():
            model.schedule(t, sim, make)

    def ends_at(self) -> float:
        return self.at + self.over + (self.hold or 0.0)


def _ramp(fields: Fields, at: float, device: str) -> RampStep:
    start, end = fields.pair("ramp")
    every = fields.number("every", required=False, positive=True) or DEFAULT_RAMP_EVERY_S
    return RampStep(
        fields.where, at, device, fields.text("metric"), start, end,
        fields.seconds("over"), every, fields.number("hold", required=False),
    )


@dataclass(frozen=True, slots=True)
class SilenceStep:
    """Nothing regular from the device for a while (the device is dead, not buffering);
    with ``status`` the broker says ``offline`` at the start, as the device's will, and the
    device says ``online`` when it is back."""

    where: Where
    at: float
    device: str
    seconds: float
    status: bool

    def install(self, model: FleetModel) -> None:
        sim = fleet_sim(model, self.where, self.device)
        sim.silences.append((self.at, self.at + self.seconds))
        if self.status:
            schedule_statuses(model, sim, self.at, self.at + self.seconds, self.where.number)

    def ends_at(self) -> float:
        return self.at + self.seconds


def schedule_statuses(
    model: FleetModel, sim: DeviceSim, start: float, until: float, step: int | None
) -> None:
    """Retained ``offline`` at ``start`` (the broker's, for a device that went away) and
    ``online`` at ``until`` (the device's own, when it connects again)."""

    def offline(m: FleetModel, s: DeviceSim, t: float) -> Outgoing:
        return m.status(s, t, "offline", step=step)

    def online(m: FleetModel, s: DeviceSim, t: float) -> Outgoing:
        return m.message(s, Kind.STATUS, t, {"status": "online"}, step=step, seq=False,
                         retain=True)

    model.schedule(start, sim, offline, bypass=True)
    model.schedule(until, sim, online)


def _silence(fields: Fields, at: float, device: str) -> SilenceStep:
    return SilenceStep(
        fields.where, at, device, fields.seconds("silent_for", positive=True),
        fields.boolean("status", default=False),
    )


@dataclass(frozen=True, slots=True)
class RawStep:
    where: Where
    at: float
    device: str
    payload: bytes
    kind: Kind

    def install(self, model: FleetModel) -> None:
        sim = fleet_sim(model, self.where, self.device)
        number, kind, payload = self.where.number, self.kind, self.payload

        def make(m: FleetModel, s: DeviceSim, t: float) -> Outgoing:
            return m.raw(s, kind, t, payload, step=number)

        model.schedule(self.at, sim, make)

    def ends_at(self) -> float:
        return self.at


def _raw(fields: Fields, at: float, device: str) -> RawStep:
    payload = fields.raw.get("raw")
    if not isinstance(payload, str):
        raise fields.where.error(f"raw must be text (the payload as sent), got {payload!r}")
    kind_name = fields.raw.get("kind", Kind.TELEMETRY.value)
    try:
        kind = Kind(kind_name)
    except ValueError:
        kinds = "|".join(k.value for k in Kind)
        raise fields.where.error(f"kind must be one of {kinds}, got {kind_name!r}") from None
    return RawStep(fields.where, at, device, payload.encode("utf-8"), kind)


register_step("event", frozenset({"detail"}), _event)
register_step("ramp", frozenset({"metric", "over", "every", "hold"}), _ramp)
register_step("silent_for", frozenset({"status"}), _silence)
register_step("raw", frozenset({"kind"}), _raw)

__all__ = [
    "STEP_KINDS",
    "EventStep",
    "RampStep",
    "RawStep",
    "ScenarioError",
    "SilenceStep",
    "Step",
    "fleet_sim",
    "parse_step",
    "register_step",
    "schedule_statuses",
]
