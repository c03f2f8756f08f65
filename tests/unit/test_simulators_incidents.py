"""Incident steps: an outage replays exactly what the device made, garbage gets exactly the
rejection it is named for, a clock jump moves ts and nothing else; and their errors."""

from __future__ import annotations

import orjson
import pytest

from devices.codecs import get_codec
from devices.messages import Kind, RawMessage, Rejection
from devices.profiles import get_profile
from devices.registry import Device
from gridwatch.config import load_settings
from ingest.topics import UplinkTopics
from ingest.validate import KnownDevice, Limits, Validator
from simulators.fleet import FleetConfig, FleetModel, Outgoing
from simulators.garbage import GARBAGE_KINDS
from simulators.scenario import ScenarioError, parse_scenario

START = 1_795_420_800.0
DEVICES = [
    Device("SD-1", "smoke_detector"),
    Device("EF-1", "electrical_fire_monitor"),
    Device("WP-1", "water_pressure_sensor"),
]


def fleet(text: str | None = None, devices: list[Device] = DEVICES) -> FleetModel:
    model = FleetModel(devices, FleetConfig(start_ts=START, first_seq=1, seed=5))
    if text is not None:
        parse_scenario(text, source="s.toml").install(model)
    return model


def body(out: Outgoing) -> dict[str, object]:
    decoded: dict[str, object] = orjson.loads(out.payload)
    return decoded


OUTAGE = """
[[steps]]
at = 100
device = "EF-1"
outage = 600
status = true
"""


def test_outage_holds_what_the_device_makes_and_replays_it_unchanged() -> None:
    twin = [o for o in fleet().messages_until(2000) if o.device_id == "EF-1"]
    model = fleet(OUTAGE)
    got = [o for o in model.messages_until(2000) if o.device_id == "EF-1"]
    made_inside = [o for o in twin if 100 <= o.t < 700 and o.kind is not Kind.STATUS]
    assert len(made_inside) >= 10  # telemetry every 60 s, heartbeats every 300 s
    before = [o for o in got if o.t < 100]
    assert before == [o for o in twin if o.t < 100]
    inside = [o for o in got if 100 <= o.t < 700]
    assert [(o.t, o.kind, o.retain, o.payload) for o in inside] == [
        (100.0, Kind.STATUS, True, b'{"status":"offline"}')  # the broker's, for the device
    ]
    at_end = [o for o in got if o.t == 700]
    assert at_end[0].kind is Kind.STATUS and body(at_end[0])["status"] == "online"
    burst = at_end[1:]
    assert [(o.topic, o.payload) for o in burst] == [(o.topic, o.payload) for o in made_inside]
    assert [o.buffered_at for o in burst] == [o.t for o in made_inside]
    assert all(o.step is None for o in burst)  # regular traffic, held
    # Original ts and seq; afterwards the device carries on exactly as without the outage.
    assert [body(o)["ts"] for o in burst] == [round((START + o.t) * 1000) for o in made_inside]
    after = [o for o in got if o.t > 700]
    assert after == [o for o in twin if o.t > 700]
    assert model.lost == 0


def test_a_full_outage_buffer_loses_its_oldest() -> None:
    model = fleet(OUTAGE.replace("status = true", "buffer = 3"))
    got = [o for o in model.messages_until(2000) if o.device_id == "EF-1"]
    twin = [o for o in fleet().messages_until(2000) if o.device_id == "EF-1"]
    made_inside = [o for o in twin if 100 <= o.t < 700 and o.kind is not Kind.STATUS]
    burst = [o for o in got if o.buffered_at is not None]
    assert [o.payload for o in burst] == [o.payload for o in made_inside[-3:]]
    assert model.lost == len(made_inside) - 3
    assert not [o for o in got if 100 <= o.t < 700]  # no status without `status = true`


def test_scripted_messages_during_an_outage_are_held_too() -> None:
    text = OUTAGE + '\n[[steps]]\nat = 200\ndevice = "EF-1"\nevent = "fault"\n'
    burst = [o for o in fleet(text).messages_until(2000) if o.buffered_at is not None]
    scripted = [o for o in burst if o.step == 2]
    assert [(o.buffered_at, o.t, body(o)["event"]) for o in scripted] == [(200.0, 700.0, "fault")]


def test_outages_may_not_overlap_on_one_device() -> None:
    text = OUTAGE + '\n[[steps]]\nat = 700\ndevice = "EF-1"\noutage = 60\n'
    with pytest.raises(ScenarioError, match=r"^s\.toml: step 2 \(line 8\): outage 700–760 s "
                                            r"overlaps or touches the outage of step 1"):
        fleet(text)
    fleet(text.replace("at = 700", "at = 701"))  # a second later is another outage


def validator(devices: list[Device]) -> Validator:
    """Ingest's validator with the service's default limits."""
    settings = load_settings(environ={})
    known = {
        d.device_id: KnownDevice(d.device_id, get_profile(d.type), get_codec("canonical"))
        for d in devices
    }
    return Validator(
        UplinkTopics(settings.mqtt.topic_root),
        known,
        Limits(
            max_payload_bytes=settings.mqtt.max_payload_bytes,
            max_future_skew_s=settings.ingest.max_future_skew_s,
            oldest_accepted_s=settings.db.readings_retention_days * 86400.0,
        ),
    )


