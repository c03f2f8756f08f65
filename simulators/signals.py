"""What a healthy device of each type reports: values around field normals, with noise and a
daily cycle, registered by type key.

Normals follow docs/domain.md: residual current 100–200 mA with the evening load, cable
temperatures 30–45 °C, hydrant network pressure ~0.3 MPa dipping at the morning and
evening demand peaks, batteries draining slowly. Heartbeat intervals are the profiles'
(``devices.profiles``); telemetry intervals are the simulator's own defaults.

A model is pure: a per-device baseline drawn once from the device's random stream, and
values from the baseline, that stream and the simulated moment. Adding a type is a new
model and a :func:`register_signals` call; types without a model (cameras, which are pulled
over RTSP rather than publishing) are left out of a fleet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from random import Random
from typing import Any, Protocol, TypeVar

from devices.profiles import get_profile

_CHINA_UTC_OFFSET_S = 8 * 3600
_DAY_S = 86_400.0

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Moment:
    """A simulated instant: seconds since the fleet started, and the epoch time it stands for
    (which drives the daily cycle)."""

    since_start: float
    epoch: float

    @property
    def local_hour(self) -> float:
        """Hour of day in China (UTC+8), 0 ≤ h < 24."""
        return ((self.epoch + _CHINA_UTC_OFFSET_S) % _DAY_S) / 3600.0

    @property
    def days(self) -> float:
        return self.since_start / _DAY_S


class SignalModel(Protocol[S]):
    """Values of one device type; ``S`` is the per-device baseline."""

    type_key: str
    telemetry_s: float | None  # None: this type sends no periodic telemetry
    heartbeat_s: float | None

    def baseline(self, rng: Random) -> S: ...

    def telemetry(self, base: S, rng: Random, at: Moment) -> dict[str, float]: ...

    def heartbeat(self, base: S, rng: Random, at: Moment) -> dict[str, float]: ...


_MODELS: dict[str, SignalModel[Any]] = {}


def register_signals(model: SignalModel[Any]) -> SignalModel[Any]:
    _MODELS[model.type_key] = model
    return model


def signals_for(type_key: str) -> SignalModel[Any] | None:
    return _MODELS.get(type_key)


def simulated_types() -> list[str]:
    return sorted(_MODELS)


def cycle(at: Moment, peak_hour: float) -> float:
    """-1..1 over the day, 1 at ``peak_hour`` (local time)."""
    return math.cos(2 * math.pi * (at.local_hour - peak_hour) / 24.0)


def bump(at: Moment, hour: float, width_h: float) -> float:
    """0..1, a peak around ``hour`` (local time) that wraps at midnight."""
    distance = abs(at.local_hour - hour) % 24.0
    distance = min(distance, 24.0 - distance)
    return math.exp(-((distance / width_h) ** 2))


@dataclass(frozen=True, slots=True)
class Radio:
    """Battery and signal of a wireless device."""

    battery_pct: float  # at the start
    drain_pct_per_day: float
    rssi_dbm: float

    @classmethod
    def draw(cls, rng: Random, *, battery: bool = True) -> Radio:
        return cls(
            battery_pct=rng.uniform(60.0, 100.0) if battery else math.nan,
            drain_pct_per_day=0.05,  # a 3–10 year battery
            rssi_dbm=rng.uniform(-105.0, -70.0),
        )

    def values(self, rng: Random, at: Moment) -> dict[str, float]:
        values = {"rssi_dbm": float(round(_clip(rng.gauss(self.rssi_dbm, 2.0), -150.0, 0.0)))}
        if not math.isnan(self.battery_pct):
            left = self.battery_pct - self.drain_pct_per_day * at.days
            values["battery_pct"] = round(_clip(left, 0.0, 100.0), 1)
        return values


def _clip(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _profile_heartbeat(type_key: str) -> float:
    return get_profile(type_key).heartbeat_interval_s


@dataclass(frozen=True, slots=True)
class SmokeBase:
    obscuration_db_m: float
    room_temp_c: float
    radio: Radio


class SmokeDetectorSignals:
    """Clean air (~0.01 dB/m), room temperature warmest mid-afternoon, battery and NB-IoT
    signal in the heartbeat."""

    type_key = "smoke_detector"
    telemetry_s: float | None = 3600.0
    heartbeat_s: float | None = _profile_heartbeat("smoke_detector")

    def baseline(self, rng: Random) -> SmokeBase:
        return SmokeBase(rng.uniform(0.005, 0.02), rng.uniform(24.0, 28.0), Radio.draw(rng))

    def telemetry(self, base: SmokeBase, rng: Random, at: Moment) -> dict[str, float]:
        return {
            "smoke_obscuration_db_m": round(max(0.0, rng.gauss(base.obscuration_db_m, 0.003)), 3),
            "temperature_c": round(base.room_temp_c + 3.0 * cycle(at, 15.0) + rng.gauss(0, 0.3), 1),
        }

    def heartbeat(self, base: SmokeBase, rng: Random, at: Moment) -> dict[str, float]:
        return base.radio.values(rng, at)


@dataclass(frozen=True, slots=True)
class ElectricalBase:
    residual_ma: float
    cable_c: tuple[float, ...]  # one per probe (1–4)
    rated_a: float
    balance: tuple[float, float, float]
    voltage_v: float
    radio: Radio


class ElectricalFireSignals:
    """Residual current 100–200 mA and cable temperatures 30–45 °C, both following the
    evening load peak (20:00); per-phase current and voltage; 4G, mains powered."""

    type_key = "electrical_fire_monitor"
    telemetry_s: float | None = 60.0
    heartbeat_s: float | None = _profile_heartbeat("electrical_fire_monitor")

    def baseline(self, rng: Random) -> ElectricalBase:
        probes = rng.randint(1, 4)
        return ElectricalBase(
            residual_ma=rng.uniform(100.0, 165.0),
            cable_c=tuple(rng.uniform(31.0, 36.0) for _ in range(probes)),
            rated_a=rng.choice((32.0, 63.0, 100.0, 125.0)),
            balance=(rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.1)),
            voltage_v=rng.uniform(222.0, 228.0),
            radio=Radio.draw(rng, battery=False),
        )

    def telemetry(self, base: ElectricalBase, rng: Random, at: Moment) -> dict[str, float]:
        load = 0.5 + 0.5 * cycle(at, 20.0)  # 0..1
        values = {"residual_current_ma": round(base.residual_ma + 30.0 * load + rng.gauss(0, 2), 1)}
        for n, cable in enumerate(base.cable_c, start=1):
            values[f"cable_temp_c_{n}"] = round(cable + 8.0 * load + rng.gauss(0, 0.3), 1)
        for phase, share in zip("abc", base.balance, strict=True):
            current = base.rated_a * (0.2 + 0.5 * load) * share + rng.gauss(0, 0.5)
            values[f"current_a_{phase}"] = round(max(0.0, current), 1)
        for phase in "abc":
            values[f"voltage_v_{phase}"] = round(base.voltage_v - 6 * load + rng.gauss(0, 0.8), 1)
        return values

    def heartbeat(self, base: ElectricalBase, rng: Random, at: Moment) -> dict[str, float]:
        return base.radio.values(rng, at)


@dataclass(frozen=True, slots=True)
class WaterBase:
    pressure_mpa: float
    radio: Radio


class WaterPressureSignals:
    """Hydrant network pressure ~0.3 MPa, 0.04 MPa lower at the 07:30 and 19:00 demand
    peaks; battery powered."""

    type_key = "water_pressure_sensor"
    telemetry_s: float | None = 300.0
    heartbeat_s: float | None = _profile_heartbeat("water_pressure_sensor")

    def baseline(self, rng: Random) -> WaterBase:
        return WaterBase(rng.uniform(0.26, 0.36), Radio.draw(rng))

    def telemetry(self, base: WaterBase, rng: Random, at: Moment) -> dict[str, float]:
        demand = max(bump(at, 7.5, 1.5), bump(at, 19.0, 2.0))
        pressure = base.pressure_mpa - 0.04 * demand + rng.gauss(0, 0.003)
        return {"pressure_mpa": round(_clip(pressure, 0.0, 1.6), 3)}

    def heartbeat(self, base: WaterBase, rng: Random, at: Moment) -> dict[str, float]:
        return base.radio.values(rng, at)


register_signals(SmokeDetectorSignals())
register_signals(ElectricalFireSignals())
register_signals(WaterPressureSignals())
