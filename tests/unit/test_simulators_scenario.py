"""Scenario files: exactly their scripted messages at their scripted times, and clear errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import orjson
import pytest

from devices.messages import Kind
from devices.registry import Device
from simulators.county import generate_county
from simulators.fleet import FleetConfig, FleetModel, Outgoing
from simulators.scenario import STEP_KINDS, ScenarioError, load_scenario, parse_scenario

START = 1_795_420_800.0
EXAMPLE = Path(__file__).parents[2] / "simulators" / "scenarios" / "example.toml"

DEVICES = [
    Device("SD-1", "smoke_detector"),
    Device("SD-2", "smoke_detector"),
    Device("EF-1", "electrical_fire_monitor"),
    Device("EF-2", "electrical_fire_monitor"),
]

SCENARIO = """\
name = "test"
description = "one of each step"

[[steps]]
at = 5
device = "SD-1"
event = "alarm"
detail = { channel = "smoke" }

[[steps]]
at = 10
device = "EF-1"
metric = "residual_current_ma"
ramp = [150, 450]
over = 60
every = 20
hold = 100

[[steps]]
at = 20
device = "EF-2"
silent_for = 600

[[steps]]
at = 30
device = "SD-2"
raw = "garbage"

[[steps]]
at = 40
device = "EF-2"
event = "fault"
"""


def fleet(tmp_path: Path, text: str = SCENARIO) -> FleetModel:
    path = tmp_path / "scenario.toml"
    path.write_text(text, encoding="utf-8")
    model = FleetModel(
        DEVICES,
        FleetConfig(
            start_ts=START,
            first_seq=1,
            # Smoke detectors quiet, so the scripted messages' seqs are known in advance.
            intervals={("smoke_detector", Kind.TELEMETRY): None,
                       ("smoke_detector", Kind.HEARTBEAT): None},
        ),
    )
    load_scenario(path).install(model)
    return model


def ms(t: float) -> int:
    return round((START + t) * 1000)


def test_scripted_messages_exactly(tmp_path: Path) -> None:
    model = fleet(tmp_path)
    out: list[Outgoing] = []
    t = 0.0
    while t < 1200:  # time moved by the test, one second at a time
        t += 1.0
        out.extend(model.messages_until(t))
    scripted = [o for o in out if o.step is not None]
    assert [(o.t, o.step, o.topic) for o in scripted] == [
        (5.0, 1, "gridwatch/v1/up/SD-1/event"),
        (10.0, 2, "gridwatch/v1/up/EF-1/telemetry"),
        (30.0, 2, "gridwatch/v1/up/EF-1/telemetry"),
        (30.0, 4, "gridwatch/v1/up/SD-2/telemetry"),
        (40.0, 5, "gridwatch/v1/up/EF-2/event"),
        (50.0, 2, "gridwatch/v1/up/EF-1/telemetry"),
        (70.0, 2, "gridwatch/v1/up/EF-1/telemetry"),
    ]
    payloads = {(o.t, o.step): o.payload for o in scripted}
    assert payloads[5.0, 1] == orjson.dumps(
        {"ts": ms(5), "seq": 1, "event": "alarm", "detail": {"channel": "smoke"}}
    )
    assert payloads[30.0, 4] == b"garbage"
    assert payloads[40.0, 5] == orjson.dumps(
        {"ts": ms(40), "seq": scripted_seq(out, "EF-2", 40.0), "event": "fault"}
    )
    ramp = [(o.t, orjson.loads(o.payload)) for o in scripted if o.step == 2]
    assert [body["values"]["residual_current_ma"] for _, body in ramp] == [150, 250, 350, 450]
    assert all(body["ts"] == ms(t) for t, body in ramp)
    seqs = [body["seq"] for _, body in ramp]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4


def scripted_seq(out: list[Outgoing], device: str, at: float) -> int:
    """The seq the device's next message gets: regular EF traffic before ``at`` used some."""
    before = [o for o in out if o.device_id == device and o.kind is not Kind.STATUS and o.t < at]
    return 1 + len(before)


