"""A scenario's own fleet: the optional ``[fleet]`` table and inline ``[[devices]]``.

With them a scenario file is self-contained: it says which devices play, from when, with
which seed, whether their regular traffic runs, and when the run ends, so that it produces
the same messages every time (``gridwatch simulate fleet --scenario F --dry-run``). Command
line options win over the file.

    [fleet]
    start = 2026-11-22T08:00:00+08:00   # t = 0 (TOML date-time, ISO text or epoch seconds)
    seed = 7
    until = 900                          # simulated seconds; the run ends there
    regular = false                      # only what the steps make (default true)
    devices = "devices.csv"              # relative to this file (or [[devices]] below)
    intervals = { smoke_detector = { heartbeat = 600, telemetry = 0 } }   # 0: off
    clock = { sigma_s = 0, wrong_share = 0 }   # device clocks (see simulators/clocks.py)

    [[devices]]                          # the registry's device fields
    device_id = "SD-1"
    type = "smoke_detector"
    grid_code = "440999001001-01"
    site = "hotel"
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from devices.device_import import DeviceFormat, ParsedDevice, iter_device_lines
from devices.messages import Kind
from devices.registry import Device
from simulators.clocks import HOUR_S, ClockModel
from simulators.fleet import PERIODIC_KINDS, IntervalOverrides
from simulators.scenario_fields import Fields, ScenarioError, Where
from simulators.signals import simulated_types

FLEET_KEYS = frozenset({"start", "seed", "until", "regular", "devices", "intervals", "clock"})
CLOCK_KEYS = frozenset({"sigma_s", "wrong_share", "wrong_hours"})


@dataclass(frozen=True, slots=True)
class FleetSection:
    start: float | None = None  # epoch seconds of t = 0
    seed: int | None = None
    until: float | None = None  # simulated seconds
    regular: bool | None = None
    intervals: IntervalOverrides = field(default_factory=dict)
    clock: ClockModel | None = None
    devices_file: Path | None = None
    devices: tuple[Device, ...] = ()


def parse_fleet(
    raw: object, devices: object, where: Where, device_lines: Sequence[int], base: Path
) -> FleetSection:
    """The ``[fleet]`` table (``raw``, may be absent) and the ``[[devices]]`` list."""
    inline = _inline_devices(devices, where, device_lines)
    if raw is None:
        return FleetSection(devices=inline)
    if not isinstance(raw, dict):
        raise where.error(f"must be a table/object, got {raw!r}")
    fields = Fields(raw, where)
    fields.unknown(FLEET_KEYS, "[fleet]")
    seed = raw.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise where.error(f"seed must be a whole number, got {seed!r}")
    regular = fields.boolean("regular", default=True) if "regular" in raw else None
    devices_file: Path | None = None
    if "devices" in raw:
        devices_file = base / fields.text("devices")
        if inline:
            raise where.error("devices names a file, but the scenario also lists [[devices]]")
    return FleetSection(
        start=_start(raw.get("start"), where),
        seed=seed,
        until=fields.number("until", required=False, positive=True),
        regular=regular,
        intervals=_intervals(fields.table("intervals"), where),
        clock=_clock(raw.get("clock"), where),
        devices_file=devices_file,
        devices=inline,
    )


def _start(value: object, where: Where) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise where.error(f"start {value!r} is not an ISO 8601 date-time") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise where.error(f"start {value.isoformat()} needs a time zone (e.g. +08:00)")
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise where.error(f"start must be a date-time or epoch seconds, got {value!r}")


def _intervals(raw: Mapping[str, Any], where: Where) -> IntervalOverrides:
    types = simulated_types()
    kinds = {kind.value: kind for kind in PERIODIC_KINDS}
    parsed: dict[tuple[str, Kind], float | None] = {}
    for type_key, per_kind in raw.items():
        if type_key not in types:
            raise where.error(f"intervals: {type_key!r} is not simulated ({', '.join(types)})")
        if not isinstance(per_kind, dict):
            raise where.error(f"intervals.{type_key} must be a table of telemetry/heartbeat")
        for kind_name, seconds in per_kind.items():
            key = f"intervals.{type_key}.{kind_name}"
            if kind_name not in kinds:
                raise where.error(f"{key}: only telemetry and heartbeat have an interval")
            if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                raise where.error(f"{key} must be seconds (0: off), got {seconds!r}")
            if not math.isfinite(seconds) or seconds < 0:
                raise where.error(f"{key} must be >= 0 seconds (0: off), got {seconds!r}")
            parsed[type_key, kinds[kind_name]] = float(seconds) or None
    return parsed


def _clock(raw: object, where: Where) -> ClockModel | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise where.error(f"clock must be a table (sigma_s, wrong_share, wrong_hours), got {raw!r}")
    fields = Fields(raw, Where(where.source, None, where.line, "[fleet] clock"))
    fields.unknown(CLOCK_KEYS, "clock")
    defaults = ClockModel()
    low, high = (
        fields.pair("wrong_hours") if "wrong_hours" in raw
        else (defaults.wrong_min_s / HOUR_S, defaults.wrong_max_s / HOUR_S)
    )
    sigma = fields.number("sigma_s", required=False)
    share = fields.number("wrong_share", required=False)
    try:
        return ClockModel(
            sigma_s=defaults.sigma_s if sigma is None else sigma,
            wrong_share=defaults.wrong_share if share is None else share,
            wrong_min_s=low * HOUR_S,
            wrong_max_s=high * HOUR_S,
        )
    except ValueError as exc:
        raise fields.where.error(str(exc)) from None


def _inline_devices(raw: object, where: Where, lines: Sequence[int]) -> tuple[Device, ...]:
    """``[[devices]]`` read with the registry's own row checks; any issue is an error."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(row, dict) for row in raw):
        raise ScenarioError(f"{where.source}: devices must be a list of tables ([[devices]])")
    if len(lines) != len(raw):
        lines = []
    text = [orjson.dumps(row, default=str).decode() for row in raw]
    devices: list[Device] = []
    for item in iter_device_lines(text, fmt=DeviceFormat.JSONL, source=where.source):
        if isinstance(item, ParsedDevice):
            devices.append(item.device)
            continue
        number = item.line
        at = Where(where.source, number, lines[number - 1] if lines and number else None,
                   "device")
        raise at.error(item.reason)
    return tuple(devices)
