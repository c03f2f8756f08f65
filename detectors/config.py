"""From a device's profile to validated detector configs.

For each detector key: the config model's defaults, then the device type's partial defaults
(:mod:`detectors.defaults`), then the device's registry overrides
(``DeviceProfile.options["detectors"]``, e.g. ``{"residual_current": {"alarm_ma": 400}}``).
Mappings are merged key by key; inside a mapping field (``events``, ``metrics``) a ``null``
removes the entry; anything else replaces. A key that names no detector, a field the
detector's model does not have, a bad value, or a metric the device type does not report is a
:class:`DetectorConfigError` naming it.

``clock`` is not a detector: it configures how the engine treats readings older than the
newest one seen (see :mod:`detectors.engine`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from detectors import defaults, registry
from detectors.registry import DetectorConfig
from devices.profiles import DeviceProfile

M = TypeVar("M", bound=BaseModel)

OPTIONS_KEY = "detectors"
CLOCK_KEY = "clock"


class DetectorConfigError(ValueError):
    """A detector config (type default or device override) cannot be used; says which key."""


class ClockConfig(BaseModel):
    """How readings older than the newest one seen from a device are treated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    jump_s: float = Field(
        300.0,
        gt=0,
        description="A reading older than the device's newest by more than this (s) counts "
        "toward a clock reset; smaller lateness is plain reordering.",
    )
    reset_after: int = Field(
        3,
        ge=1,
        description="After this many such readings in a row the device clock is taken to have "
        "jumped back: detectors drop their timers and windows (open conditions stay) and follow "
        "the new time line.",
    )


@dataclass(frozen=True, slots=True)
class ResolvedConfig:
    """Everything one device's detectors are built from."""

    clock: ClockConfig
    detectors: Mapping[str, DetectorConfig]


def merge(base: Mapping[str, Any], over: Mapping[str, Any], *, top: bool = True) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        current = out.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            out[key] = merge(current, value, top=False)
        elif value is None and not top:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def resolve(profile: DeviceProfile) -> ResolvedConfig:
    """The validated detector configs of a device (its profile carries its overrides)."""
    where = f"type {profile.type_key!r}"
    overrides = _overrides(profile.options.get(OPTIONS_KEY), where)
    clock = _validate(ClockConfig, {}, overrides.get(CLOCK_KEY), CLOCK_KEY, where)
    type_defaults = defaults.for_type(profile.type_key)
    keys = [*type_defaults, *(k for k in overrides if k not in type_defaults and k != CLOCK_KEY)]
    configs: dict[str, DetectorConfig] = {}
    for key in keys:
        entry = _entry(key, where)
        cfg = _validate(entry.config, type_defaults.get(key, {}), overrides.get(key), key, where)
        configs[key] = cfg
    return ResolvedConfig(clock=clock, detectors=configs)


def build(profile: DeviceProfile, resolved: ResolvedConfig | None = None) -> list[Any]:
    """The enabled detectors of a device, checked against the metrics its type reports."""
    resolved = resolved or resolve(profile)
    built = []
    for key, cfg in resolved.detectors.items():
        if not cfg.enabled:
            continue
        detector = registry.get(key).build(cfg, profile)
        unknown = sorted(set(getattr(detector, "metrics", ())) - set(profile.metrics))
        if profile.metrics and unknown:
            raise DetectorConfigError(
                f"detectors.{key}: type {profile.type_key!r} reports no metric {unknown[0]!r} "
                f"(it reports: {', '.join(sorted(profile.metrics))})"
            )
        built.append(detector)
    return built


def check_overrides(value: object) -> str | None:
    """Registry-import check of a device's ``detectors`` override (no profile at hand, so it
    is checked against model defaults; the full check runs when the device's detectors are
    built). Returns why the value is unacceptable, or None."""
    try:
        overrides = _overrides(value, "device")
        _validate(ClockConfig, {}, overrides.get(CLOCK_KEY), CLOCK_KEY, "device")
        for key, over in overrides.items():
            if key != CLOCK_KEY:
                _validate(_entry(key, "device").config, {}, over, key, "device")
    except DetectorConfigError as exc:
        return str(exc)
    return None


def _overrides(raw: object, where: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise DetectorConfigError(f"{OPTIONS_KEY} ({where}) must be an object of detector keys")
    return raw


def _entry(key: str, where: str) -> registry.DetectorType[Any]:
    try:
        return registry.get(key)
    except registry.UnknownDetector:
        known = ", ".join([*registry.registered(), CLOCK_KEY])
        raise DetectorConfigError(
            f"{OPTIONS_KEY}.{key} ({where}): no such detector (known: {known})"
        ) from None


def _validate(
    model: type[M], type_default: Mapping[str, Any], over: object, key: str, where: str
) -> M:
    if over is not None and not isinstance(over, Mapping):
        raise DetectorConfigError(
            f"{OPTIONS_KEY}.{key} ({where}) must be an object of settings, got {over!r}"
        )
    base = merge(model.model_validate({}).model_dump(), type_default)
    try:
        return model.model_validate(merge(base, over or {}))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            problems.append(f"{OPTIONS_KEY}.{key}{'.' + loc if loc else ''}: {err['msg']}")
        raise DetectorConfigError(f"{'; '.join(problems)} ({where})") from None
