"""The threshold rules of the field, each a config over :class:`ThresholdDetector`.

Numbers are from docs/domain (GB 14287 electrical-fire monitors, fire-water codes); every one
can be changed per device type (``detectors/defaults.py``) and per device (registry overrides).
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from detectors.base import Label, Severity
from detectors.registry import DetectorConfig, register
from detectors.threshold import LevelSpec, ThresholdDetector
from devices.profiles import DeviceProfile

CABLE_PROBES = [f"cable_temp_c_{i}" for i in range(1, 5)]
PHASE_CURRENTS = [f"current_a_{p}" for p in "abc"]


class ResidualCurrentConfig(DetectorConfig):
    """Residual (leakage) current of an electrical-fire monitor."""

    metric: str = Field("residual_current_ma", description="Metric holding the residual current.")
    alarm_ma: float = Field(
        300.0,
        gt=0,
        le=1000,
        description="Raise at or above this (mA). Normal leakage is 100–200 mA; the standard "
        "allows 300–500 mA (300 common), adjustable up to 1000 mA.",
    )
    clear_ma: float = Field(250.0, ge=0, description="Clear below this (mA); below alarm_ma.")
    hold_s: float = Field(
        5.0,
        ge=0,
        le=30,
        description="The value must stay at or above alarm_ma this long (s) before the alarm is "
        "raised; the standard requires an alarm within 30 s.",
    )
    min_samples: int = Field(1, ge=1, description="Distinct readings needed at or above alarm_ma.")
    severity: Severity = Field("orange", description="Suggested severity of the alarm.")

    @model_validator(mode="after")
    def _levels(self) -> Self:
        if self.clear_ma >= self.alarm_ma:
            raise ValueError(f"clear_ma ({self.clear_ma}) must be below alarm_ma ({self.alarm_ma})")
        return self


def build_residual_current(cfg: ResidualCurrentConfig, _: DeviceProfile) -> ThresholdDetector:
    label = Label("residual_current_high", "electrical", cfg.severity)
    level = LevelSpec(
        "alarm", True, cfg.alarm_ma, cfg.clear_ma, cfg.hold_s, cfg.min_samples, 0.0, label
    )
    return ThresholdDetector("residual_current", [cfg.metric], [level])


class CableTempConfig(DetectorConfig):
    """Cable temperature probes (up to 4 per monitor): pre-alarm and alarm levels."""

    metrics: list[str] = Field(
        default_factory=lambda: list(CABLE_PROBES), description="Probe metrics watched."
    )
    alarm_c: float = Field(
        70.0,
        gt=0,
        le=200,
        description="Raise the alarm at or above this (°C); PVC cable's design limit is 70 °C, "
        "typical settings 70–80 °C.",
    )
    pre_alarm_c: float | None = Field(
        60.0,
        description="Raise a pre-alarm at or above this (°C), ~10 °C below alarm_c; null: none.",
    )
    clear_delta_c: float = Field(
        5.0, gt=0, description="A level clears below its raise level minus this (°C)."
    )
    hold_s: float = Field(10.0, ge=0, description="A level must hold this long (s) to be raised.")
    min_samples: int = Field(
        2, ge=1, description="Distinct readings needed at a level (one hot sample is a glitch)."
    )
    alarm_severity: Severity = Field("orange", description="Suggested severity of the alarm.")
    pre_alarm_severity: Severity = Field(
        "yellow", description="Suggested severity of the pre-alarm."
    )

    @model_validator(mode="after")
    def _levels(self) -> Self:
        if self.pre_alarm_c is not None and self.pre_alarm_c >= self.alarm_c:
            raise ValueError(
                f"pre_alarm_c ({self.pre_alarm_c}) must be below alarm_c ({self.alarm_c})"
            )
        return self


def build_cable_temp(cfg: CableTempConfig, _: DeviceProfile) -> ThresholdDetector:
    levels = [
        LevelSpec(
            "alarm",
            True,
            cfg.alarm_c,
            cfg.alarm_c - cfg.clear_delta_c,
            cfg.hold_s,
            cfg.min_samples,
            0.0,
            Label("cable_overtemp", "electrical", cfg.alarm_severity),
        )
    ]
    if cfg.pre_alarm_c is not None:
        levels.append(
            LevelSpec(
                "pre_alarm",
                True,
                cfg.pre_alarm_c,
                cfg.pre_alarm_c - cfg.clear_delta_c,
                cfg.hold_s,
                cfg.min_samples,
                0.0,
                Label("cable_overtemp", "electrical", cfg.pre_alarm_severity),
            )
        )
    return ThresholdDetector("cable_temp", cfg.metrics, levels)


class PressureLevelConfig(DetectorConfig):
    """Fire-water pressure too low (network cannot fight a fire) or too high."""

    metric: str = Field("pressure_mpa", description="Metric holding the pressure.")
    low_mpa: float | None = Field(
        0.15,
        ge=0,
        le=1.6,
        description="Raise pressure_low below this (MPa); hydrant networks need ≥ 0.10–0.14. "
        "null: no low alarm.",
    )
    low_clear_mpa: float = Field(
        0.17, ge=0, le=1.6, description="pressure_low clears at or above this (MPa)."
    )
    high_mpa: float | None = Field(
        1.0, ge=0, le=1.6, description="Raise pressure_high at or above this (MPa); null: none."
    )
    high_clear_mpa: float = Field(
        0.95, ge=0, le=1.6, description="pressure_high clears below this (MPa)."
    )
    hold_s: float = Field(
        30.0, ge=0, description="A level must hold this long (s); water hammer is shorter."
    )
    min_samples: int = Field(2, ge=1, description="Distinct readings needed beyond a level.")
    low_severity: Severity = Field("orange", description="Suggested severity of pressure_low.")
    high_severity: Severity = Field("yellow", description="Suggested severity of pressure_high.")

    @model_validator(mode="after")
    def _levels(self) -> Self:
        if self.low_mpa is not None and self.low_clear_mpa <= self.low_mpa:
            raise ValueError(
                f"low_clear_mpa ({self.low_clear_mpa}) must be above low_mpa ({self.low_mpa})"
            )
        if self.high_mpa is not None and self.high_clear_mpa >= self.high_mpa:
            raise ValueError(
                f"high_clear_mpa ({self.high_clear_mpa}) must be below high_mpa ({self.high_mpa})"
            )
        if self.low_mpa is not None and self.high_mpa is not None and self.low_mpa >= self.high_mpa:
            raise ValueError(f"low_mpa ({self.low_mpa}) must be below high_mpa ({self.high_mpa})")
        return self


def build_pressure_level(cfg: PressureLevelConfig, _: DeviceProfile) -> ThresholdDetector:
    levels = []
    if cfg.low_mpa is not None:
        levels.append(
            LevelSpec(
                "low",
                False,
                cfg.low_mpa,
                cfg.low_clear_mpa,
                cfg.hold_s,
                cfg.min_samples,
                0.0,
                Label("pressure_low", "water", cfg.low_severity),
            )
        )
    if cfg.high_mpa is not None:
        levels.append(
            LevelSpec(
                "high",
                True,
                cfg.high_mpa,
                cfg.high_clear_mpa,
                cfg.hold_s,
                cfg.min_samples,
                0.0,
                Label("pressure_high", "water", cfg.high_severity),
            )
        )
    return ThresholdDetector("pressure_level", [cfg.metric], levels)


class SmokeObscurationConfig(DetectorConfig):
    """Server-side backstop on reported obscuration, for when a device's own alarm is lost."""

    metric: str = Field("smoke_obscuration_db_m", description="Metric holding the obscuration.")
    alarm_db_m: float = Field(
        0.2,
        gt=0,
        description="Raise smoke_alarm at or above this (dB/m): the top of the 0.05–0.2 dB/m "
        "range devices alarm at, so a device should have alarmed already.",
    )
    clear_db_m: float = Field(0.1, ge=0, description="Clear below this (dB/m).")
    hold_s: float = Field(10.0, ge=0, description="The level must hold this long (s).")
    min_samples: int = Field(1, ge=1, description="Distinct readings needed at the level.")
    severity: Severity = Field(
        "orange", description="Suggested severity (the device did not decide)."
    )

    @model_validator(mode="after")
    def _levels(self) -> Self:
        if self.clear_db_m >= self.alarm_db_m:
            raise ValueError(
                f"clear_db_m ({self.clear_db_m}) must be below alarm_db_m ({self.alarm_db_m})"
            )
        return self


