"""A scenario file produces exactly its scripted messages: the self-contained hotel scenario
through ``gridwatch simulate fleet --dry-run``, message by message; the scenario's own
``[fleet]`` and ``[[devices]]``; and a dry run is what the live runner sends."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from devices.messages import Kind
from gridwatch.cli import common, simulate_cmd
from simulators.county import CountySpec, generate_county
from simulators.county_files import write_county
from simulators.dry_run import dry_run, payload_of, read_jsonl
from simulators.fleet_runner import RunLimits, VirtualClock, run_fleet
from simulators.fleet_setup import FleetOptions, plan_fleet
from simulators.scenario import ScenarioError, load_scenario, parse_scenario

SCENARIOS = Path(__file__).parents[2] / "simulators" / "scenarios"
HOTEL = SCENARIOS / "hotel.toml"
EXAMPLE = SCENARIOS / "example.toml"
T0 = datetime.fromisoformat("2026-11-22T08:00:00+08:00").timestamp()
S = round(T0 * 1000)  # every device's first seq: the start in ms
ROOT = "gridwatch/v1/up"


def ms(t: float) -> int:
    return round((T0 + t) * 1000)


def js(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)


def values(metric: str, value: float) -> Any:
    """A payload check: the ramped metric exactly, the device's other values around it."""

    def check(body: dict[str, Any]) -> bool:
        return body["values"][metric] == value and len(body["values"]) > 1

    return check


# What hotel.toml says, written out from its steps: (t, topic, step, payload) where payload
# is the exact bytes or, for messages that also carry the device's noisy values, a check of
# the decoded body (with its ts and seq) that must hold.
EXPECTED: list[tuple[float, str, int, bytes | tuple[int, int, Any]]] = [
    (5, f"{ROOT}/SD-H-1/event", 1,
     js({"ts": ms(5), "seq": S, "event": "alarm", "detail": {"channel": "smoke"}})),
    (8, f"{ROOT}/SD-H-2/event", 2,
     js({"ts": ms(8), "seq": S, "event": "alarm", "detail": {"channel": "smoke"}})),
    (10, f"{ROOT}/EF-H-1/telemetry", 3, (ms(10), S, values("residual_current_ma", 150))),
    (20, f"{ROOT}/EF-H-1/telemetry", 3, (ms(20), S + 1, values("residual_current_ma", 250))),
    (20, f"{ROOT}/WP-H-1/telemetry", 4,
     js({"ts": ms(20), "seq": S, "values": {"pressure_mpa": 0.3}})),
    (25, f"{ROOT}/WP-H-1/telemetry", 4,
     js({"ts": ms(25), "seq": S + 1, "values": {"pressure_mpa": 0.24}})),
    (30, f"{ROOT}/EF-H-1/telemetry", 3, (ms(30), S + 2, values("residual_current_ma", 350))),
    (30, f"{ROOT}/WP-H-1/telemetry", 4,
     js({"ts": ms(30), "seq": S + 2, "values": {"pressure_mpa": 0.18}})),
    (35, f"{ROOT}/WP-H-1/telemetry", 4,
     js({"ts": ms(35), "seq": S + 3, "values": {"pressure_mpa": 0.12}})),
    (40, f"{ROOT}/EF-H-1/telemetry", 3, (ms(40), S + 3, values("residual_current_ma", 450))),
    (40, f"{ROOT}/WP-H-1/telemetry", 4,
     js({"ts": ms(40), "seq": S + 4, "values": {"pressure_mpa": 0.06}})),
    (45, f"{ROOT}/WP-H-1/status", 5, b'{"status":"offline"}'),
    (55, f"{ROOT}/EF-H-1/telemetry", 7, b"\x00\x13\xffgarbled frame\xfe"),
    (55, f"{ROOT}/EF-H-1/telemetry", 7,
     js({"ts": ms(55), "seq": S + 4, "values": {"residual_current_ma": 50001.0}})),
    (55, f"{ROOT}/EF-H-1/telemetry", 7,
     js({"ts": ms(55 + 86400), "seq": S + 5, "values": {"residual_current_ma": 150.0}})),
    (65, f"{ROOT}/SD-H-1/event", 9, js({"ts": ms(65 + 7200), "seq": S + 1, "event": "self_test"})),
    (75, f"{ROOT}/WP-H-1/status", 5, js({"ts": ms(75), "status": "online"})),
    (75, f"{ROOT}/WP-H-1/event", 6, js({"ts": ms(50), "seq": S + 5, "event": "fault"})),
    (80, f"{ROOT}/SD-H-2/status", 10, b'{"status":"offline"}'),
    (90, f"{ROOT}/SD-H-1/heartbeat", 11, b'{"ts": "yesterday"}'),
    (100, f"{ROOT}/SD-H-1/heartbeat", 12, (ms(100), S + 2, values("battery_pct", 21))),
    (110, f"{ROOT}/SD-H-1/heartbeat", 12, (ms(110), S + 3, values("battery_pct", 19))),
    (110, f"{ROOT}/SD-H-1/event", 12,
     js({"ts": ms(110), "seq": S + 4, "event": "low_battery", "detail": {"battery_pct": 19.0}})),
    (120, f"{ROOT}/SD-H-1/event", 13, js({"ts": ms(120), "seq": S + 5, "event": "restore"})),
    (140, f"{ROOT}/SD-H-2/status", 10, js({"ts": ms(140), "status": "online"})),
]


