"""Threshold levels: hold time, hysteresis, spikes, ticks; time is moved by the test."""

from __future__ import annotations

from typing import Any

from detectors import DeviceDetectors, Hit
from detectors.threshold import ThresholdState
from devices.messages import Reading
from devices.profiles import get_profile

EF = "EF-1"


def engine(type_key: str = "electrical_fire_monitor", **overrides: Any) -> DeviceDetectors:
    profile = get_profile(type_key).with_overrides({"detectors": overrides} if overrides else None)
    return DeviceDetectors.for_profile(profile)


class Feed:
    """Drives one device through an engine, collecting hits (now = device time + lag)."""

    def __init__(self, eng: DeviceDetectors, device_id: str = EF, lag: float = 0.0) -> None:
        self.eng = eng
        self.lag = lag
        self.state = eng.initial_state(device_id, 0.0)
        self.device_id = device_id
        self.hits: list[Hit] = []

    def read(self, ts: float, now: float | None = None, **values: float) -> list[Hit]:
        at = ts + self.lag if now is None else now
        reading = Reading(self.device_id, ts, None, values, at)
        out = self.eng.on_reading(self.state, reading, at)
        self.state = out.state
        self.hits += out.hits
        return list(out.hits)

    def tick(self, now: float) -> list[Hit]:
        out = self.eng.on_tick(self.state, now)
        self.state = out.state
        self.hits += out.hits
        return list(out.hits)


def of(hits: list[Hit], detector: str) -> list[tuple[str, str]]:
    return [(h.phase, h.rule) for h in hits if h.detector == detector]


def test_value_above_alarm_shorter_than_hold_does_not_alarm() -> None:
    f = Feed(engine())
    f.read(0, residual_current_ma=150)
    f.read(1, residual_current_ma=350)
    f.read(4, residual_current_ma=360)  # 3 s above
    f.read(5, residual_current_ma=200)  # back below before 5 s
    f.read(9, residual_current_ma=400)
    f.tick(13.9)  # 4.9 s above, still short
    assert of(f.hits, "residual_current") == []


def test_value_held_for_hold_time_alarms_once() -> None:
    f = Feed(engine())
    f.read(0, residual_current_ma=320)
    assert f.read(4, residual_current_ma=330) == []
    hits = f.read(5, residual_current_ma=310)
    assert [(h.phase, h.type, h.severity, h.category) for h in hits] == [
        ("raised", "residual_current_high", "orange", "electrical")
    ]
    hit = hits[0]
    assert hit.condition_key == "EF-1/residual_current/alarm/residual_current_ma"
    assert hit.value == 310 and hit.ts == 5 and hit.evidence["since"] == 0
    f.read(6, residual_current_ma=500)
    f.tick(100)
    assert len(of(f.hits, "residual_current")) == 1


def test_hold_timer_fires_on_tick_without_new_reading() -> None:
    f = Feed(engine())
    f.read(100, residual_current_ma=400)
    assert f.eng.next_wake(f.state) == 105
    assert f.tick(104.9) == []
    hits = f.tick(105)
    assert [(h.phase, h.type) for h in hits] == [("raised", "residual_current_high")]
    assert hits[0].value == 400 and hits[0].evidence["on_tick"] is True


def test_hysteresis_between_clear_and_alarm_keeps_it_raised() -> None:
    f = Feed(engine())
    f.read(0, residual_current_ma=300)
    f.read(5, residual_current_ma=300)
    assert of(f.hits, "residual_current") == [("raised", "alarm")]
    for t, v in [(6, 299), (7, 260), (8, 250), (9, 280)]:
        f.read(t, residual_current_ma=v)
    assert of(f.hits, "residual_current") == [("raised", "alarm")]
    hits = f.read(10, residual_current_ma=249.9)
    assert [(h.phase, h.evidence["clear_at"]) for h in hits] == [("cleared", 250.0)]
    assert hits[0].condition_key == f.hits[0].condition_key


def test_alarm_must_be_held_again_after_clearing() -> None:
    f = Feed(engine())
    f.read(0, residual_current_ma=400)
    f.read(5, residual_current_ma=400)
    f.read(6, residual_current_ma=100)
    f.read(7, residual_current_ma=400)
    f.read(8, residual_current_ma=400)
    assert of(f.hits, "residual_current") == [("raised", "alarm"), ("cleared", "alarm")]
    f.read(12, residual_current_ma=400)
    assert of(f.hits, "residual_current")[-1] == ("raised", "alarm")


