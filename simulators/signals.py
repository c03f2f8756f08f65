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
from statistics import NormalDist
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
    heartbeat_metrics: frozenset[str]  # what its heartbeats carry (the rest is telemetry)

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


_NORMAL_STEPS = 4096
_NORMAL = tuple(NormalDist().inv_cdf((i + 0.5) / _NORMAL_STEPS) for i in range(_NORMAL_STEPS))
_CABLES = tuple(f"cable_temp_c_{n}" for n in range(1, 5))
_CURRENTS = ("current_a_a", "current_a_b", "current_a_c")
_VOLTAGES = ("voltage_v_a", "voltage_v_b", "voltage_v_c")


def noise(rng: Random, sigma: float) -> float:
    """Normal noise, N(0, sigma), from a 4096-step inverse-CDF table (|z| < 3.6): a tenth of
    ``random.gauss``'s cost, which matters at tens of thousands of values a second."""
    return _NORMAL[int(rng.random() * _NORMAL_STEPS)] * sigma


def cycle(at: Moment, peak_hour: float) -> float:
    """-1..1 over the day, 1 at ``peak_hour`` (local time)."""
    return math.cos(2 * math.pi * (at.local_hour - peak_hour) / 24.0)


def bump(at: Moment, hour: float, width_h: float) -> float:
    """0..1, a peak around ``hour`` (local time) that wraps at midnight."""
    distance = abs(at.local_hour - hour) % 24.0
    distance = min(distance, 24.0 - distance)
    return math.exp(-((distance / width_h) ** 2))


LOW_BATTERY_PCT = 20.0  # below this a battery device says ``low_battery`` (docs/domain.md)
AGEING_SHARE = 0.03  # devices whose battery is near its end when the fleet starts
DRAIN_PCT_PER_DAY = (0.02, 0.08)  # a 3–14 year battery, varying with radio and reporting
RADIO_METRICS = frozenset({"battery_pct", "rssi_dbm"})


@dataclass(frozen=True, slots=True)
class Radio:
    """Battery and signal of a wireless device. Batteries differ: each drains at its own
    rate, and a few are near their end from the start, so a county always has some devices
    crossing the low-battery line."""

    battery_pct: float  # at the start
    drain_pct_per_day: float
    rssi_dbm: float

    @classmethod
    def draw(cls, rng: Random, *, battery: bool = True) -> Radio:
        ageing = rng.random() < AGEING_SHARE
        start = rng.uniform(15.0, 30.0) if ageing else rng.uniform(60.0, 100.0)
        return cls(
            battery_pct=start if battery else math.nan,
            drain_pct_per_day=rng.uniform(*DRAIN_PCT_PER_DAY),
            rssi_dbm=rng.uniform(-105.0, -70.0),
        )

    def values(self, rng: Random, at: Moment) -> dict[str, float]:
        values = {"rssi_dbm": float(round(_clip(self.rssi_dbm + noise(rng, 2.0), -150.0, 0.0)))}
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
    heartbeat_metrics = RADIO_METRICS

    def baseline(self, rng: Random) -> SmokeBase:
        return SmokeBase(rng.uniform(0.005, 0.02), rng.uniform(24.0, 28.0), Radio.draw(rng))

    def telemetry(self, base: SmokeBase, rng: Random, at: Moment) -> dict[str, float]:
        return {
            "smoke_obscuration_db_m": round(max(0.0, base.obscuration_db_m + noise(rng, 0.003)), 3),
            "temperature_c": round(base.room_temp_c + 3.0 * cycle(at, 15.0) + noise(rng, 0.3), 1),
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
    heartbeat_metrics = frozenset({"rssi_dbm"})  # mains powered

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
        values = {"residual_current_ma": round(base.residual_ma + 30.0 * load + noise(rng, 2.0), 1)}
        for name, cable in zip(_CABLES, base.cable_c, strict=False):
            values[name] = round(cable + 8.0 * load + noise(rng, 0.3), 1)
        for name, share in zip(_CURRENTS, base.balance, strict=True):
            current = base.rated_a * (0.2 + 0.5 * load) * share + noise(rng, 0.5)
            values[name] = round(max(0.0, current), 1)
        for name in _VOLTAGES:
            values[name] = round(base.voltage_v - 6 * load + noise(rng, 0.8), 1)
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
    heartbeat_metrics = RADIO_METRICS

    def baseline(self, rng: Random) -> WaterBase:
        return WaterBase(rng.uniform(0.26, 0.36), Radio.draw(rng))

    def telemetry(self, base: WaterBase, rng: Random, at: Moment) -> dict[str, float]:
        demand = max(bump(at, 7.5, 1.5), bump(at, 19.0, 2.0))
        pressure = base.pressure_mpa - 0.04 * demand + noise(rng, 0.003)
        return {"pressure_mpa": round(_clip(pressure, 0.0, 1.6), 3)}

    def heartbeat(self, base: WaterBase, rng: Random, at: Moment) -> dict[str, float]:
        return base.radio.values(rng, at)


register_signals(SmokeDetectorSignals())
register_signals(ElectricalFireSignals())
register_signals(WaterPressureSignals())
