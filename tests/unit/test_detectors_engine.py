"""The engine: order, duplicates, clock jumps, persistence round trips, dispatch."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from detectors import DeviceDetectors, DeviceState, Hit, Outcome
from devices.messages import Accepted, DeviceEvent, Heartbeat, Reading, StatusChange
from devices.profiles import get_profile

EF = "EF-1"


def engine(type_key: str = "electrical_fire_monitor", **overrides: Any) -> DeviceDetectors:
    profile = get_profile(type_key).with_overrides({"detectors": overrides} if overrides else None)
    return DeviceDetectors.for_profile(profile)


def reading(
    ts: float, received_at: float | None = None, device_id: str = EF, **values: float
) -> Reading:
    return Reading(device_id, ts, None, values, ts if received_at is None else received_at)


def run(
    eng: DeviceDetectors, messages: list[Accepted | float], device_id: str = EF
) -> tuple[DeviceState, list[Hit], list[Outcome]]:
    """Messages in order; a bare float is a tick at that time. ``now`` is ``received_at``."""
    state = eng.initial_state(device_id, 0.0)
    hits: list[Hit] = []
    outcomes: list[Outcome] = []
    for m in messages:
        out = (
            eng.on_tick(state, m)
            if isinstance(m, float)
            else eng.on_message(state, m, m.received_at)
        )
        state = out.state
        hits += out.hits
        outcomes.append(out)
    return state, hits, outcomes


def keyed(hits: list[Hit]) -> list[tuple[str, str, float]]:
    return [(h.phase, h.condition_key, h.ts) for h in hits]


def test_late_reading_does_not_move_the_hold_timer_back() -> None:
    eng = engine()
    _, hits, outs = run(
        eng,
        [
            reading(100, residual_current_ma=400),
            reading(103, residual_current_ma=400),
            reading(90, 104, residual_current_ma=400),  # late, above: must not start the hold at 90
            reading(104, residual_current_ma=400),
        ],
    )
    assert outs[2].late and not outs[2].hits
    assert [h for h in hits if h.detector == "residual_current"] == []
    _, hits, outs = run(
        eng,
        [
            reading(100, residual_current_ma=400),
            reading(102, residual_current_ma=400),
            reading(101, 103, residual_current_ma=100),  # late, below: must not reset the hold
            reading(105, residual_current_ma=400),
        ],
    )
    assert outs[2].late
    assert [(h.phase, h.ts) for h in hits if h.detector == "residual_current"] == [("raised", 105)]


def test_late_reading_does_not_make_a_trend() -> None:
    eng = engine("water_pressure_sensor")
    msgs: list[Accepted | float] = [
        reading(t, device_id="WP-1", pressure_mpa=0.35) for t in range(0, 660, 60)
    ]
    msgs += [
        reading(100, 700, device_id="WP-1", pressure_mpa=0.05),
        reading(110, 710, device_id="WP-1", pressure_mpa=0.05),
    ]
    _, hits, outs = run(eng, msgs, "WP-1")
    assert outs[-1].late and hits == []


def test_duplicates_are_harmless() -> None:
    eng = engine()
    msgs: list[Accepted | float] = []
    for t, v in [(0, 100), (1, 320), (3, 330), (6, 340), (7, 240), (8, 200)]:
        msgs.append(reading(t, residual_current_ma=v, cable_temp_c_1=40 + 2 * t))
    once = run(eng, msgs)[1]
    twice = run(eng, [m for m in msgs for _ in range(2)])[1]
    assert keyed(once) == keyed(twice)
    assert [h.phase for h in once if h.detector == "residual_current"] == ["raised", "cleared"]


def test_clock_jump_back_is_followed_after_a_few_readings() -> None:
    eng = engine()
    msgs: list[Accepted | float] = [
        reading(10_000 + t, residual_current_ma=100) for t in range(0, 60, 10)
    ]
    # device clock reset two hours back; arrival times keep going forward
    msgs += [reading(2_800 + t, 10_060 + t, residual_current_ma=400) for t in range(0, 60, 10)]
    state, hits, outs = run(eng, msgs)
    assert [o.late for o in outs[6:]] == [True, True, False, False, False, False]
    assert outs[8].rebased
    assert [(h.phase, h.ts) for h in hits if h.detector == "residual_current"] == [
        ("raised", 2_830)
    ]
    assert state.newest_ts == 2_850


def test_open_condition_survives_a_clock_jump_without_a_second_raise() -> None:
    eng = engine()
    msgs: list[Accepted | float] = [
        reading(10_000 + t, residual_current_ma=400) for t in range(0, 30, 10)
    ]
    msgs += [reading(2_800 + t, 10_030 + t, residual_current_ma=400) for t in range(0, 60, 10)]
    msgs += [reading(2_900, 10_130, residual_current_ma=100)]
    _, hits, _ = run(eng, msgs)
    assert [h.phase for h in hits if h.detector == "residual_current"] == ["raised", "cleared"]


def test_small_reordering_never_resets_the_clock() -> None:
    eng = engine()
    msgs: list[Accepted | float] = []
    for t in range(0, 100, 10):
        msgs += [
            reading(t + 10, residual_current_ma=100),
            reading(t + 5, t + 11, residual_current_ma=100),
        ]
    _, _, outs = run(eng, msgs)
    assert not any(o.rebased for o in outs)
    assert sum(o.late for o in outs) == 10


def test_heartbeat_values_are_judged_and_status_goes_to_liveness() -> None:
    eng = engine("smoke_detector")
    _, hits, _ = run(
        eng,
        [
            Heartbeat("SD-1", 10, None, {"battery_pct": 10}, 10),
            StatusChange("SD-1", "offline", 20, 20),
            DeviceEvent("SD-1", 30, None, "alarm", {}, 30),
        ],
        "SD-1",
    )
    assert [(h.type, h.phase) for h in hits] == [
        ("low_battery", "raised"),
        ("device_offline", "raised"),
        ("device_offline", "cleared"),
        ("smoke_alarm", "raised"),
    ]


def test_tick_is_a_no_op_when_nothing_is_due() -> None:
    eng = engine()
    state = eng.initial_state(EF, 0)
    out = eng.on_tick(state, 10)
    assert out.state is state and out.hits == ()


def scenario() -> list[Accepted | float]:
    """Puts every detector of an electrical-fire monitor into a non-trivial state."""
    msgs: list[Accepted | float] = []
    for i in range(40):  # baseline warm-up, trend windows
        t = 60.0 * i
        msgs.append(reading(t, residual_current_ma=150 + i % 3, cable_temp_c_1=40, battery_pct=80))
    t = 2400.0
    msgs += [
        reading(t, residual_current_ma=600, cable_temp_c_1=62, cable_temp_c_2=40, battery_pct=10),
        reading(
            t + 10, residual_current_ma=600, cable_temp_c_1=75, cable_temp_c_2=52, battery_pct=10
        ),
        reading(
            t + 20, residual_current_ma=600, cable_temp_c_1=75, cable_temp_c_2=52, current_a_a=70
        ),
        reading(t + 21, residual_current_ma=200, cable_temp_c_1=75, cable_temp_c_2=52),
        reading(t + 22, residual_current_ma=600),  # pending again
    ]
    for i in range(7):  # flapping on a device event
        msgs.append(
            DeviceEvent(EF, t + 30 + i, None, "alarm" if i % 2 == 0 else "restore", {}, t + 30 + i)
        )
    msgs.append(DeviceEvent(EF, t + 40, None, "tamper", {"channel": "lid"}, t + 40))
    msgs.append(StatusChange(EF, "offline", t + 50, t + 50))
    return msgs


def test_every_detector_state_round_trips_through_json() -> None:
    eng = engine(overload={"enabled": True, "rating_a": 63})
    state, hits, _ = run(eng, scenario())
    assert set(state.detectors) == set(eng.keys)
    assert {h.detector for h in hits} >= {
        "residual_current",
        "cable_temp",
        "cable_temp_rise",
        "battery",
        "device_events",
        "flapping",
        "liveness",
    }
    for key, s in state.detectors.items():
        det = eng.by_key[key]
        raw = msgspec.json.encode(s)
        assert msgspec.json.decode(raw, type=det.state_type) == s, key
    restored, dropped = eng.decode_state(eng.encode_state(state))
    assert restored == state and dropped == []


@pytest.mark.parametrize("cut", [20, 41, 43, 47, 50])
def test_a_restored_state_continues_exactly_like_the_original(cut: int) -> None:
    eng = engine()
    msgs = [
        *scenario(),
        reading(2500, residual_current_ma=100, cable_temp_c_1=40),
        2400.0 + 900 + 60,
        2400.0 + 5000,
    ]
    _, all_hits, _ = run(eng, msgs)
    state, first, _ = run(eng, msgs[:cut])
    state, _ = eng.decode_state(eng.encode_state(state))
    rest: list[Hit] = []
    for m in msgs[cut:]:
        out = (
            eng.on_tick(state, m)
            if isinstance(m, float)
            else eng.on_message(state, m, m.received_at)
        )
        state = out.state
        rest += out.hits
    assert keyed(first + rest) == keyed(all_hits)


def test_decode_drops_unknown_or_unreadable_detector_state() -> None:
    eng = engine()
    raw = (
        b'{"device_id":"EF-1","newest_ts":5.0,"detectors":{"gone":{"x":1},'
        b'"baseline":{"stats":7},"liveness":{"last_heard_at":5.0}}}'
    )
    state, dropped = eng.decode_state(raw)
    assert sorted(dropped) == ["baseline", "gone"]
    assert state.newest_ts == 5.0 and set(state.detectors) == {"liveness"}
    out = eng.on_reading(state, reading(6, residual_current_ma=100), 6)
    assert out.hits == ()


def test_next_wake_is_the_earliest_timer() -> None:
    eng = engine()
    state = eng.initial_state(EF, 0)
    assert eng.next_wake(state) == 900  # 3 × 300 s heartbeat interval
    state = eng.on_reading(state, reading(100, residual_current_ma=400), 100).state
    assert eng.next_wake(state) == 105


def test_engine_is_shared_by_devices() -> None:
    eng = engine()
    a = eng.initial_state("EF-A", 0)
    b = eng.initial_state("EF-B", 0)
    for t in (0, 5):
        a = eng.on_reading(a, reading(t, device_id="EF-A", residual_current_ma=400), t).state
        b = eng.on_reading(b, reading(t, device_id="EF-B", residual_current_ma=100), t).state
    assert "residual_current" in a.detectors and "residual_current" not in b.detectors
    hits = eng.on_tick(a, 2000).hits
    assert {h.device_id for h in hits} == {"EF-A"}


def test_resume_after_restart_gives_queued_messages_time_to_arrive() -> None:
    eng = engine()
    state = eng.initial_state(EF, 0)
    state = eng.on_reading(state, reading(100, residual_current_ma=400), 100).state
    saved = eng.encode_state(state)
    # the service was down from t=101 to t=10_000
    restored = eng.resume(eng.decode_state(saved)[0], 10_000)
    assert eng.on_tick(restored, 10_000).hits == ()
    # the broker's queued reading from before the outage: the alarm had already ended
    out = eng.on_reading(restored, reading(103, 10_001, residual_current_ma=100), 10_001)
    assert out.hits == ()
    silent = eng.on_tick(out.state, 10_001 + 900).hits
    assert [h.type for h in silent] == ["device_offline"]
    # without resume, the first tick would have raised both at once
    assert {h.type for h in eng.on_tick(eng.decode_state(saved)[0], 10_000).hits} == {
        "device_offline",
        "residual_current_high",
    }


def test_heartbeat_without_values_is_proof_of_life_only() -> None:
    eng = engine()
    state = eng.on_reading(
        eng.initial_state(EF, 0), reading(100, residual_current_ma=100), 100
    ).state
    out = eng.on_heartbeat(state, Heartbeat(EF, 5000, None, {}, 5000), 5000)
    assert out.state.newest_ts == 100 and not out.late
    assert eng.next_wake(out.state) == 5000 + 900
