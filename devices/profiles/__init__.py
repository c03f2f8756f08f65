"""Device-type profiles, registered by type key.

A profile says what a type of device may report (metrics with unit and physical range),
how often it must be heard from, and which codec reads its payloads. Adding a device type
is a new module that calls :func:`register`; the pipeline never names a type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from devices.messages import DEVICE_EVENTS


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """A measured quantity; values outside ``[minimum, maximum]`` are physically impossible."""

    name: str
    unit: str
    minimum: float
    maximum: float

    def admits(self, value: float) -> bool:
        return self.minimum <= value <= self.maximum


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """What one device type reports and how it is read."""

    type_key: str
    description: str
    metrics: Mapping[str, MetricSpec]
    heartbeat_interval_s: float
    codec: str = "canonical"
    events: frozenset[str] = DEVICE_EVENTS
    options: Mapping[str, Any] = field(default_factory=dict)
    # Keys every device of the type must give in its registry row's ``profile`` (a patrol
    # tag's ``patrol_interval``): a row without one is refused at import.
    required_options: frozenset[str] = frozenset()

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> DeviceProfile:
        """The profile of one device: the type's profile with that device's registry overrides.

        Only the keys a profile owns are applied here; detector thresholds and other keys are
        kept in ``options`` for the rooms that read them.
        """
        if not overrides:
            return self
        changes: dict[str, Any] = {}
        options = dict(self.options)
        for key, value in overrides.items():
            if key == "heartbeat_interval_s":
                changes[key] = float(value)
            elif key == "codec":
                changes[key] = str(value)
            else:
                options[key] = value
        return replace(self, options=options, **changes)


class UnknownDeviceType(KeyError):
    """A device names a type that no profile is registered for."""


_PROFILES: dict[str, DeviceProfile] = {}


def register(profile: DeviceProfile) -> DeviceProfile:
    """Make a device type known; registering a key twice replaces the earlier profile."""
    _PROFILES[profile.type_key] = profile
    return profile


def get_profile(type_key: str) -> DeviceProfile:
    try:
        return _PROFILES[type_key]
    except KeyError:
        raise UnknownDeviceType(type_key) from None


def registered_types() -> list[str]:
    return sorted(_PROFILES)


def metrics(*specs: MetricSpec) -> dict[str, MetricSpec]:
    return {spec.name: spec for spec in specs}


def common_metrics() -> Iterable[MetricSpec]:
    """Metrics every wireless device may send along with its own."""
    return (
        MetricSpec("battery_pct", "%", 0.0, 100.0),
        MetricSpec("rssi_dbm", "dBm", -150.0, 0.0),
    )


# The built-in types register themselves on import.
from devices.profiles import builtin as _builtin  # noqa: E402,F401