def test_single_hot_sample_is_a_glitch_when_two_samples_are_required() -> None:
    # cable_temp needs two readings at a level: one glitch never alarms, even on a tick.
    f = Feed(engine())
    f.read(0, cable_temp_c_1=150)
    f.tick(1000)
    f.read(1060, cable_temp_c_1=40)
    assert of(f.hits, "cable_temp") == []
    assert f.eng.next_wake(f.state) is not None  # liveness only
    f.read(2000, cable_temp_c_1=75)
    f.read(2060, cable_temp_c_1=75)
    assert sorted(of(f.hits, "cable_temp")) == [("raised", "alarm"), ("raised", "pre_alarm")]


def test_cable_pre_alarm_then_alarm_are_separate_conditions_per_probe() -> None:
    f = Feed(engine())
    for t in range(0, 40, 5):
        f.read(t, cable_temp_c_1=62, cable_temp_c_2=45)
    assert of(f.hits, "cable_temp") == [("raised", "pre_alarm")]
    assert f.hits[-1].metric == "cable_temp_c_1" and f.hits[-1].severity == "yellow"
    for t in range(40, 80, 5):
        f.read(t, cable_temp_c_1=72, cable_temp_c_2=45)
    alarm = [h for h in f.hits if h.rule == "alarm"]
    assert [(h.phase, h.severity, h.type) for h in alarm] == [
        ("raised", "orange", "cable_overtemp")
    ]
    # down to 58: alarm clears (< 65) and pre-alarm stays (58 ≥ 55)
    f.read(80, cable_temp_c_1=58)
    assert of(f.hits, "cable_temp")[-1] == ("cleared", "alarm")
    f.read(85, cable_temp_c_1=54)
    assert of(f.hits, "cable_temp")[-1] == ("cleared", "pre_alarm")


def test_pressure_low_is_a_below_level() -> None:
    f = Feed(engine("water_pressure_sensor"), device_id="WP-1")
    f.read(0, pressure_mpa=0.30)
    f.read(60, pressure_mpa=0.12)
    f.read(120, pressure_mpa=0.12)
    low = [h for h in f.hits if h.detector == "pressure_level"]
    assert [(h.phase, h.type, h.severity) for h in low] == [("raised", "pressure_low", "orange")]
    f.read(180, pressure_mpa=0.16)  # between 0.15 and 0.17: still low
    f.read(240, pressure_mpa=0.17)
    assert of(f.hits, "pressure_level")[-1] == ("cleared", "low")


def test_pressure_high_level() -> None:
    f = Feed(engine("water_pressure_sensor"), device_id="WP-1")
    for t in (0, 40, 80):
        f.read(t, pressure_mpa=1.1)
    assert of(f.hits, "pressure_level") == [("raised", "high")]


def test_duplicate_reading_counts_once() -> None:
    f = Feed(engine())
    f.read(0, cable_temp_c_1=75)
    f.read(0, cable_temp_c_1=75)  # the same reading again (same ts)
    f.tick(1000)
    assert of(f.hits, "cable_temp") == []  # still one sample of the two needed


def test_override_changes_level() -> None:
    f = Feed(engine(residual_current={"alarm_ma": 400, "clear_ma": 350}))
    f.read(0, residual_current_ma=390)
    f.read(10, residual_current_ma=390)
    assert of(f.hits, "residual_current") == []
    f.read(11, residual_current_ma=400)
    f.read(16, residual_current_ma=400)
    assert f.hits[-1].evidence["threshold"] == 400


def test_overload_needs_a_rating_and_then_alarms() -> None:
    f = Feed(engine(overload={"enabled": True, "rating_a": 63}))
    for t in range(0, 70, 10):
        f.read(t, current_a_a=70, current_a_b=20)
    hits = [h for h in f.hits if h.detector == "overload"]
    assert [(h.phase, h.metric, h.type) for h in hits] == [("raised", "current_a_a", "overload")]


def test_quiet_conditions_take_no_state() -> None:
    f = Feed(engine())
    for t in range(10):
        f.read(t, residual_current_ma=120, cable_temp_c_1=40)
    assert "residual_current" not in f.state.detectors
    assert "cable_temp" not in f.state.detectors
    f.read(10, residual_current_ma=310)
    assert f.state.detectors["residual_current"] != ThresholdState()
    f.read(11, residual_current_ma=120)
    assert f.state.detectors["residual_current"] == ThresholdState()
