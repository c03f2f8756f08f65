"""Scenarios: timed steps played on top of a fleet's regular traffic, read from TOML or JSON.

A scenario file lists steps; each has ``at`` (simulated seconds after the fleet starts, so
``--speed`` compresses it like every interval), a ``device`` and one key that says what
happens::

    [[steps]]                   # the device decides on an alarm
    at = 5
    device = "SD-440999001001-01-0001"
    event = "alarm"
    detail = { channel = "smoke" }

    [[steps]]                   # a metric moves linearly; telemetry every `every` s meanwhile
    at = 10
    device = "EF-440999001001-01-0001"
    metric = "residual_current_ma"
    ramp = [150, 450]
    over = 60                   # seconds; optional: every = 10, hold = <s after the ramp>
                                # (without hold the end value stays until the fleet stops)

    [[steps]]                   # nothing regular from the device (status, telemetry,
    at = 20                     # heartbeats, ramp samples) for a while; scripted events and
    device = "WP-440999001001-02-0001"   # raw payloads still go out
    silent_for = 600

    [[steps]]                   # bytes as they are, on the device's topic (no ts, no seq)
    at = 30
    device = "SD-440999001001-01-0002"
    raw = "garbage"
    kind = "telemetry"          # optional: telemetry|event|heartbeat|status

JSON is the same with ``{"name": …, "steps": [{…}, …]}``. Every error names the file, the
step (1-based) and, for TOML, the line of its ``[[steps]]`` header. A step kind is one
parser in ``STEP_KINDS``: growing the engine is adding a kind there.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from devices.messages import Kind
from devices.profiles import get_profile
from simulators.fleet import DeviceSim, FleetModel, Outgoing, Override

_STEP_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*steps[ \t]*\]\]", re.MULTILINE)
_TOP_KEYS = frozenset({"name", "description", "steps"})
_COMMON_KEYS = frozenset({"at", "device"})
DEFAULT_RAMP_EVERY_S = 10.0


class ScenarioError(ValueError):
    """A scenario cannot be used; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Where:
    source: str
    number: int  # 1-based, as a person counts steps
    line: int | None = None

    def __str__(self) -> str:
        line = f" (line {self.line})" if self.line is not None else ""
        return f"{self.source}: step {self.number}{line}"

    def error(self, reason: str) -> ScenarioError:
        return ScenarioError(f"{self}: {reason}")


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


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    steps: tuple[Step, ...]
    source: str

    def install(self, model: FleetModel) -> None:
        for step in self.steps:
            step.install(model)

    def devices(self) -> set[str]:
        return {step.device for step in self.steps}

    def ends_at(self) -> float:
        return max((step.ends_at() for step in self.steps), default=0.0)


