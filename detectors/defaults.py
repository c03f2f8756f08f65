"""Which detectors each device type runs, and how their defaults differ per type.

Each entry is a partial config laid over the detector's own model defaults (which carry the
domain numbers: see the config reference, ``python -m detectors.reference``); a device's
registry overrides (``profile.detectors``) are laid over the result. A type without an entry
here (a newly registered one) gets :data:`GENERIC`.
"""

from __future__ import annotations

from typing import Any

Partial = dict[str, Any]


def _events(category: str, alarm_type: str, extra: dict[str, Partial] | None = None) -> Partial:
    events: dict[str, Partial] = {
        "alarm": {"type": alarm_type, "category": category, "severity": "orange"},
        "pre_alarm": {"type": alarm_type, "category": category, "severity": "yellow"},
        "silenced": {"type": "alarm_silenced", "category": category, "severity": "blue"},
    }
    events.update(extra or {})
    return {"events": events}


GENERIC: dict[str, Partial] = {
    "device_events": {},
    "battery": {},
    "liveness": {},
    "flapping": {},
}

TYPE_DEFAULTS: dict[str, dict[str, Partial]] = {
    "smoke_detector": {
        "device_events": _events(
            "fire",
            "smoke_alarm",
            {
                "alarm": {"type": "smoke_alarm", "category": "fire", "severity": "red"},
                "pre_alarm": {"type": "smoke_alarm", "category": "fire", "severity": "orange"},
            },
        ),
        "smoke_obscuration": {},
        "battery": {},
        "liveness": {},
        "flapping": {},
    },
    "electrical_fire_monitor": {
        "device_events": _events(
            "electrical",
            "electrical_fire_alarm",
            {
                "alarm:residual_current": {
                    "type": "residual_current_high",
                    "category": "electrical",
                    "severity": "orange",
                },
                "alarm:cable_temp": {
                    "type": "cable_overtemp",
                    "category": "electrical",
                    "severity": "orange",
                },
            },
        ),
        "residual_current": {},
        "cable_temp": {},
        "cable_temp_rise": {},
        "overload": {},
        "baseline": {"metrics": {"residual_current_ma": 10.0}, "category": "electrical"},
        "battery": {},
        "liveness": {},
        "flapping": {},
    },
    "water_pressure_sensor": {
        "device_events": _events(
            "water",
            "pressure_alarm",
            {
                "alarm:pressure_low": {
                    "type": "pressure_low",
                    "category": "water",
                    "severity": "orange",
                },
                "alarm:pressure_high": {
                    "type": "pressure_high",
                    "category": "water",
                    "severity": "yellow",
                },
            },
        ),
        "pressure_level": {},
        "pressure_drop": {},
        "baseline": {"metrics": {"pressure_mpa": 0.02}, "category": "water"},
        "battery": {},
        "liveness": {},
        "flapping": {},
    },
    # Camera health (unreachable, frozen, covered) is decided by the video workers.
    "camera": {},
    # A passive tag says nothing by itself: no liveness; its duty is the patrol schedule.
    "patrol_tag": {"patrol": {}, "battery": {}},
}


def for_type(type_key: str) -> dict[str, Partial]:
    return TYPE_DEFAULTS.get(type_key, GENERIC)