def assert_is_expected(lines: list[dict[str, Any]]) -> None:
    assert [(line["t"], line["topic"], line["step"]) for line in lines] == [
        (float(t), topic, step) for t, topic, step, _ in EXPECTED
    ]
    for line, (t, _, _, want) in zip(lines, EXPECTED, strict=True):
        got = payload_of(line)
        if isinstance(want, bytes):
            assert got == want, (t, got)
        else:
            ts, seq, check = want
            body = orjson.loads(got)
            assert (body["ts"], body["seq"]) == (ts, seq), t
            assert check(body), (t, body)


def test_hotel_scenario_produces_exactly_its_scripted_messages(tmp_path: Path) -> None:
    out = tmp_path / "hotel.jsonl"
    result = CliRunner().invoke(simulate_cmd.app, [
        "fleet", "--scenario", str(HOTEL), "--dry-run", "--out", str(out), "--topic-root",
        "gridwatch/v1",
    ])
    assert result.exit_code == 0, result.output
    lines = read_jsonl(out)
    assert_is_expected(lines)
    # Counts per device and kind, and order per device by seq where there is one.
    assert Counter(line["device"] for line in lines) == {
        "SD-H-1": 7, "SD-H-2": 3, "EF-H-1": 7, "WP-H-1": 8,
    }
    assert {line["retain"] for line in lines if line["kind"] == "status"} == {True}
    assert [line.get("buffered_at") for line in lines if line["step"] == 6] == [50.0]
    assert "25 messages" in result.output and "nothing more to send" in result.output
    # Again: the same bytes.
    again = tmp_path / "again.jsonl"
    CliRunner().invoke(simulate_cmd.app, [
        "fleet", "--scenario", str(HOTEL), "--dry-run", "--out", str(again), "--topic-root",
        "gridwatch/v1",
    ])
    assert again.read_bytes() == out.read_bytes()


def stamp(payload: bytes) -> int | None:
    """A payload's epoch-ms ts, if it has one."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    ts = body.get("ts") if isinstance(body, dict) else None
    return ts if isinstance(ts, int) else None


def test_command_line_options_win_over_the_scenario(tmp_path: Path) -> None:
    base = plan_fleet(FleetOptions(now=0.0, scenario=HOTEL))
    assert (base.config.start_ts, base.config.seed, base.config.regular) == (T0, 7, False)
    assert base.config.clock is None and [d.device_id for d in base.devices] == [
        "SD-H-1", "SD-H-2", "EF-H-1", "WP-H-1",
    ]
    moved = plan_fleet(FleetOptions(now=0.0, scenario=HOTEL, start=T0 + 3600, seed=9))
    assert (moved.config.start_ts, moved.config.seed) == (T0 + 3600, 9)
    before, _ = dry_run(base.model())
    after, _ = dry_run(moved.model())
    assert [(o.t, o.topic) for o in after] == [(o.t, o.topic) for o in before]
    shifted = [
        stamp(a.payload) - stamp(b.payload)  # type: ignore[operator]
        for a, b in zip(after, before, strict=True)
        if stamp(b.payload) is not None
    ]
    assert set(shifted) == {3_600_000}
    with_regular = plan_fleet(FleetOptions(now=0.0, scenario=HOTEL, regular=True, duration=600))
    sent, _ = dry_run(with_regular.model(), limits=with_regular.limits)
    assert sum(o.step is None for o in sent) > 20  # now the devices' own traffic runs too
    assert [o.payload for o in sent if o.step == 1] == [o.payload for o in before if o.step == 1]


def test_a_dry_run_without_an_end_is_refused(tmp_path: Path) -> None:
    county = tmp_path / "county"
    write_county(generate_county(CountySpec(towns=1, villages_per_town=1, grids_per_village=2)),
                 county)
    runner = CliRunner()
    args = ["fleet", "--county-dir", str(county), "--dry-run", "--topic-root", "gridwatch/v1"]
    result = runner.invoke(simulate_cmd.app, args)
    assert isinstance(result.exception, common.UserError)
    assert "a dry run needs an end" in str(result.exception)
    out = tmp_path / "m.jsonl"
    result = runner.invoke(simulate_cmd.app, [*args, "--duration", "600", "--out", str(out),
                                              "--start", "2026-11-22T08:00:00+08:00",
                                              "--clock-sigma", "0", "--clock-wrong-share", "0"])
    assert result.exit_code == 0, result.output
    lines = read_jsonl(out)
    assert lines and all(line["t"] <= 600 for line in lines)
    assert lines[-1]["kind"] == "status" and orjson.loads(lines[-1]["payload"]) == {
        "ts": ms(600), "status": "offline",
    }
    bad = runner.invoke(simulate_cmd.app, [*args, "--duration", "6", "--start", "tomorrow"])
    assert isinstance(bad.exception, common.UserError) and "ISO 8601" in str(bad.exception)


def test_a_dry_run_is_what_the_live_runner_sends() -> None:
    """With the example scenario on a small county, a live run on a clock that only moves
    when it sleeps (rate-limited, so it lags) publishes the dry run's messages, in order."""
    devices = generate_county(CountySpec(towns=1, villages_per_town=1, grids_per_village=4)).devices
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace("440999001001-05-0001", "440999001001-04-0001")  # in this county
    text = text.replace("440999001001-03-0002", "440999001001-03-0001")

    def plan() -> Any:
        from simulators.fleet import FleetConfig, FleetModel
        model = FleetModel(devices, FleetConfig(start_ts=T0, speed=30.0, seed=3))
        parse_scenario(text, source="example").install(model)
        return model

    want, _ = dry_run(plan(), limits=RunLimits(duration=70.0))
    clock = VirtualClock(500.0)
    published: list[tuple[str, bytes, bool]] = []

    class Recorder:
        def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
            published.append((topic, payload, retain))

        def flush(self, timeout: float = 60.0) -> bool:
            return True

    run_fleet(plan(), Recorder(), limits=RunLimits(duration=70.0, rate=300), clock=clock,
              sleep=clock.sleep)
    assert published == [(o.topic, o.payload, o.retain) for o in want]
    assert any(o.buffered_at is not None for o in want)
    assert {o.step for o in want if o.step} >= {1, 2, 3, 5, 7, 9, 11, 12}


