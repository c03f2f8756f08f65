"""The fleet's message generator: pure, time moved by the test."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import orjson
import pytest

from devices.codecs import get_codec
from devices.messages import Kind, RawMessage, Rejection
from devices.profiles import get_profile
from devices.registry import Device
from ingest.topics import UplinkTopics
from ingest.validate import KnownDevice, Limits, Validator
from simulators.clocks import ClockModel
from simulators.county import CountySpec, generate_county
from simulators.fleet import FleetConfig, FleetModel, IntervalOverrides, Outgoing
from simulators.signals import DRAIN_PCT_PER_DAY, LOW_BATTERY_PCT

START = 1_795_420_800.0  # 2026-11-22 16:00 in China
DAY = 86_400.0

DEVICES = [
    Device("SD-1", "smoke_detector", grid_code="440999001001-01"),
    Device("EF-1", "electrical_fire_monitor", grid_code="440999001001-01"),
    Device("WP-1", "water_pressure_sensor", grid_code="440999001001-01"),
    Device("CAM-1", "camera", grid_code="440999001001-01", rtsp_url="rtsp://127.0.0.1:8554/c"),
]


def model(
    devices: Iterable[Device] = DEVICES,
    *,
    speed: float = 1.0,
    intervals: IntervalOverrides | None = None,
) -> FleetModel:
    config = FleetConfig(start_ts=START, speed=speed, intervals=intervals or {}, first_seq=1)
    return FleetModel(devices, config)


def decoded(out: Outgoing) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(out.payload)
    return body


def test_same_messages_however_the_clock_moves() -> None:
    devices = generate_county(CountySpec(towns=1, villages_per_town=2, grids_per_village=3)).devices
    at_once = list(model(devices).messages_until(3 * 3600))
    stepped_model = model(devices)
    stepped: list[Outgoing] = []
    t = 0.0
    while t < 3 * 3600:
        t = min(t + 7.3, 3 * 3600)
        stepped.extend(stepped_model.messages_until(t))
    assert stepped == at_once
    assert [o.t for o in at_once] == sorted(o.t for o in at_once)
    # Stopping part-way through a batch loses nothing.
    partial_model = model(devices)
    taken: list[Outgoing] = []
    for out in partial_model.messages_until(3 * 3600):
        taken.append(out)
        if len(taken) == 10:
            break
    taken.extend(partial_model.messages_until(3 * 3600))
    assert taken == at_once


def test_online_status_first_retained_cameras_skipped() -> None:
    fleet = model()
    assert fleet.skipped == {"camera": 1}
    first = list(fleet.messages_until(0.0))
    assert [(o.device_id, o.kind, o.retain) for o in first[:3]] == [
        ("SD-1", Kind.STATUS, True), ("EF-1", Kind.STATUS, True), ("WP-1", Kind.STATUS, True)
    ]
    assert decoded(first[0]) == {"ts": int(START * 1000), "status": "online"}
    assert first[0].topic == "gridwatch/v1/up/SD-1/status"
    offline = fleet.stop_messages(12.5)
    assert [decoded(o) for o in offline] == [{"ts": int(START * 1000) + 12_500,
                                              "status": "offline"}] * 3
    assert all(o.retain and o.kind is Kind.STATUS for o in offline)


def test_intervals_seq_and_timestamps() -> None:
    fleet = model(speed=10.0)
    out = list(fleet.messages_until(2 * DAY))
    by_stream: dict[tuple[str, Kind], list[Outgoing]] = defaultdict(list)
    for o in out:
        by_stream[o.device_id, o.kind].append(o)
    expected = {
        ("SD-1", Kind.TELEMETRY): 3600.0,
        ("SD-1", Kind.HEARTBEAT): get_profile("smoke_detector").heartbeat_interval_s,
        ("EF-1", Kind.TELEMETRY): 60.0,
        ("EF-1", Kind.HEARTBEAT): get_profile("electrical_fire_monitor").heartbeat_interval_s,
        ("WP-1", Kind.TELEMETRY): 300.0,
        ("WP-1", Kind.HEARTBEAT): get_profile("water_pressure_sensor").heartbeat_interval_s,
    }
    for key, interval in expected.items():
        times = [o.t for o in by_stream[key]]
        assert 0 <= times[0] <= interval
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(interval * 0.98 <= gap <= interval * 1.02 for gap in gaps), key
    for device in ("SD-1", "EF-1", "WP-1"):
        mine = [o for o in out if o.device_id == device and o.kind is not Kind.STATUS]
        seqs = [decoded(o)["seq"] for o in mine]
        assert seqs == list(range(1, len(seqs) + 1))
    for o in out:
        # ts is wall time: simulated time compressed by speed.
        assert decoded(o)["ts"] == round((START + o.t / 10.0) * 1000)


def test_interval_overrides_and_default_seq_start() -> None:
    fleet = FleetModel(
        DEVICES,
        FleetConfig(
            start_ts=START,
            intervals={("electrical_fire_monitor", Kind.TELEMETRY): 10.0,
                       ("electrical_fire_monitor", Kind.HEARTBEAT): None},
        ),
    )
    out = [o for o in fleet.messages_until(100.0) if o.device_id == "EF-1"]
    assert [o.kind for o in out].count(Kind.TELEMETRY) in (9, 10, 11)
    assert Kind.HEARTBEAT not in {o.kind for o in out}
    seqs = [decoded(o).get("seq") for o in out if o.kind is Kind.TELEMETRY]
    assert seqs[0] == int(START * 1000)  # a restarted fleet does not reuse recent seqs
    with pytest.raises(ValueError, match="interval"):
        FleetConfig(start_ts=START, intervals={("smoke_detector", Kind.STATUS): 5.0})
    with pytest.raises(ValueError, match="speed"):
        FleetConfig(start_ts=START, speed=0)


def test_regular_traffic_passes_ingest_validation() -> None:
    devices = generate_county(CountySpec(towns=2, villages_per_town=2, grids_per_village=4)).devices
    fleet = model(devices)
    known = {
        d.device_id: KnownDevice(d.device_id, get_profile(d.type), get_codec("canonical"))
        for d in devices
    }
    validator = Validator(
        UplinkTopics("gridwatch/v1"), known,
        Limits(max_payload_bytes=4096, max_future_skew_s=60, oldest_accepted_s=30 * DAY),
    )
    count = 0
    for out in fleet.messages_until(6 * 3600):
        received = decoded(out)["ts"] / 1000
        result = validator.check(RawMessage(out.topic, out.payload, 1, 0, received))
        assert not isinstance(result, Rejection), (out, result)
        count += 1
    assert count > 1000


def test_values_stay_around_field_normals_over_a_day() -> None:
    devices = [Device(f"EF-{n}", "electrical_fire_monitor") for n in range(20)] + [
        Device(f"WP-{n}", "water_pressure_sensor") for n in range(20)
    ] + [Device(f"SD-{n}", "smoke_detector") for n in range(20)]
    fleet = model(devices, intervals={("electrical_fire_monitor", Kind.TELEMETRY): 600.0})
    values: dict[str, list[float]] = defaultdict(list)
    evening: list[float] = []
    morning: list[float] = []
    for out in fleet.messages_until(3 * DAY):
        if out.kind is Kind.STATUS:
            continue
        body = decoded(out)
        for name, value in body["values"].items():
            values[name.rstrip("1234")].append(value)
        hour = ((START + out.t + 8 * 3600) % DAY) / 3600
        current = body["values"].get("residual_current_ma")
        if current is not None:
            (evening if 19 <= hour < 21 else morning if 7 <= hour < 9 else []).append(current)
    normals = {
        "residual_current_ma": (90, 210),
        "cable_temp_c_": (29, 46),
        "pressure_mpa": (0.2, 0.4),
        "smoke_obscuration_db_m": (0, 0.05),
        "battery_pct": (14, 100),  # a few batteries are near their end from the start
    }
    for name, (low, high) in normals.items():
        assert low <= min(values[name]) and max(values[name]) <= high, name
    assert sum(evening) / len(evening) > sum(morning) / len(morning) + 15  # the evening load


def test_batteries_drain_each_at_its_own_rate() -> None:
    fleet = model([Device(f"SD-{n}", "smoke_detector") for n in range(40)])
    levels: dict[str, list[float]] = defaultdict(list)
    for o in fleet.messages_until(40 * DAY):
        if o.kind is Kind.HEARTBEAT:
            levels[o.device_id].append(decoded(o)["values"]["battery_pct"])
    drops = []
    for device, series in levels.items():
        assert series == sorted(series, reverse=True), device
        drops.append(series[0] - series[-1])
    low, high = DRAIN_PCT_PER_DAY
    assert all(40 * low - 0.3 <= drop <= 40 * high + 0.3 for drop in drops)
    assert max(drops) - min(drops) > 0.5  # not one rate for all


def test_a_battery_below_the_line_says_low_battery_once() -> None:
    devices = [Device(f"SD-{n}", "smoke_detector") for n in range(1000)]
    fleet = model(devices, intervals={("smoke_detector", Kind.TELEMETRY): None})
    out = [o for o in fleet.messages_until(DAY) if o.kind is not Kind.STATUS]
    by_device: dict[str, list[Outgoing]] = defaultdict(list)
    for o in out:
        by_device[o.device_id].append(o)
    low_devices = 0
    for device, messages in by_device.items():
        first = decoded(messages[0])
        assert messages[0].kind is Kind.HEARTBEAT
        events = [o for o in messages if o.kind is Kind.EVENT]
        if first["values"]["battery_pct"] < LOW_BATTERY_PCT:
            low_devices += 1
            # Right after the first heartbeat below the line, same time, next seq; never again.
            assert messages[1] in events and len(events) == 1, device
            body = decoded(messages[1])
            assert (messages[1].t, body["seq"]) == (messages[0].t, first["seq"] + 1)
            assert body["event"] == "low_battery"
            assert body["detail"] == {"battery_pct": first["values"]["battery_pct"]}
        else:
            assert not events, device
    assert 2 <= low_devices <= 30  # ~1 % of a fleet: a third of the 3 % with ageing batteries


def test_device_clocks_are_off_as_the_model_says_and_leave_values_alone() -> None:
    devices = [Device(f"EF-{n}", "electrical_fire_monitor") for n in range(400)]
    clock = ClockModel(sigma_s=2.0, wrong_share=0.1, wrong_min_s=3600, wrong_max_s=6 * 3600)
    right = FleetModel(devices, FleetConfig(start_ts=START, first_seq=1, seed=3))
    wrong = FleetModel(devices, FleetConfig(start_ts=START, first_seq=1, seed=3, clock=clock))
    offsets: dict[str, set[int]] = defaultdict(set)
    for a, b in zip(right.messages_until(600), wrong.messages_until(600), strict=True):
        body_a, body_b = decoded(a), decoded(b)
        assert (a.t, a.topic, a.kind) == (b.t, b.topic, b.kind)
        assert {k: v for k, v in body_a.items() if k != "ts"} == {
            k: v for k, v in body_b.items() if k != "ts"
        }
        offsets[a.device_id].add(body_b["ts"] - body_a["ts"])
    assert all(len(seen) == 1 for seen in offsets.values())  # one offset per device, steady
    off_s = [next(iter(seen)) / 1000 for seen in offsets.values()]
    hours = [o for o in off_s if abs(o) >= 3600]
    assert all(abs(o) <= 6 * 3600 for o in hours)
    assert 20 <= len(hours) <= 65  # ~10 %
    assert {o > 0 for o in hours} == {True, False}  # ahead and behind
    small = [o for o in off_s if abs(o) < 3600]
    assert all(abs(o) < 10 for o in small) and len({round(o, 1) for o in small}) > 50
    again = FleetModel(devices, FleetConfig(start_ts=START, first_seq=1, seed=3, clock=clock))
    assert list(again.messages_until(600)) == list(
        FleetModel(devices, FleetConfig(start_ts=START, first_seq=1, seed=3, clock=clock))
        .messages_until(600)
    )


def test_clocks_hours_ahead_are_rejected_by_ingest_behind_are_stored() -> None:
    devices = [Device(f"WP-{n}", "water_pressure_sensor") for n in range(200)]
    clock = ClockModel(sigma_s=1.0, wrong_share=0.2)
    fleet = FleetModel(devices, FleetConfig(start_ts=START, first_seq=1, clock=clock))
    known = {
        d.device_id: KnownDevice(d.device_id, get_profile(d.type), get_codec("canonical"))
        for d in devices
    }
    validator = Validator(
        UplinkTopics("gridwatch/v1"), known,
        Limits(max_payload_bytes=4096, max_future_skew_s=600, oldest_accepted_s=30 * DAY),
    )
    outcome: dict[str, set[str]] = defaultdict(set)
    for out in fleet.messages_until(3600):
        result = validator.check(RawMessage(out.topic, out.payload, 1, 0, START + out.t))
        outcome[out.device_id].add(
            result.reason.value if isinstance(result, Rejection) else "accepted"
        )
    for device_id, seen in outcome.items():
        offset = fleet.sim(device_id).clock.base_s
        assert seen == ({"future_timestamp"} if offset > 600 else {"accepted"}), device_id
    assert any(fleet.sim(d).clock.base_s > 600 for d in outcome)
    assert any(fleet.sim(d).clock.base_s < -600 for d in outcome)
