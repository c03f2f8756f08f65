"""From what the user asked (command line options, a scenario file) to a fleet ready to run.

The command line wins over the scenario's ``[fleet]`` table, which wins over the defaults;
everything that can be wrong with the inputs is found here, before any broker is touched.
A plan can build the whole fleet's model or one worker's share of it: per-device random
streams and seq counters make a device's messages the same in either.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from devices.registry import Device
from simulators.clocks import ClockModel
from simulators.fleet import FleetConfig, FleetModel, IntervalOverrides
from simulators.fleet_input import FleetInputError, load_devices, place_in_grids, within
from simulators.fleet_runner import RunLimits
from simulators.scenario import Scenario, load_scenario

DEFAULT_SEED = 1

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FleetOptions:
    """What the command line says; None: not given (the scenario's value, else the default)."""

    now: float  # epoch seconds: t = 0 when neither the options nor the scenario say
    devices: Path | None = None
    grids: Path | None = None
    within: str | None = None
    scenario: Path | None = None
    start: float | None = None
    seed: int | None = None
    speed: float = 1.0
    topic_root: str = "gridwatch/v1"
    intervals: IntervalOverrides = field(default_factory=dict)
    clock_sigma_s: float | None = None
    clock_wrong_share: float | None = None
    regular: bool | None = None
    duration: float | None = None  # wall seconds
    messages: int | None = None
    rate: float | None = None


@dataclass(frozen=True, slots=True)
class FleetPlan:
    devices: tuple[Device, ...]
    config: FleetConfig
    scenario: Scenario | None
    limits: RunLimits

    def model(self, device_ids: Collection[str] | None = None) -> FleetModel:
        """The fleet (only ``device_ids`` when given) with the scenario's steps installed."""
        if device_ids is None:
            devices, scenario = self.devices, self.scenario
        else:
            ids = set(device_ids)
            devices = tuple(d for d in self.devices if d.device_id in ids)
            scenario = self.scenario.only(ids) if self.scenario is not None else None
        model = FleetModel(devices, self.config)
        if scenario is not None:
            scenario.install(model)
        return model

    def has_end(self) -> bool:
        """Whether a run stops by itself (limits, or nothing periodic to send)."""
        return (
            self.limits.duration is not None
            or self.limits.messages is not None
            or not self.config.regular
        )

    def with_limits(self, limits: RunLimits) -> FleetPlan:
        return replace(self, limits=limits)

    def share(self, device_ids: Collection[str], limits: RunLimits) -> FleetPlan:
        """The plan of a worker that plays only ``device_ids``, within ``limits``."""
        ids = set(device_ids)
        return FleetPlan(
            tuple(d for d in self.devices if d.device_id in ids),
            self.config,
            self.scenario.only(ids) if self.scenario is not None else None,
            limits,
        )


def plan_fleet(options: FleetOptions) -> FleetPlan:
    """Raises FleetInputError, ScenarioError or ValueError with a message for the user."""
    scenario = load_scenario(options.scenario) if options.scenario is not None else None
    section = scenario.fleet if scenario is not None else None
    devices = _devices(options, scenario)
    clock = _clock(options, section.clock if section is not None else None)
    regular = _first(options.regular, section.regular if section else None, True)
    intervals = {**(section.intervals if section else {}), **options.intervals}
    config = FleetConfig(
        start_ts=_first(options.start, section.start if section else None, options.now),
        speed=options.speed,
        seed=_first(options.seed, section.seed if section else None, DEFAULT_SEED),
        topic_root=options.topic_root,
        intervals=intervals,
        clock=clock,
        regular=regular,
    )
    duration = options.duration
    if duration is None and section is not None and section.until is not None:
        duration = section.until / options.speed
    limits = RunLimits(rate=options.rate, duration=duration, messages=options.messages)
    return FleetPlan(tuple(devices), config, scenario, limits)


def _devices(options: FleetOptions, scenario: Scenario | None) -> list[Device]:
    section = scenario.fleet if scenario is not None else None
    if options.devices is not None:
        devices = load_devices(options.devices)
    elif section is not None and section.devices_file is not None:
        devices = load_devices(section.devices_file)
    elif section is not None and section.devices:
        devices = list(section.devices)
    else:
        raise FleetInputError(
            "no devices: give --county-dir or --devices, or a scenario with [[devices]] or "
            "[fleet] devices"
        )
    if options.within is not None:
        if options.grids is not None:
            devices = place_in_grids(devices, options.grids)
        devices = within(devices, options.within)
    return devices


def _clock(options: FleetOptions, from_scenario: ClockModel | None) -> ClockModel | None:
    clock = from_scenario or ClockModel()
    if options.clock_sigma_s is not None:
        clock = replace(clock, sigma_s=options.clock_sigma_s)
    if options.clock_wrong_share is not None:
        clock = replace(clock, wrong_share=options.clock_wrong_share)
    if clock.sigma_s == 0 and clock.wrong_share == 0:
        return None
    return clock


def _first(*values: T | None) -> T:
    for value in values:
        if value is not None:
            return value
    raise ValueError("no value")  # pragma: no cover - the last value is never None
