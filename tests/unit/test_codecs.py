"""Codecs: the canonical JSON and the vendor hex frame; any input decodes or is a CodecError."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.codecs import CodecError, UnknownCodec, get_codec, registered_codecs
from devices.codecs.vendor_hex import Function, decode_frame, encode_frame, encode_message
from devices.messages import DecodedMessage, Kind, RejectReason
from devices.overrides import ProfileOverrides
from devices.profiles import get_profile
from tests.unit.registry_data import jsonish

CANONICAL = get_codec("canonical")
VENDOR = get_codec("vendor_hex")
TS_MS = 1795420800123


def test_both_codecs_are_registered_and_a_profile_can_choose_one() -> None:
    assert {"canonical", "vendor_hex"} <= set(registered_codecs())
    with pytest.raises(UnknownCodec):
        get_codec("modbus")
    profile = ProfileOverrides(codec="vendor_hex").apply(get_profile("electrical_fire_monitor"))
    assert get_codec(profile.codec) is VENDOR


# ---------------------------------------------------------------- canonical


def test_canonical_telemetry_event_heartbeat_and_status() -> None:
    telemetry = CANONICAL.decode(
        Kind.TELEMETRY,
        b'{"ts": "2026-11-22T08:00:00.123Z", "seq": 4711,'
        b' "values": {"residual_current_ma": 35, "cable_temp_c_1": 41.5}}',
    )
    assert telemetry.ts == datetime(2026, 11, 22, 8, 0, 0, 123000, tzinfo=UTC).timestamp()
    assert telemetry.seq == 4711
    assert telemetry.values == {"residual_current_ma": 35.0, "cable_temp_c_1": 41.5}

    event = CANONICAL.decode(
        Kind.EVENT, b'{"ts": 1795420800123, "seq": 4712, "event": "alarm", "detail": {"c": 1}}'
    )
    assert (event.event, event.detail, event.ts) == ("alarm", {"c": 1}, TS_MS / 1000)

    assert CANONICAL.decode(Kind.HEARTBEAT, b"{}") == DecodedMessage()
    assert CANONICAL.decode(Kind.STATUS, b" offline\n").status == "offline"


@pytest.mark.parametrize(
    ("kind", "payload", "reason"),
    [
        (Kind.TELEMETRY, b"\xff\xfe", RejectReason.NOT_JSON),
        (Kind.TELEMETRY, b"[1]", RejectReason.BAD_PAYLOAD),
        (Kind.TELEMETRY, b'{"ts": 1}', RejectReason.BAD_PAYLOAD),
        (Kind.TELEMETRY, b'{"values": {"a": "1"}}', RejectReason.BAD_PAYLOAD),
        (Kind.TELEMETRY, b'{"values": {}, "ts": "yesterday"}', RejectReason.BAD_PAYLOAD),
        (Kind.TELEMETRY, b'{"values": {}, "seq": -1}', RejectReason.BAD_PAYLOAD),
        (Kind.EVENT, b'{"event": ""}', RejectReason.BAD_PAYLOAD),
        (Kind.STATUS, b'{"status": "asleep"}', RejectReason.BAD_PAYLOAD),
    ],
)
def test_canonical_rejections_carry_a_reason(kind: Kind, payload: bytes, reason: Any) -> None:
    with pytest.raises(CodecError) as caught:
        CANONICAL.decode(kind, payload)
    assert caught.value.reason is reason


# ---------------------------------------------------------------- vendor_hex


def envelope(data: str, **extra: Any) -> bytes:
    return orjson.dumps({"设备编号": "EF-001", "时间": TS_MS, "流水号": 12, "数据": data, **extra})


def test_the_documented_example_frame_decodes() -> None:
    # A5 | telemetry | no cause | 2 probes | 350 mA | 41.5 °C | probe 2 disconnected | sum
    body = bytes.fromhex("A5 01 00 02 01 5E 01 9F 80 00")
    frame = body + bytes([sum(body) & 0xFF])

    message = VENDOR.decode(Kind.TELEMETRY, envelope(frame.hex(" ")))

    assert message == DecodedMessage(
        ts=TS_MS / 1000,
        seq=12,
        values={"residual_current_ma": 350.0, "cable_temp_c_1": 41.5},
        device_id="EF-001",
    )


def test_an_alarm_frame_is_an_alarm_event_naming_the_tripped_channels() -> None:
    frame = encode_frame(Function.ALARM, 520, [81.0, 40.0], cause=0b101)

    message = VENDOR.decode(Kind.EVENT, encode_message("EF-001", frame, ts_ms=TS_MS))

    assert message.event == "alarm"
    assert message.detail["channels"] == ["residual_current_ma", "cable_temp_c_2"]
    assert message.values == {
        "residual_current_ma": 520.0,
        "cable_temp_c_1": 81.0,
        "cable_temp_c_2": 40.0,
    }
    assert message.detail["values"] == message.values


def test_a_heartbeat_frame_without_probes_and_without_envelope_extras() -> None:
    message = VENDOR.decode(
        Kind.HEARTBEAT, encode_message(None, encode_frame(Function.HEARTBEAT, 120))
    )
    assert message == DecodedMessage(values={"residual_current_ma": 120.0})


def test_status_stays_the_plain_words() -> None:
    assert VENDOR.decode(Kind.STATUS, b"online").status == "online"
    with pytest.raises(CodecError):
        VENDOR.decode(Kind.STATUS, b'{"status": "online"}')


def with_checksum(hex_body: str) -> str:
    body = bytes.fromhex(hex_body)
    return (body + bytes([sum(body) & 0xFF])).hex()


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        ("A5 01 00 00 01 5E 00", "checksum 0x00, computed 0x05"),
        ("A5 01 00 01 01 5E 05", "frame of 7 bytes, 1 probes need 9"),
        ("A5 01 00", "shorter than the minimum"),
        (with_checksum("5A 01 00 00 01 5E"), "frame header 0x5A, expected 0xA5"),
        (with_checksum("A5 07 00 00 01 5E"), "unknown function code 0x07"),
        (with_checksum("A5 01 00 05 01 5E" + " 00 00" * 5), "5 cable probes, at most 4"),
        (with_checksum("A5 02 00 00 01 5E"), "function alarm sent on the telemetry topic"),
        ("A5 0G", "数据 is not hex"),
        ("", "shorter than the minimum"),
    ],
)
def test_a_damaged_frame_is_a_codec_error(data: str, detail: str) -> None:
    with pytest.raises(CodecError) as caught:
        VENDOR.decode(Kind.TELEMETRY, envelope(data))
    assert caught.value.reason is RejectReason.CODEC_ERROR
    assert detail in caught.value.detail


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"A5 01 00", RejectReason.NOT_JSON),
        (b'"A5"', RejectReason.BAD_PAYLOAD),
        (orjson.dumps({"数据": 165}), RejectReason.BAD_PAYLOAD),
        (orjson.dumps({"设备编号": 7, "数据": "A5"}), RejectReason.BAD_PAYLOAD),
        (orjson.dumps({"时间": "昨天", "数据": "A5"}), RejectReason.BAD_PAYLOAD),
        (orjson.dumps({"流水号": -3, "数据": "A5"}), RejectReason.BAD_PAYLOAD),
    ],
)
def test_a_bad_envelope_is_rejected_like_canonical_payloads(payload: bytes, reason: Any) -> None:
    with pytest.raises(CodecError) as caught:
        VENDOR.decode(Kind.TELEMETRY, payload)
    assert caught.value.reason is reason


def test_encode_refuses_what_the_frame_cannot_carry() -> None:
    with pytest.raises(ValueError, match="at most 4"):
        encode_frame(Function.TELEMETRY, 0, [20.0] * 5)
    with pytest.raises(ValueError, match="uint16"):
        encode_frame(Function.TELEMETRY, 70_000)
    with pytest.raises(ValueError, match="int16"):
        encode_frame(Function.TELEMETRY, 0, [3300.0])


TEMPS = st.lists(st.none() | st.integers(-32767, 32767).map(lambda t: t / 10), max_size=4)
FUNCTIONS = st.sampled_from(list(Function))
KIND_OF = {
    Function.TELEMETRY: Kind.TELEMETRY,
    Function.ALARM: Kind.EVENT,
    Function.HEARTBEAT: Kind.HEARTBEAT,
}


@settings(database=None, max_examples=200)
@given(
    function=FUNCTIONS,
    residual=st.integers(0, 0xFFFF),
    temps=TEMPS,
    cause=st.integers(0, 0x1F),
    device_id=st.none() | st.text(min_size=1, max_size=20),
    ts_ms=st.none() | st.integers(0, 2**53),
    seq=st.none() | st.integers(0, 2**63 - 1),
)
def test_vendor_hex_round_trip(
    function: Function,
    residual: int,
    temps: list[float | None],
    cause: int,
    device_id: str | None,
    ts_ms: int | None,
    seq: int | None,
) -> None:
    frame = encode_frame(function, residual, temps, cause)
    decoded = decode_frame(frame)
    assert (decoded.function, decoded.cause) == (function, cause)

    message = VENDOR.decode(
        KIND_OF[function], encode_message(device_id, frame, ts_ms=ts_ms, seq=seq)
    )

    expected = {"residual_current_ma": float(residual)}
    expected |= {f"cable_temp_c_{n}": t for n, t in enumerate(temps, start=1) if t is not None}
    assert message.values == expected
    assert message.device_id == device_id
    assert message.seq == seq
    assert message.ts == (None if ts_ms is None else ts_ms / 1000)
    assert message.event == ("alarm" if function is Function.ALARM else None)


# ---------------------------------------------------------------- any input


CODECS = st.sampled_from([CANONICAL, VENDOR])
KINDS = st.sampled_from(list(Kind))
ENVELOPE_KEYS = st.sampled_from(
    [
        "ts",
        "seq",
        "values",
        "event",
        "detail",
        "status",
        "device_id",
        "设备编号",
        "时间",
        "流水号",
        "数据",
    ]
)
FRAMES = st.binary(max_size=16).map(lambda b: b.hex(" "))
SHAPED = st.dictionaries(ENVELOPE_KEYS, jsonish(8) | FRAMES, max_size=6)


def test_canonical_status_of_unhashable_type_is_a_codec_error() -> None:
    with pytest.raises(CodecError):
        CANONICAL.decode(Kind.STATUS, b'{"status": []}')


def decodes_or_codec_error(codec: Any, kind: Kind, payload: bytes) -> None:
    try:
        message = codec.decode(kind, payload)
    except CodecError as exc:
        assert isinstance(exc.reason, RejectReason)
    else:
        assert isinstance(message, DecodedMessage)


@settings(database=None, max_examples=300)
@given(codec=CODECS, kind=KINDS, value=jsonish() | SHAPED)
def test_any_json_decodes_or_is_a_codec_error(codec: Any, kind: Kind, value: Any) -> None:
    decodes_or_codec_error(codec, kind, orjson.dumps(value))


@settings(database=None, max_examples=300)
@given(codec=CODECS, kind=KINDS, payload=st.binary(max_size=64))
def test_any_bytes_decode_or_are_a_codec_error(codec: Any, kind: Kind, payload: bytes) -> None:
    decodes_or_codec_error(codec, kind, payload)


@settings(database=None, max_examples=300)
@given(kind=KINDS, frame=st.binary(max_size=16), fix_checksum=st.booleans())
def test_any_frame_decodes_or_is_a_codec_error(
    kind: Kind, frame: bytes, fix_checksum: bool
) -> None:
    if fix_checksum and frame:
        frame = frame[:-1] + bytes([sum(frame[:-1]) & 0xFF])
    decodes_or_codec_error(VENDOR, kind, envelope(frame.hex()))