def test_ramp_overrides_regular_telemetry_until_released(tmp_path: Path) -> None:
    out = list(fleet(tmp_path).messages_until(600))
    regular = [
        (o.t, orjson.loads(o.payload)["values"]["residual_current_ma"])
        for o in out
        if o.device_id == "EF-1" and o.kind is Kind.TELEMETRY and o.step is None
    ]
    during = [(t, v) for t, v in regular if 10 <= t <= 170]
    assert during and all(v == pytest.approx(150 + 300 * min(1, (t - 10) / 60), abs=0.01)
                          for t, v in during)
    after = [v for t, v in regular if t > 170]
    assert after and all(v < 250 for v in after)
    before = [v for t, v in regular if t < 10]
    assert all(v < 250 for v in before)


def test_silence_stops_regular_traffic_not_scripted_events(tmp_path: Path) -> None:
    out = list(fleet(tmp_path).messages_until(2000))
    ef2 = [o for o in out if o.device_id == "EF-2"]
    inside = [o for o in ef2 if 20 <= o.t < 620]
    assert [(o.t, o.kind, o.step) for o in inside] == [(40.0, Kind.EVENT, 5)]
    assert ef2[0].kind is Kind.STATUS and ef2[0].t == 0.0
    resumed = [o for o in ef2 if o.t >= 620]
    assert {Kind.TELEMETRY, Kind.HEARTBEAT} <= {o.kind for o in resumed}


