"""Scenarios: timed steps played on top of a fleet's regular traffic, read from TOML or JSON.

A scenario file lists steps; each has ``at`` (simulated seconds after the fleet starts, so
``--speed`` compresses it like every interval), a ``device`` and one key that says what
happens::

    [[steps]]                   # the device decides on an alarm
    at = 5
    device = "SD-440999001001-01-0001"
    event = "alarm"
    detail = { channel = "smoke" }

    [[steps]]                   # a metric moves linearly; reported every `every` s meanwhile
    at = 10
    device = "EF-440999001001-01-0001"
    metric = "residual_current_ma"
    ramp = [150, 450]
    over = 60                   # seconds; optional: every = 10, hold = <s after the ramp>
                                # (without hold the end value stays until the fleet stops)

    [[steps]]                   # nothing regular from the device (status, telemetry,
    at = 20                     # heartbeats, ramp samples) for a while; scripted events and
    device = "WP-440999001001-02-0001"   # raw payloads still go out; `status = true` adds
    silent_for = 600                     # a retained offline/online around it

    [[steps]]                   # bytes as they are, on the device's topic (no ts, no seq)
    at = 30
    device = "SD-440999001001-01-0002"
    raw = "garbage"
    kind = "telemetry"          # optional: telemetry|event|heartbeat|status

``outage``, ``garbage`` and ``clock_offset`` steps are in :mod:`simulators.scenario_incidents`,
the optional ``[fleet]`` table and ``[[devices]]`` in :mod:`simulators.scenario_fleet`.
JSON is the same with ``{"name": …, "fleet": {…}, "devices": […], "steps": [{…}, …]}``.
Every error names the file, the table (step N, device N, [fleet]) and, for TOML, the line of
its header.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from simulators import scenario_incidents as _incidents  # noqa: F401  (registers its kinds)
from simulators.fleet import FleetModel
from simulators.scenario_fields import ScenarioError, Where, header_lines, table_line
from simulators.scenario_fleet import FleetSection, parse_fleet
from simulators.scenario_steps import (
    DEFAULT_RAMP_EVERY_S,
    STEP_KINDS,
    Step,
    parse_step,
)

_TOP_KEYS = frozenset({"name", "description", "fleet", "devices", "steps"})

__all__ = [
    "DEFAULT_RAMP_EVERY_S",
    "STEP_KINDS",
    "Scenario",
    "ScenarioError",
    "Step",
    "Where",
    "load_scenario",
    "parse_scenario",
]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    steps: tuple[Step, ...]
    source: str
    fleet: FleetSection = field(default_factory=FleetSection)

    def install(self, model: FleetModel) -> None:
        for step in self.steps:
            step.install(model)

    def devices(self) -> set[str]:
        return {step.device for step in self.steps}

    def only(self, device_ids: set[str]) -> Scenario:
        """The steps of these devices alone (a worker's share of the fleet)."""
        return replace(self, steps=tuple(s for s in self.steps if s.device in device_ids))

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
            f"{source}: unknown key(s) {', '.join(unknown)} (a scenario has "
            f"{', '.join(sorted(_TOP_KEYS))})"
        )
    raw_steps = document.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ScenarioError(f"{source}: a scenario needs a non-empty list of steps")
    step_lines = lines.get("steps", [])
    if len(step_lines) != len(raw_steps):
        step_lines = []  # steps written inline, not as [[steps]] tables: no line to point at
    steps = []
    for n, raw in enumerate(raw_steps, start=1):
        steps.append(parse_step(raw, Where(source, n, step_lines[n - 1] if step_lines else None)))
    fleet_line = lines.get("fleet", [])
    fleet = parse_fleet(
        document.get("fleet"),
        document.get("devices"),
        Where(source, None, fleet_line[0] if fleet_line else None, "[fleet]"),
        lines.get("devices", []),
        Path(source).parent,
    )
    return Scenario(
        name=_top_text(document, "name", source) or Path(source).stem,
        description=_top_text(document, "description", source),
        steps=tuple(steps),
        source=source,
        fleet=fleet,
    )


def _document(text: str, source: str, fmt: str) -> tuple[dict[str, Any], dict[str, list[int]]]:
    if fmt == "json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"{source}: not JSON: {exc}") from None
        if not isinstance(document, dict):
            raise ScenarioError(f"{source}: a JSON scenario is an object with a steps list")
        return document, {}
    if fmt != "toml":
        raise ScenarioError(f"{source}: unknown scenario format {fmt!r} (toml or json)")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not TOML: {exc}") from None
    fleet = table_line(text, "fleet")
    lines = {
        "steps": header_lines(text, "steps"),
        "devices": header_lines(text, "devices"),
        "fleet": [fleet] if fleet is not None else [],
    }
    return document, lines


def _top_text(document: Mapping[str, Any], key: str, source: str) -> str:
    value = document.get(key, "")
    if not isinstance(value, str):
        raise ScenarioError(f"{source}: {key} must be text, got {value!r}")
    return value