@pytest.mark.parametrize("kind", list(GARBAGE_KINDS))
@pytest.mark.parametrize("device", [d.device_id for d in DEVICES])
def test_each_garbage_kind_gets_the_rejection_it_is_named_for(kind: str, device: str) -> None:
    text = f'[[steps]]\nat = 30\ndevice = "{device}"\ngarbage = ["{kind}"]\n'
    scripted = [o for o in fleet(text).messages_until(60) if o.step is not None]
    assert len(scripted) == 1
    out = scripted[0]
    result = validator(DEVICES).check(RawMessage(out.topic, out.payload, 1, 0, START + out.t))
    assert isinstance(result, Rejection), (kind, out.payload[:200])
    assert result.reason is GARBAGE_KINDS[kind].reason, result.detail


def test_garbage_comes_in_the_listed_order_and_seq_only_where_the_device_made_it() -> None:
    kinds = ["not_json", "unknown_metric", "empty", "out_of_range", "bad_topic", "oversize"]
    text = (f'[[steps]]\nat = 30\ndevice = "WP-1"\ngarbage = {orjson.dumps(kinds).decode()}\n'
            "size = 70000\n")
    model = fleet(text, devices=[Device("WP-1", "water_pressure_sensor")])
    out = [o for o in model.messages_until(30) if o.device_id == "WP-1"]
    scripted = [o for o in out if o.step == 1]
    assert [o.t for o in scripted] == [30.0] * len(kinds)
    assert scripted[0].payload == b"\x00\x13\xffgarbled frame\xfe"
    assert scripted[2].payload == b""
    assert scripted[4].topic == "gridwatch/v1/up/WP-1/selfie"
    assert len(scripted[5].payload) == 70000
    before = sum(1 for o in out if o.step is None and o.kind is not Kind.STATUS)
    seqs = [orjson.loads(scripted[i].payload)["seq"] for i in (1, 3)]
    assert seqs == [before + 1, before + 2]
    assert orjson.loads(scripted[3].payload)["values"] == {"pressure_mpa": 17.0}
    assert "seq" not in orjson.loads(scripted[4].payload)


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ('garbage = ["not_json", "nonsense"]', "unknown garbage kind(s) nonsense (known: not_json"),
        ("garbage = []", "garbage must be a non-empty list of kinds"),
        ('garbage = ["not_json"]\nsize = 10', 'size is only for the "oversize" kind'),
        ('garbage = ["oversize"]\nsize = 10', "size must be a whole number >= 64"),
        ("outage = 0", "outage must be a finite number > 0"),
        ("outage = 60\nbuffer = 0", "buffer must be a whole number >= 1"),
        ('outage = 60\nstatus = "yes"', "status must be true or false"),
        ("clock_offset = 5\nfor = 0", "for must be a finite number > 0"),
        ('clock_offset = "3h"', "clock_offset must be a number"),
        ("clock_offset = 5\nbuffer = 3", "unknown key(s) buffer for a clock_offset step"),
    ],
)
def test_bad_incident_step_is_named_with_its_line(extra: str, reason: str) -> None:
    text = f'name = "x"\n\n[[steps]]\nat = 1\ndevice = "EF-1"\n{extra}\n'
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, source="s.toml")
    assert str(caught.value).startswith("s.toml: step 1 (line 3): ")
    assert reason in str(caught.value)


def test_clock_jump_moves_ts_for_a_while_and_nothing_else() -> None:
    text = '[[steps]]\nat = 120\ndevice = "EF-1"\nclock_offset = -7200.5\nfor = 180\n'
    twin = [o for o in fleet().messages_until(1000) if o.device_id == "EF-1"]
    got = [o for o in fleet(text).messages_until(1000) if o.device_id == "EF-1"]
    assert [(o.t, o.topic) for o in got] == [(o.t, o.topic) for o in twin]
    for a, b in zip(twin, got, strict=True):
        shift = body(b)["ts"] - body(a)["ts"]  # type: ignore[operator]
        assert shift == (-7_200_500 if 120 <= a.t < 300 else 0), a.t
        assert {k: v for k, v in body(a).items() if k != "ts"} == {
            k: v for k, v in body(b).items() if k != "ts"
        }
    assert any(120 <= o.t < 300 for o in got)


def test_stopping_inside_a_burst_loses_nothing() -> None:
    whole = list(fleet(OUTAGE).messages_until(2000))
    model = fleet(OUTAGE)
    taken: list[Outgoing] = []
    for out in model.messages_until(2000):
        taken.append(out)
        if out.buffered_at is not None and sum(o.buffered_at is not None for o in taken) == 3:
            break  # a runner stopping at its message limit in the middle of the burst
    assert model.next_time() == 700.0  # the rest of the burst is still due now
    taken.extend(model.messages_until(2000))
    assert taken == whole