def build_smoke_obscuration(cfg: SmokeObscurationConfig, _: DeviceProfile) -> ThresholdDetector:
    label = Label("smoke_alarm", "fire", cfg.severity)
    level = LevelSpec(
        "obscuration", True, cfg.alarm_db_m, cfg.clear_db_m, cfg.hold_s, cfg.min_samples, 0.0, label
    )
    return ThresholdDetector("smoke_obscuration", [cfg.metric], [level])


class OverloadConfig(DetectorConfig):
    """Phase current above the breaker rating; needs the device's rating from the registry."""

    enabled: bool = Field(False, description="Run this detector (needs rating_a).")
    metrics: list[str] = Field(
        default_factory=lambda: list(PHASE_CURRENTS), description="Phase-current metrics watched."
    )
    rating_a: float | None = Field(
        None, gt=0, description="Breaker rating (A) of the circuit; required when enabled."
    )
    clear_ratio: float = Field(
        0.9, gt=0, lt=1, description="Clears below this fraction of rating_a."
    )
    hold_s: float = Field(60.0, ge=0, description="The overload must hold this long (s).")
    min_samples: int = Field(2, ge=1, description="Distinct readings needed above the rating.")
    severity: Severity = Field("yellow", description="Suggested severity.")

    @model_validator(mode="after")
    def _rating(self) -> Self:
        if self.enabled and self.rating_a is None:
            raise ValueError("rating_a is required when the overload detector is enabled")
        return self


def build_overload(cfg: OverloadConfig, _: DeviceProfile) -> ThresholdDetector:
    assert cfg.rating_a is not None  # checked by the model when enabled
    level = LevelSpec(
        "overload",
        True,
        cfg.rating_a,
        cfg.rating_a * cfg.clear_ratio,
        cfg.hold_s,
        cfg.min_samples,
        0.0,
        Label("overload", "electrical", cfg.severity),
    )
    return ThresholdDetector("overload", cfg.metrics, [level])


register(
    "residual_current",
    ResidualCurrentConfig,
    build_residual_current,
    "Residual current ≥ alarm_ma held hold_s, clears below clear_ma.",
)
register(
    "cable_temp",
    CableTempConfig,
    build_cable_temp,
    "Cable temperature pre-alarm and alarm levels per probe.",
)
register(
    "pressure_level",
    PressureLevelConfig,
    build_pressure_level,
    "Fire-water pressure low / high with hold and hysteresis.",
)
register(
    "smoke_obscuration",
    SmokeObscurationConfig,
    build_smoke_obscuration,
    "Obscuration level backstop for smoke detectors.",
)
register(
    "overload",
    OverloadConfig,
    build_overload,
    "Phase current above the breaker rating (per-device rating_a).",
)
