"""Per-device profile overrides: which keys a registry file may set, and their typed value.

A mistyped key must fail the import row that carries it, not become a silent default in a
detector weeks later; so only keys somebody declared are accepted:

* ``codec`` and ``heartbeat_interval_s``, which the profile itself owns;
* any key the type's profile declares in ``options`` (its default fixes the value's type);
* keys a room registers with :func:`register_override_key` (e.g. detector thresholds that
  apply to several types), each with its own check.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeAlias, TypeGuard

from pydantic import TypeAdapter, ValidationError

from devices.codecs import UnknownCodec, get_codec
from devices.profiles import DeviceProfile

JsonValue: TypeAlias = "str | int | float | bool | list[JsonValue] | dict[str, JsonValue] | None"

OverrideCheck = Callable[[JsonValue], str | None]
"""Returns why a value is unacceptable, or None when it is fine."""

PROFILE_KEYS = frozenset({"codec", "heartbeat_interval_s"})


class OverrideError(ValueError):
    """A device's ``profile`` overrides cannot be accepted; the message says which key and why."""


@dataclass(frozen=True, slots=True)
class ProfileOverrides:
    """What one device changes of its type's profile; empty for most devices."""

    codec: str | None = None
    heartbeat_interval_s: float | None = None
    options: Mapping[str, JsonValue] = field(default_factory=dict)

    def to_json(self) -> dict[str, JsonValue]:
        """The flat object stored in ``devices.profile`` and read by ``with_overrides``."""
        out: dict[str, JsonValue] = dict(self.options)
        if self.codec is not None:
            out["codec"] = self.codec
        if self.heartbeat_interval_s is not None:
            out["heartbeat_interval_s"] = self.heartbeat_interval_s
        return out

    def apply(self, profile: DeviceProfile) -> DeviceProfile:
        return profile.with_overrides(self.to_json())

    @classmethod
    def from_json(cls, raw: Mapping[str, JsonValue]) -> ProfileOverrides:
        """Rebuild from a stored object without re-validating it (it was checked on import)."""
        options = {k: v for k, v in raw.items() if k not in PROFILE_KEYS}
        codec = raw.get("codec")
        interval = raw.get("heartbeat_interval_s")
        return cls(
            codec=codec if isinstance(codec, str) else None,
            heartbeat_interval_s=float(interval) if _is_number(interval) else None,
            options=options,
        )


_REGISTERED: dict[str, OverrideCheck] = {}


def register_override_key(name: str, check: OverrideCheck) -> None:
    """Allow ``name`` in every device's overrides; registering twice replaces the check."""
    _REGISTERED[name] = check


def registered_override_keys() -> list[str]:
    return sorted(_REGISTERED)


def positive_number(value: JsonValue) -> str | None:
    """A ready-made check for thresholds, intervals and delays."""
    if _as_positive(value) is None:
        return f"must be a positive number, got {value!r}"
    return None


def parse_overrides(raw: object, profile: DeviceProfile) -> ProfileOverrides:
    """Check a device's ``profile`` object against what ``profile`` allows to override."""
    if raw is None:
        return ProfileOverrides()
    if not isinstance(raw, dict):
        raise OverrideError("profile must be a JSON object")
    codec: str | None = None
    interval: float | None = None
    options: dict[str, JsonValue] = {}
    for key, value in raw.items():
        if key == "codec":
            codec = _check_codec(value)
        elif key == "heartbeat_interval_s":
            interval = _as_positive(value)
            if interval is None:
                raise OverrideError(f"profile.heartbeat_interval_s {positive_number(value)}")
        elif key in profile.options:
            _check_like_default(key, value, profile.options[key])
            options[key] = value
        elif key in _REGISTERED:
            if (why := _REGISTERED[key](value)) is not None:
                raise OverrideError(f"profile.{key} {why}")
            options[key] = value
        else:
            allowed = sorted(PROFILE_KEYS | set(profile.options) | set(_REGISTERED))
            raise OverrideError(
                f"profile.{key} is not a known override for type {profile.type_key!r} "
                f"(allowed: {', '.join(allowed)})"
            )
    return ProfileOverrides(codec=codec, heartbeat_interval_s=interval, options=options)


def _check_codec(value: JsonValue) -> str:
    if not isinstance(value, str):
        raise OverrideError(f"profile.codec must be a codec name, got {value!r}")
    try:
        get_codec(value)
    except UnknownCodec:
        raise OverrideError(f"profile.codec {value!r} is not a registered codec") from None
    return value


def _check_like_default(key: str, value: JsonValue, default: object) -> None:
    """The type's default shows what kind of value the option takes."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int | float):
        ok = _is_number(value)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, list | tuple):
        ok = isinstance(value, list)
    elif isinstance(default, Mapping):
        ok = isinstance(value, dict)
    else:
        ok = True
    if not ok:
        raise OverrideError(
            f"profile.{key} must be like the type's default {default!r}, got {value!r}"
        )


def _as_positive(value: JsonValue) -> float | None:
    if _is_number(value) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


_DURATION = TypeAdapter(timedelta)


def parse_duration(value: object) -> timedelta | None:
    """A positive duration: ISO 8601 (``"P1D"``, ``"P1W"``, ``"PT12H"``) or seconds; None when
    the value is not one."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        found = _DURATION.validate_python(value)
    except ValidationError:
        return None
    return found if found > timedelta(0) else None


def positive_duration(value: JsonValue) -> str | None:
    """A ready-made check for intervals written as durations."""
    if parse_duration(value) is None:
        return f"must be a positive duration such as 'P1D', 'P7D' or 'PT12H', got {value!r}"
    return None


# How often a patrol tag's place must be patrolled; the patrol_tag profile requires it
# (devices/profiles/builtin.py) and the patrol detector reads it (detectors/patrol.py).
PATROL_INTERVAL = "patrol_interval"
register_override_key(PATROL_INTERVAL, positive_duration)