FLEET_ERRORS = [
    ("[fleet]\nstart = 2026-11-22T08:00:00\n", "s.toml: [fleet] (line 1): start "
     "2026-11-22T08:00:00 needs a time zone"),
    ('[fleet]\nstart = "soon"\n', "start 'soon' is not an ISO 8601 date-time"),
    ("[fleet]\nseed = 1.5\n", "seed must be a whole number"),
    ("[fleet]\nuntil = -5\n", "until must be a finite number > 0"),
    ('[fleet]\nregular = "no"\n', "regular must be true or false"),
    ("[fleet]\nspeed = 3\n", "unknown key(s) speed for [fleet]"),
    ("[fleet]\nintervals = { camera = { heartbeat = 5 } }\n", "intervals: 'camera' is not"),
    ("[fleet]\nintervals = { smoke_detector = { status = 5 } }\n",
     "intervals.smoke_detector.status: only telemetry and heartbeat"),
    ("[fleet]\nintervals = { smoke_detector = { heartbeat = -1 } }\n", "must be >= 0 seconds"),
    ("[fleet]\nclock = { sigma_s = -1 }\n", "s.toml: [fleet] clock (line 1): sigma_s must be"),
    ("[fleet]\nclock = { wrong_share = 2 }\n", "clock wrong share must be 0–1"),
    ("[fleet]\nclock = { skew = 2 }\n", "unknown key(s) skew for clock"),
    ('\n\n[[devices]]\ndevice_id = "X-1"\ntype = "toaster"\ngrid_code = "440999001001-01"\n',
     "s.toml: device 1 (line 3): type 'toaster' is not registered"),
    ('[[devices]]\ndevice_id = "X-1"\ntype = "smoke_detector"\ngrid_code = "440999001001-01"\n'
     '\n[[devices]]\ndevice_id = "X-2"\ntype = "smoke_detector"\n',
     "s.toml: device 2 (line 6): needs lat/lon (to find its grid) or a grid_code"),
    ('[fleet]\ndevices = "d.csv"\n\n[[devices]]\ndevice_id = "X-1"\ntype = "smoke_detector"\n'
     'grid_code = "440999001001-01"\n', "devices names a file, but the scenario also lists"),
]


@pytest.mark.parametrize(("head", "reason"), FLEET_ERRORS)
def test_bad_fleet_table_or_device_is_named(head: str, reason: str) -> None:
    text = f'{head}\n[[steps]]\nat = 1\ndevice = "X-1"\nevent = "alarm"\n'
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, source="s.toml")
    assert reason in str(caught.value)


def test_scenario_devices_file_is_relative_to_the_scenario(tmp_path: Path) -> None:
    write_county(generate_county(CountySpec(towns=1, villages_per_town=1, grids_per_village=1)),
                 tmp_path / "county")
    path = tmp_path / "s.toml"
    path.write_text('[fleet]\ndevices = "county/devices.csv"\nuntil = 60\n\n'
                    '[[steps]]\nat = 1\ndevice = "SD-440999001001-01-0001"\nevent = "alarm"\n')
    scenario = load_scenario(path)
    assert scenario.fleet.devices_file == tmp_path / "county" / "devices.csv"
    plan = plan_fleet(FleetOptions(now=T0, scenario=path))
    assert plan.limits.duration == 60 and len(plan.devices) > 1
    sent, report = dry_run(plan.model(), limits=plan.limits)
    assert report.stopped.value == "duration reached"
    assert [o.kind for o in sent if o.step == 1] == [Kind.EVENT]
