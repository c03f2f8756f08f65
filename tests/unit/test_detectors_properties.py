"""Properties over arbitrary message sequences: raise/clear alternate per condition, a restored
state continues exactly like the original, hits are JSON."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors import DeviceDetectors, Hit, condition_key
from devices.messages import DeviceEvent, Heartbeat, Reading, StatusChange
from devices.profiles import get_profile

AGGRESSIVE = {
    "residual_current": {"hold_s": 2, "min_samples": 1},
    "cable_temp": {"hold_s": 0, "min_samples": 1},
    "cable_temp_rise": {"confirm_samples": 1, "clear_samples": 1, "window_s": 30},
    "pressure_level": {"hold_s": 0, "min_samples": 1},
    "pressure_drop": {"confirm_samples": 1, "window_s": 60},
    "baseline": {"warmup_samples": 3, "confirm_samples": 1, "clear_samples": 1},
    "liveness": {"interval_s": 20, "missed_intervals": 1},
    "flapping": {"max_transitions": 3, "window_s": 60, "quiet_s": 30},
    "overload": {"enabled": True, "rating_a": 50, "hold_s": 0, "min_samples": 1},
}

USES = {
    "electrical_fire_monitor": set(AGGRESSIVE) - {"pressure_level", "pressure_drop"},
    "water_pressure_sensor": {
        "pressure_level",
        "pressure_drop",
        "baseline",
        "liveness",
        "flapping",
    },
    "smoke_detector": {"liveness", "flapping"},
}


def _engine(type_key: str, aggressive: bool) -> DeviceDetectors:
    overrides = {k: v for k, v in AGGRESSIVE.items() if k in USES[type_key]}
    profile = get_profile(type_key).with_overrides({"detectors": overrides} if aggressive else None)
    return DeviceDetectors.for_profile(profile)


ENGINES = {(t, a): _engine(t, a) for t in USES for a in (False, True)}

VALUES = {
    "electrical_fire_monitor": {
        "residual_current_ma": st.sampled_from([100.0, 249.0, 250.0, 280.0, 300.0, 450.0]),
        "cable_temp_c_1": st.sampled_from([30.0, 54.0, 58.0, 62.0, 66.0, 71.0, 90.0]),
        "current_a_a": st.sampled_from([10.0, 46.0, 60.0]),
        "battery_pct": st.sampled_from([5.0, 19.0, 22.0, 26.0, 90.0]),
    },
    "water_pressure_sensor": {
        "pressure_mpa": st.sampled_from([0.0, 0.1, 0.15, 0.16, 0.3, 0.35, 0.96, 1.1]),
        "battery_pct": st.sampled_from([5.0, 22.0, 90.0]),
    },
    "smoke_detector": {
        "smoke_obscuration_db_m": st.sampled_from([0.0, 0.15, 0.25]),
        "battery_pct": st.sampled_from([5.0, 22.0, 90.0]),
    },
}


@st.composite
def journeys(draw: st.DrawFn) -> tuple[DeviceDetectors, str, list[tuple[str, Any]]]:
    type_key = draw(st.sampled_from(sorted(VALUES)))
    eng = ENGINES[(type_key, draw(st.booleans()))]
    metric_values = VALUES[type_key]
    now = 1000.0
    newest = now
    steps: list[tuple[str, Any]] = []
    device = "D-1"
    for _ in range(draw(st.integers(1, 60))):
        now += draw(st.sampled_from([0.0, 0.5, 1.0, 3.0, 10.0, 45.0, 600.0]))
        kind = draw(
            st.sampled_from(["reading"] * 6 + ["event", "status", "tick", "tick", "heartbeat"])
        )
        lateness = draw(st.sampled_from([0.0] * 6 + [2.0, 30.0, 1000.0, 7200.0]))
        ts = now - lateness
        if kind in ("reading", "heartbeat"):
            names = draw(st.lists(st.sampled_from(sorted(metric_values)), min_size=1, unique=True))
            values = {n: draw(metric_values[n]) for n in names}
            if draw(st.booleans()) and steps and steps[-1][0] == "reading":
                steps.append(steps[-1])  # an exact duplicate
                continue
            cls = Reading if kind == "reading" else Heartbeat
            steps.append(("reading", cls(device, ts, None, values, now)))
            newest = max(newest, ts)
        elif kind == "event":
            name = draw(
                st.sampled_from(
                    [
                        "alarm",
                        "pre_alarm",
                        "fault",
                        "tamper",
                        "low_battery",
                        "self_test",
                        "silenced",
                        "restore",
                        "restore",
                    ]
                )
            )
            detail = draw(
                st.sampled_from(
                    [
                        {},
                        {"channel": "residual_current"},
                        {"channel": "pressure_low"},
                        {"restores": "alarm"},
                        {"restores": "low_battery"},
                    ]
                )
            )
            steps.append(("event", DeviceEvent(device, ts, None, name, detail, now)))
        elif kind == "status":
            steps.append(
                (
                    "status",
                    StatusChange(device, draw(st.sampled_from(["offline", "online"])), now, now),
                )
            )
        else:
            steps.append(("tick", now))
    return eng, device, steps


def play(
    eng: DeviceDetectors, device: str, steps: list[tuple[str, Any]], cut: int | None = None
) -> list[Hit]:
    state = eng.initial_state(device, 1000.0)
    hits: list[Hit] = []
    for i, (kind, item) in enumerate(steps):
        if i == cut:
            state, dropped = eng.decode_state(eng.encode_state(state))
            assert dropped == []
        if kind == "tick":
            out = eng.on_tick(state, item)
        else:
            out = eng.on_message(state, item, item.received_at)
        state = out.state
        hits += out.hits
    # let every timer run out
    for later in (1e5, 2e5):
        out = eng.on_tick(state, later)
        state = out.state
        hits += out.hits
    return hits


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(journeys())
def test_raised_and_cleared_alternate_per_condition(
    journey: tuple[DeviceDetectors, str, list[tuple[str, Any]]],
) -> None:
    eng, device, steps = journey
    last: dict[str, str] = defaultdict(lambda: "cleared")
    for hit in play(eng, device, steps):
        assert hit.phase != last[hit.condition_key], (hit.condition_key, hit.phase)
        last[hit.condition_key] = hit.phase
        assert hit.condition_key == condition_key(hit.device_id, hit.detector, hit.rule, hit.metric)
        assert msgspec.json.decode(msgspec.json.encode(hit), type=Hit) == hit


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(journeys(), st.data())
def test_restored_state_continues_like_the_original(
    journey: tuple[DeviceDetectors, str, list[tuple[str, Any]]], data: st.DataObject
) -> None:
    eng, device, steps = journey
    cut = data.draw(st.integers(0, len(steps)))
    assert play(eng, device, steps) == play(eng, device, steps, cut)