def load_scenario(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from None
    fmt = "json" if path.suffix.lower() == ".json" else "toml"
    return parse_scenario(text, source=str(path), fmt=fmt)


def parse_scenario(text: str, *, source: str, fmt: str = "toml") -> Scenario:
    document, lines = _document(text, source, fmt)
    unknown = sorted(set(document) - _TOP_KEYS)
    if unknown:
        raise ScenarioError(
            f"{source}: unknown key(s) {', '.join(unknown)} (a scenario has name, description, "
            "steps)"
        )
    raw_steps = document.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ScenarioError(f"{source}: a scenario needs a non-empty list of steps")
    if len(lines) != len(raw_steps):
        lines = []  # steps written inline, not as [[steps]] tables: no line to point at
    steps = []
    for n, raw in enumerate(raw_steps, start=1):
        where = Where(source, n, lines[n - 1] if lines else None)
        steps.append(_parse_step(raw, where))
    return Scenario(
        name=_top_text(document, "name", source) or Path(source).stem,
        description=_top_text(document, "description", source),
        steps=tuple(steps),
        source=source,
    )


def _document(text: str, source: str, fmt: str) -> tuple[dict[str, Any], list[int]]:
    if fmt == "json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"{source}: not JSON: {exc}") from None
        if not isinstance(document, dict):
            raise ScenarioError(f"{source}: a JSON scenario is an object with a steps list")
        return document, []
    if fmt != "toml":
        raise ScenarioError(f"{source}: unknown scenario format {fmt!r} (toml or json)")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not TOML: {exc}") from None
    lines = [text.count("\n", 0, m.start()) + 1 for m in _STEP_HEADER.finditer(text)]
    return document, lines


def _top_text(document: Mapping[str, Any], key: str, source: str) -> str:
    value = document.get(key, "")
    if not isinstance(value, str):
        raise ScenarioError(f"{source}: {key} must be text, got {value!r}")
    return value


class _Fields:
    """Typed reads of one step's keys; every failure names the step."""

    def __init__(self, raw: Mapping[str, Any], where: Where) -> None:
        self.raw = raw
        self.where = where

    def number(self, key: str, *, required: bool = True, positive: bool = False) -> float | None:
        value = self.raw.get(key)
        if value is None:
            if required:
                raise self.where.error(f"{key} is required")
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.where.error(f"{key} must be a number, got {value!r}")
        number = float(value)
        if not math.isfinite(number) or number < 0 or (positive and number == 0):
            bound = "> 0" if positive else ">= 0"
            raise self.where.error(f"{key} must be a finite number {bound}, got {value!r}")
        return number

    def seconds(self, key: str, *, positive: bool = False) -> float:
        value = self.number(key, positive=positive)
        assert value is not None  # required
        return value

    def text(self, key: str) -> str:
        value = self.raw.get(key)
        if not isinstance(value, str) or not value:
            raise self.where.error(f"{key} must be non-empty text, got {value!r}")
        return value


def _parse_step(raw: object, where: Where) -> Step:
    if not isinstance(raw, dict):
        raise where.error(f"a step must be a table/object, got {raw!r}")
    kinds = [key for key in STEP_KINDS if key in raw]
    if len(kinds) != 1:
        known = ", ".join(STEP_KINDS)
        found = ", ".join(kinds) or "none"
        raise where.error(f"a step needs exactly one of {known} (found {found})")
    kind = kinds[0]
    allowed, parse = STEP_KINDS[kind]
    unknown = sorted(set(raw) - _COMMON_KEYS - allowed)
    if unknown:
        keys = ", ".join(sorted(_COMMON_KEYS | allowed))
        raise where.error(
            f"unknown key(s) {', '.join(unknown)} for a {kind} step (it takes {keys})"
        )
    fields = _Fields(raw, where)
    return parse(fields, fields.seconds("at"), fields.text("device"))


def _sim(model: FleetModel, where: Where, device: str) -> DeviceSim:
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
        sim = _sim(model, self.where, self.device)
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


def _event(fields: _Fields, at: float, device: str) -> EventStep:
    detail = fields.raw.get("detail", {})
    if not isinstance(detail, dict):
        raise fields.where.error(f"detail must be a table/object, got {detail!r}")
    return EventStep(fields.where, at, device, fields.text("event"), detail)


@dataclass(frozen=True, slots=True)
class RampStep:
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
        sim = _sim(model, self.where, self.device)
        metrics = get_profile(sim.device.type).metrics
        if self.metric not in metrics:
            raise self.where.error(
                f"metric {self.metric!r} is not a metric of {sim.device.type} "
                f"(one of {', '.join(sorted(metrics))})"
            )
        until = math.inf if self.hold is None else self.at + self.over + self.hold
        sim.overrides.setdefault(self.metric, []).append(Override(self.at, until, self.value))
        number = self.where.number

        def make(m: FleetModel, s: DeviceSim, t: float) -> Outgoing | None:
            return None if s.silent(t) else m.telemetry(s, t, step=number)

        for t in self.sample_times():
            model.schedule(t, sim, make)

    def ends_at(self) -> float:
        return self.at + self.over + (self.hold or 0.0)


def _ramp(fields: _Fields, at: float, device: str) -> RampStep:
    ramp = fields.raw.get("ramp")
    if (
        not isinstance(ramp, list)
        or len(ramp) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in ramp)
        or not all(math.isfinite(v) for v in ramp)
    ):
        raise fields.where.error(f"ramp must be [from, to], two numbers, got {ramp!r}")
    every = fields.number("every", required=False, positive=True) or DEFAULT_RAMP_EVERY_S
    return RampStep(
        fields.where, at, device, fields.text("metric"), float(ramp[0]), float(ramp[1]),
        fields.seconds("over"), every, fields.number("hold", required=False),
    )


@dataclass(frozen=True, slots=True)
class SilenceStep:
    where: Where
    at: float
    device: str
    seconds: float

    def install(self, model: FleetModel) -> None:
        _sim(model, self.where, self.device).silences.append((self.at, self.at + self.seconds))

    def ends_at(self) -> float:
        return self.at + self.seconds


def _silence(fields: _Fields, at: float, device: str) -> SilenceStep:
    return SilenceStep(fields.where, at, device, fields.seconds("silent_for", positive=True))


@dataclass(frozen=True, slots=True)
class RawStep:
    where: Where
    at: float
    device: str
    payload: bytes
    kind: Kind

    def install(self, model: FleetModel) -> None:
        sim = _sim(model, self.where, self.device)
        number, kind, payload = self.where.number, self.kind, self.payload

        def make(m: FleetModel, s: DeviceSim, t: float) -> Outgoing:
            return m.raw(s, kind, t, payload, step=number)

        model.schedule(self.at, sim, make)

    def ends_at(self) -> float:
        return self.at


def _raw(fields: _Fields, at: float, device: str) -> RawStep:
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


StepParser = Callable[[_Fields, float, str], Step]

STEP_KINDS: dict[str, tuple[frozenset[str], StepParser]] = {
    "event": (frozenset({"event", "detail"}), _event),
    "ramp": (frozenset({"ramp", "metric", "over", "every", "hold"}), _ramp),
    "silent_for": (frozenset({"silent_for"}), _silence),
    "raw": (frozenset({"raw", "kind"}), _raw),
}
"""The key that names a step's kind → (the keys that kind takes, its parser)."""