def test_json_scenario(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(orjson.dumps({"steps": [
        {"at": 3, "device": "SD-1", "event": "tamper"},
        {"at": 4, "device": "SD-1", "raw": "{\"ts\": 1}", "kind": "heartbeat"},
    ]}).decode())
    scenario = load_scenario(path)
    assert scenario.name == "s" and scenario.ends_at() == 4
    model = FleetModel(DEVICES, FleetConfig(start_ts=START, first_seq=1))
    scenario.install(model)
    scripted = [o for o in model.messages_until(10) if o.step is not None]
    assert [(o.t, o.topic, o.payload) for o in scripted] == [
        (3.0, "gridwatch/v1/up/SD-1/event", orjson.dumps({"ts": ms(3), "seq": 1,
                                                           "event": "tamper"})),
        (4.0, "gridwatch/v1/up/SD-1/heartbeat", b'{"ts": 1}'),
    ]


def test_example_scenario_fits_the_default_county_and_shows_every_step_kind() -> None:
    scenario = load_scenario(EXAMPLE)
    county = generate_county()
    ids = {d.device_id for d in county.devices}
    assert scenario.devices() <= ids
    model = FleetModel(county.devices, FleetConfig(start_ts=START))
    scenario.install(model)
    steps = {o.step for o in model.messages_until(scenario.ends_at()) if o.step is not None}
    quiet = {"SilenceStep", "ClockStep"}  # they change traffic but make no message themselves
    talking = {s.where.number for s in scenario.steps if type(s).__name__ not in quiet}
    assert steps == talking
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert {key for step in raw["steps"] for key in step} >= set(STEP_KINDS)


BAD_STEPS = [
    ('at = 5\ndevice = "SD-1"\nevnt = "alarm"',
     "exactly one of event, ramp, silent_for, raw, outage, garbage, clock_offset (found none)"),
    ('at = 5\ndevice = "SD-1"\nevent = "alarm"\nsilent_for = 3', "found event, silent_for"),
    ('device = "SD-1"\nevent = "alarm"', "at is required"),
    ('at = -1\ndevice = "SD-1"\nevent = "alarm"', "at must be a finite number >= 0"),
    ('at = "soon"\ndevice = "SD-1"\nevent = "alarm"', "at must be a number"),
    ('at = 5\nevent = "alarm"', "device must be non-empty text"),
    ('at = 5\ndevice = "SD-1"\nevent = "alarm"\ndetial = {}', "unknown key(s) detial"),
    ('at = 5\ndevice = "EF-1"\nmetric = "residual_current_ma"\nramp = [1]\nover = 5',
     "ramp must be [from, to]"),
    ('at = 5\ndevice = "EF-1"\nmetric = "residual_current_ma"\nramp = [1, 2]', "over is required"),
    ('at = 5\ndevice = "EF-1"\nsilent_for = 0', "silent_for must be a finite number > 0"),
    ('at = 5\ndevice = "SD-1"\nraw = "x"\nkind = "telemetryy"', "kind must be one of"),
]


@pytest.mark.parametrize(("body", "reason"), BAD_STEPS)
def test_bad_step_is_named_with_its_line(tmp_path: Path, body: str, reason: str) -> None:
    first = 'at = 1\ndevice = "SD-1"\nevent = "alarm"'
    text = f'name = "bad"\n\n[[steps]]\n{first}\n\n[[steps]]\n{body}\n'
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: step 2 (line 8): ")
    assert reason in message


BAD_AGAINST_FLEET = [
    ('at = 5\ndevice = "SD-404"\nevent = "alarm"', "device 'SD-404' is not in the fleet"),
    ('at = 5\ndevice = "SD-1"\nevent = "explode"', "event 'explode' is not an event of"),
    ('at = 5\ndevice = "SD-1"\nmetric = "pressure_mpa"\nramp = [1, 2]\nover = 3',
     "metric 'pressure_mpa' is not a metric of smoke_detector"),
]


@pytest.mark.parametrize(("body", "reason"), BAD_AGAINST_FLEET)
def test_step_that_does_not_fit_the_fleet_is_named(body: str, reason: str) -> None:
    scenario = parse_scenario(f"[[steps]]\n{body}\n", source="s.toml")
    model = FleetModel(DEVICES, FleetConfig(start_ts=START))
    with pytest.raises(ScenarioError, match=r"^s\.toml: step 1 \(line 1\): ") as caught:
        scenario.install(model)
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("text", "fmt", "reason"),
    [
        ("steps = [", "toml", "not TOML"),
        ("{", "json", "not JSON"),
        ("[]", "json", "is an object"),
        ('name = "x"', "toml", "non-empty list of steps"),
        ('nmae = "x"\n[[steps]]\nat = 1\ndevice = "a"\nevent = "alarm"', "toml",
         "unknown key(s) nmae"),
        ('{"steps": [{"at": 1, "device": "a", "event": "alarm"}, 5]}', "json", "step 2: a step"),
    ],
)
def test_bad_file(text: str, fmt: str, reason: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, source="f", fmt=fmt)
    assert reason in str(caught.value)


def test_inline_steps_are_named_without_a_line() -> None:
    text = 'steps = [{at = 1, device = "a", event = "alarm"}, {at = 2, device = "a"}]'
    with pytest.raises(ScenarioError, match=r"^f: step 2: a step needs exactly one"):
        parse_scenario(text, source="f")


def test_a_later_ramp_on_the_same_metric_wins() -> None:
    text = """
[[steps]]
at = 0
device = "EF-1"
metric = "cable_temp_c_1"
ramp = [40, 40]
over = 0

[[steps]]
at = 100
device = "EF-1"
metric = "cable_temp_c_1"
ramp = [90, 90]
over = 0
hold = 50
"""
    model = FleetModel(DEVICES, FleetConfig(start_ts=START, first_seq=1))
    parse_scenario(text, source="s").install(model)
    temps = [
        (o.t, orjson.loads(o.payload)["values"]["cable_temp_c_1"])
        for o in model.messages_until(400)
        if o.device_id == "EF-1" and o.kind is Kind.TELEMETRY
    ]
    assert {v for t, v in temps if t < 100 or t > 150} == {40}
    assert {v for t, v in temps if 100 <= t <= 150} == {90}
