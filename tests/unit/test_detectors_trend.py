"""Trend rules: pressure drop, cable temperature rise; spikes, slow drifts and gaps."""

from __future__ import annotations

import random

from detectors import DeviceDetectors, Hit
from detectors.trend import PressureDropConfig, TrendState, build_pressure_drop
from devices.messages import Reading
from devices.profiles import get_profile

WP = "WP-1"


def feed(
    eng: DeviceDetectors, samples: list[tuple[float, dict[str, float]]], device_id: str = WP
) -> list[Hit]:
    state = eng.initial_state(device_id, 0.0)
    hits: list[Hit] = []
    for ts, values in samples:
        out = eng.on_reading(state, Reading(device_id, ts, None, values, ts), ts)
        state = out.state
        hits += out.hits
    return hits


def water() -> DeviceDetectors:
    return DeviceDetectors.for_profile(get_profile("water_pressure_sensor"))


def electrical() -> DeviceDetectors:
    return DeviceDetectors.for_profile(get_profile("electrical_fire_monitor"))


def drops(hits: list[Hit]) -> list[tuple[str, float]]:
    return [(h.phase, h.ts) for h in hits if h.detector == "pressure_drop"]


def steady(
    start: float, end: float, value: float, step: float = 60
) -> list[tuple[float, dict[str, float]]]:
    out = []
    t = start
    while t < end:
        out.append((t, {"pressure_mpa": value}))
        t += step
    return out


def test_burst_pipe_drop_raises_after_confirmation() -> None:
    samples = [*steady(0, 600, 0.35), (600, {"pressure_mpa": 0.15}), (660, {"pressure_mpa": 0.10})]
    hits = feed(water(), samples)
    assert drops(hits) == [("raised", 660)]
    hit = next(h for h in hits if h.detector == "pressure_drop")
    assert (hit.type, hit.category, hit.severity) == ("pressure_drop", "water", "orange")
    assert hit.evidence["reference"] == 0.35 and hit.evidence["delta"] == 0.25
    assert hit.evidence["rate_per_min"] > 0.02


def test_drop_within_normal_range_is_still_a_drop() -> None:
    # 0.60 → 0.40: no level alarm, but a valve closed somewhere.
    samples = [*steady(0, 600, 0.60), (600, {"pressure_mpa": 0.45}), (660, {"pressure_mpa": 0.40})]
    hits = feed(water(), samples)
    assert drops(hits) == [("raised", 660)]
    assert not [h for h in hits if h.detector == "pressure_level"]


def test_single_sample_dip_is_a_spike_not_a_drop() -> None:
    samples = [*steady(0, 600, 0.35), (600, {"pressure_mpa": 0.05}), *steady(660, 1200, 0.35)]
    assert drops(feed(water(), samples)) == []


def test_slow_decline_is_not_a_drop() -> None:
    samples = [(t * 60.0, {"pressure_mpa": 0.40 - 0.005 * t}) for t in range(60)]
    assert drops(feed(water(), samples)) == []


def test_no_drop_rate_across_a_two_hour_gap() -> None:
    samples = [
        *steady(0, 600, 0.35),
        (600 + 7200, {"pressure_mpa": 0.20}),
        (7860, {"pressure_mpa": 0.20}),
    ]
    assert drops(feed(water(), samples)) == []


def test_drop_clears_when_pressure_recovers() -> None:
    samples = [
        *steady(0, 600, 0.35),
        (600, {"pressure_mpa": 0.15}),
        (660, {"pressure_mpa": 0.10}),
        *steady(720, 1800, 0.10),  # stays low long after the window: still raised
        (1800, {"pressure_mpa": 0.25}),
        (1860, {"pressure_mpa": 0.31}),
    ]
    assert drops(feed(water(), samples)) == [("raised", 660), ("cleared", 1860)]


def test_fast_cable_temperature_rise_then_settles() -> None:
    samples: list[tuple[float, dict[str, float]]] = [
        (t, {"cable_temp_c_2": 35.0}) for t in range(0, 120, 10)
    ]
    temp = 35.0
    for t in range(120, 240, 10):  # +3 °C every 10 s = 18 °C/min
        temp += 3
        samples.append((t, {"cable_temp_c_2": temp}))
    samples += [(t, {"cable_temp_c_2": temp}) for t in range(240, 600, 10)]
    hits = [h for h in feed(electrical(), samples, "EF-1") if h.detector == "cable_temp_rise"]
    assert [(h.phase, h.metric) for h in hits] == [
        ("raised", "cable_temp_c_2"),
        ("cleared", "cable_temp_c_2"),
    ]
    raised, cleared = hits
    assert raised.ts < 200 and raised.evidence["rate_per_min"] >= 10
    assert cleared.ts > 240  # once the rise has left the window


def test_noisy_temperature_is_not_a_rise() -> None:
    rng = random.Random(7)
    samples = [(float(t), {"cable_temp_c_1": 40 + rng.uniform(-1.5, 1.5)}) for t in range(3600)]
    hits = feed(electrical(), samples, "EF-1")
    assert [h for h in hits if h.detector == "cable_temp_rise"] == []


def test_duplicate_and_older_readings_change_nothing() -> None:
    det = build_pressure_drop(
        PressureDropConfig.model_validate({}), get_profile("water_pressure_sensor")
    )
    state = det.initial_state()
    for t in range(0, 600, 60):
        state, _ = det.on_reading(Reading(WP, t, None, {"pressure_mpa": 0.35}, t), state, t)
    for ts in (540.0, 100.0):
        same, hits = det.on_reading(Reading(WP, ts, None, {"pressure_mpa": 0.0}, 600), state, 600)
        assert same is state and hits == ()


def test_memory_is_bounded_by_buckets() -> None:
    det = build_pressure_drop(
        PressureDropConfig.model_validate({}), get_profile("water_pressure_sensor")
    )
    state: TrendState = det.initial_state()
    for t in range(5000):  # 1 Hz for well over the 900 s window
        state, _ = det.on_reading(Reading(WP, t, None, {"pressure_mpa": 0.35}, t), state, t)
    assert len(state.tracks["pressure_mpa"].pts) <= 2 * (12 + 1)
