"""Detector configs: registry, per-type defaults, per-device overrides, clear errors."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

import detectors
from detectors import DetectorConfigError, DeviceDetectors, check_overrides, registry, resolve
from detectors.baseline import BaselineConfig
from detectors.config import ClockConfig, ResolvedConfig
from detectors.reference import render
from detectors.threshold_rules import ResidualCurrentConfig
from devices.overrides import OverrideError, parse_overrides
from devices.profiles import DeviceProfile, MetricSpec, get_profile, metrics

EF = get_profile("electrical_fire_monitor")


def baseline(resolved: ResolvedConfig) -> BaselineConfig:
    cfg = resolved.detectors["baseline"]
    assert isinstance(cfg, BaselineConfig)
    return cfg


def with_detectors(profile: DeviceProfile, value: Any) -> DeviceProfile:
    return profile.with_overrides({"detectors": value})


@pytest.mark.parametrize(
    ("type_key", "expected"),
    [
        (
            "smoke_detector",
            {"device_events", "smoke_obscuration", "battery", "liveness", "flapping"},
        ),
        (
            "electrical_fire_monitor",
            {
                "device_events",
                "residual_current",
                "cable_temp",
                "cable_temp_rise",
                "baseline",
                "battery",
                "liveness",
                "flapping",
            },
        ),
        (
            "water_pressure_sensor",
            {
                "device_events",
                "pressure_level",
                "pressure_drop",
                "baseline",
                "battery",
                "liveness",
                "flapping",
            },
        ),
        ("camera", set()),
    ],
)
def test_type_defaults(type_key: str, expected: set[str]) -> None:
    assert set(DeviceDetectors.for_profile(get_profile(type_key)).keys) == expected


def test_device_override_is_laid_over_type_defaults() -> None:
    resolved = resolve(with_detectors(EF, {"residual_current": {"alarm_ma": 400}}))
    cfg = resolved.detectors["residual_current"]
    assert isinstance(cfg, ResidualCurrentConfig)
    assert cfg.alarm_ma == 400 and cfg.clear_ma == 250 and cfg.hold_s == 5
    base = baseline(resolved)
    assert base.metrics == {"residual_current_ma": 10.0}
    assert base.category == "electrical"


def test_nested_mapping_merges_and_null_removes() -> None:
    resolved = resolve(with_detectors(EF, {"baseline": {"metrics": {"cable_temp_c_1": 2.0}}}))
    assert baseline(resolved).metrics == {
        "residual_current_ma": 10.0,
        "cable_temp_c_1": 2.0,
    }
    resolved = resolve(with_detectors(EF, {"baseline": {"metrics": {"residual_current_ma": None}}}))
    assert baseline(resolved).metrics == {}


def test_disable_and_enable_by_override() -> None:
    eng = DeviceDetectors.for_profile(
        with_detectors(
            EF,
            {"cable_temp_rise": {"enabled": False}, "overload": {"enabled": True, "rating_a": 32}},
        )
    )
    assert "cable_temp_rise" not in eng.keys and "overload" in eng.keys


def test_detector_not_in_type_defaults_can_be_added() -> None:
    eng = DeviceDetectors.for_profile(
        with_detectors(
            get_profile("smoke_detector"), {"baseline": {"metrics": {"temperature_c": 2}}}
        )
    )
    assert "baseline" in eng.keys


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"residual_curent": {"alarm_ma": 400}}, "detectors.residual_curent"),
        (
            {"residual_current": {"alarm_mA": 400}},
            "detectors.residual_current.alarm_mA: Extra inputs",
        ),
        ({"residual_current": {"alarm_ma": "lots"}}, "detectors.residual_current.alarm_ma"),
        ({"residual_current": {"alarm_ma": 2000}}, "detectors.residual_current.alarm_ma"),
        (
            {"residual_current": {"alarm_ma": 240}},
            "clear_ma (250.0) must be below alarm_ma (240.0)",
        ),
        ({"residual_current": 400}, "detectors.residual_current"),
        ({"baseline": {"metrics": {"presure_mpa": 0.02}}}, "no metric 'presure_mpa'"),
        ({"overload": {"enabled": True}}, "rating_a is required"),
        ({"device_events": {"events": {"alarm": {"severity": "purple"}}}}, "events.alarm.severity"),
        (
            {
                "device_events": {
                    "events": {"explode": {"type": "x", "category": "fire", "severity": "red"}}
                }
            },
            "explode",
        ),
        ({"clock": {"jump": 5}}, "detectors.clock.jump"),
        ("yes", "must be an object"),
    ],
)
def test_bad_config_names_the_key(value: Any, fragment: str) -> None:
    with pytest.raises(DetectorConfigError) as err:
        DeviceDetectors.for_profile(with_detectors(EF, value))
    assert fragment in str(err.value)


def test_clock_override() -> None:
    eng = DeviceDetectors.for_profile(with_detectors(EF, {"clock": {"reset_after": 5}}))
    assert eng.clock == ClockConfig(jump_s=300, reset_after=5)


def test_registry_import_checks_the_detectors_override() -> None:
    assert check_overrides({"residual_current": {"alarm_ma": 400}}) is None
    assert "alarm_mA" in (check_overrides({"residual_current": {"alarm_mA": 400}}) or "")
    ok = parse_overrides({"detectors": {"residual_current": {"alarm_ma": 400}}}, EF)
    assert ok.options["detectors"] == {"residual_current": {"alarm_ma": 400}}
    with pytest.raises(OverrideError, match="residual_curent"):
        parse_overrides({"detectors": {"residual_curent": {}}}, EF)


def test_new_device_type_gets_generic_detectors() -> None:
    profile = DeviceProfile(
        type_key="gas_detector",
        description="test",
        metrics=metrics(MetricSpec("battery_pct", "%", 0, 100)),
        heartbeat_interval_s=600,
    )
    assert set(DeviceDetectors.for_profile(profile).keys) == {
        "device_events",
        "battery",
        "liveness",
        "flapping",
    }


def _models() -> list[tuple[str, type[BaseModel]]]:
    return [("clock", ClockConfig), *((k, registry.get(k).config) for k in registry.registered())]


def test_every_field_is_described_and_in_the_reference() -> None:
    text = render()
    for key, model in _models():
        assert model.model_config.get("extra") == "forbid"
        for name, field in model.model_fields.items():
            assert field.description, f"{key}.{name} has no description"
            assert f"`{key}.{name}`" in text
    for type_key in ("smoke_detector", "electrical_fire_monitor", "water_pressure_sensor"):
        assert f"**{type_key}**" in text


def test_public_names() -> None:
    assert set(detectors.registered()) >= {
        "device_events",
        "residual_current",
        "cable_temp",
        "pressure_level",
        "smoke_obscuration",
        "overload",
        "pressure_drop",
        "cable_temp_rise",
        "baseline",
        "battery",
        "liveness",
        "flapping",
    }
