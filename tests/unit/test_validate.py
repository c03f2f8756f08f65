import orjson
import pytest

from devices.codecs import get_codec
from devices.messages import DeviceEvent, Heartbeat, RawMessage, Reading, Rejection, StatusChange
from devices.profiles import get_profile
from ingest.topics import UplinkTopics
from ingest.validate import KnownDevice, Limits, Validator

NOW = 1_795_420_800.0


@pytest.fixture
def validator() -> Validator:
    devices = {
        d: KnownDevice(d, get_profile(t), get_codec("canonical"))
        for d, t in [("EF-1", "electrical_fire_monitor"), ("SD-1", "smoke_detector")]
    }
    return Validator(UplinkTopics("gridwatch/v1"), devices, Limits(4096, 600.0, 90 * 86400.0))


def raw(topic: str, body: object, received_at: float = NOW) -> RawMessage:
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    return RawMessage(f"gridwatch/v1/up/{topic}", payload, 1, 1, received_at)


def reason(result: object) -> str:
    assert isinstance(result, Rejection), result
    return result.reason.value


def test_telemetry_accepted_with_device_time(validator: Validator) -> None:
    r = validator.check(
        raw(
            "EF-1/telemetry",
            {"ts": (NOW - 5) * 1000, "seq": 7, "values": {"residual_current_ma": 35.0}},
        )
    )
    assert isinstance(r, Reading)
    assert (r.ts, r.seq, r.ts_from_arrival) == (NOW - 5, 7, False)


def test_missing_ts_uses_arrival_and_marks_it(validator: Validator) -> None:
    r = validator.check(raw("SD-1/heartbeat", {"values": {"battery_pct": 80}}))
    assert isinstance(r, Heartbeat) and r.ts == NOW and r.ts_from_arrival


def test_event_and_status(validator: Validator) -> None:
    e = validator.check(raw("SD-1/event", {"ts": "2026-11-22T08:00:00Z", "event": "alarm"}))
    assert isinstance(e, DeviceEvent) and e.event == "alarm"
    s = validator.check(raw("SD-1/status", b"offline"))
    assert isinstance(s, StatusChange) and s.status == "offline"


@pytest.mark.parametrize(
    ("topic", "body", "expected"),
    [
        ("NOPE/telemetry", {"values": {}}, "unknown_device"),
        ("EF-1/telemetry", b"{not json", "not_json"),
        ("EF-1/telemetry", {"values": {"residual_current_ma": "high"}}, "bad_payload"),
        ("EF-1/telemetry", {"values": {"residual_current_ma": -5}}, "out_of_range"),
        ("EF-1/telemetry", {"values": {"pressure_mpa": 0.3}}, "unknown_metric"),
        ("EF-1/telemetry", {"device_id": "EF-2", "values": {}}, "device_mismatch"),
        ("EF-1/telemetry", {"ts": (NOW + 3600) * 1000, "values": {}}, "future_timestamp"),
        ("EF-1/telemetry", {"ts": (NOW - 100 * 86400) * 1000, "values": {}}, "too_old"),
        ("SD-1/event", {"event": "explode"}, "unknown_event"),
        ("SD-1/whatever", {}, "bad_topic"),
        ("SD-1/telemetry", b"x" * 5000, "oversize"),
    ],
)
def test_rejections(validator: Validator, topic: str, body: object, expected: str) -> None:
    result = validator.check(raw(topic, body))
    assert reason(result) == expected
    assert isinstance(result, Rejection) and result.payload  # raw bytes kept for replay


def test_a_new_device_type_is_a_registered_profile_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Adding a type touches no pipeline code: register a profile, and its devices ingest."""
    from devices import profiles
    from devices.profiles import DeviceProfile, MetricSpec, register

    monkeypatch.setattr(profiles, "_PROFILES", dict(profiles._PROFILES))  # undone after the test
    register(
        DeviceProfile(
            type_key="gas_detector",
            description="Combustible gas detector (kitchens, boiler rooms)",
            metrics={"gas_lel_pct": MetricSpec("gas_lel_pct", "%LEL", 0.0, 100.0)},
            heartbeat_interval_s=3600.0,
        )
    )
    devices = {"GD-1": KnownDevice("GD-1", get_profile("gas_detector"), get_codec("canonical"))}
    v = Validator(UplinkTopics("gridwatch/v1"), devices, Limits(4096, 600.0, 90 * 86400.0))
    ok = v.check(raw("GD-1/telemetry", {"values": {"gas_lel_pct": 12.5}}))
    assert isinstance(ok, Reading) and ok.values == {"gas_lel_pct": 12.5}
    assert (
        reason(v.check(raw("GD-1/telemetry", {"values": {"gas_lel_pct": 180}}))) == "out_of_range"
    )
