"""A vendor-style electrical-fire monitor: a binary frame as hex inside a JSON envelope.

It exists to prove the codec seam with the kind of payload vendors really send. Envelope
(keys as the vendor writes them)::

    {"设备编号": "EF-001", "时间": 1795420800123, "流水号": 12, "数据": "A5 01 00 02 01 2C ..."}

``时间`` is epoch ms (or ISO 8601), ``流水号`` the sequence number, both optional; ``数据``
is the frame in hex (spaces allowed). Frame, big-endian::

    offset  size  field
    0       1     header, always 0xA5
    1       1     function: 0x01 telemetry, 0x02 alarm, 0x03 heartbeat
    2       1     alarm cause: bit0 residual current, bit1..4 cable probe 1..4 (0 otherwise)
    3       1     n, number of cable probes, 0..4
    4       2     residual current, mA, uint16
    6       2·n   cable temperature per probe, int16 in 0.1 °C; 0x8000 = probe disconnected
    6+2n    1     checksum: sum of bytes 0 .. 5+2n, modulo 256

The function code must match the topic (telemetry / event / heartbeat), so a frame cannot
smuggle an alarm through the telemetry topic. Status (LWT) stays the plain words.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

import orjson

from devices.codecs import CodecError, register
from devices.codecs.canonical import claimed_device, load_object, parse_seq, parse_ts
from devices.messages import DecodedMessage, Kind, RejectReason

HEADER = 0xA5
MAX_PROBES = 4
DISCONNECTED = -0x8000
_HEAD = struct.Struct(">BBBBH")
_STATUS_WORDS = frozenset({"online", "offline"})


class Function(IntEnum):
    TELEMETRY = 0x01
    ALARM = 0x02
    HEARTBEAT = 0x03


_KIND_OF = {
    Function.TELEMETRY: Kind.TELEMETRY,
    Function.ALARM: Kind.EVENT,
    Function.HEARTBEAT: Kind.HEARTBEAT,
}
# Cause bits name the metric that tripped, in the canonical metric names.
_CAUSE_CHANNELS = (
    "residual_current_ma",
    *(f"cable_temp_c_{i}" for i in range(1, MAX_PROBES + 1)),
)


def _bad_frame(detail: str) -> CodecError:
    return CodecError(RejectReason.CODEC_ERROR, detail)


@dataclass(frozen=True, slots=True)
class Frame:
    """What one frame says, with the readings already in canonical metric names."""

    function: Function
    cause: int
    values: Mapping[str, float]


def decode_frame(frame: bytes) -> Frame:
    """Read one frame; CodecError (``codec_error``) when it is damaged or malformed."""
    if len(frame) < _HEAD.size + 1:
        raise _bad_frame(f"frame of {len(frame)} bytes is shorter than the minimum 7")
    header, function, cause, probes, residual = _HEAD.unpack_from(frame)
    if header != HEADER:
        raise _bad_frame(f"frame header 0x{header:02X}, expected 0x{HEADER:02X}")
    if probes > MAX_PROBES:
        raise _bad_frame(f"{probes} cable probes, at most {MAX_PROBES}")
    expected = _HEAD.size + 2 * probes + 1
    if len(frame) != expected:
        raise _bad_frame(f"frame of {len(frame)} bytes, {probes} probes need {expected}")
    if sum(frame[:-1]) & 0xFF != frame[-1]:
        raise _bad_frame(f"checksum 0x{frame[-1]:02X}, computed 0x{sum(frame[:-1]) & 0xFF:02X}")
    try:
        func = Function(function)
    except ValueError:
        raise _bad_frame(f"unknown function code 0x{function:02X}") from None
    values: dict[str, float] = {"residual_current_ma": float(residual)}
    temps = struct.unpack_from(f">{probes}h", frame, _HEAD.size)
    for number, raw in enumerate(temps, start=1):
        if raw != DISCONNECTED:
            values[f"cable_temp_c_{number}"] = raw / 10.0
    return Frame(func, cause, values)


def encode_frame(
    function: Function,
    residual_current_ma: int,
    cable_temps_c: Sequence[float | None] = (),
    cause: int = 0,
) -> bytes:
    """The frame a monitor would send; ``None`` for a disconnected probe (simulators, tests)."""
    if len(cable_temps_c) > MAX_PROBES:
        raise ValueError(f"at most {MAX_PROBES} cable probes")
    if not 0 <= residual_current_ma <= 0xFFFF:
        raise ValueError(f"residual current {residual_current_ma} mA does not fit uint16")
    temps = [DISCONNECTED if t is None else round(t * 10) for t in cable_temps_c]
    if any(not DISCONNECTED < t <= 0x7FFF for t in temps if t != DISCONNECTED):
        raise ValueError(f"cable temperatures {cable_temps_c} do not fit int16 in 0.1 °C")
    body = _HEAD.pack(HEADER, function, cause, len(temps), residual_current_ma)
    body += struct.pack(f">{len(temps)}h", *temps)
    return body + bytes([sum(body) & 0xFF])


def encode_message(
    device_id: str | None, frame: bytes, *, ts_ms: int | None = None, seq: int | None = None
) -> bytes:
    """The JSON envelope around a frame, as the vendor's gateway publishes it."""
    envelope: dict[str, object] = {}
    if device_id is not None:
        envelope["设备编号"] = device_id
    if ts_ms is not None:
        envelope["时间"] = ts_ms
    if seq is not None:
        envelope["流水号"] = seq
    envelope["数据"] = frame.hex(" ").upper()
    return orjson.dumps(envelope)


class VendorHex:
    name = "vendor_hex"

    def decode(self, kind: Kind, payload: bytes) -> DecodedMessage:
        if kind is Kind.STATUS:
            word = payload.strip().decode("utf-8", "replace").lower()
            if word in _STATUS_WORDS:
                return DecodedMessage(status=word)
            raise CodecError(RejectReason.BAD_PAYLOAD, f"status must be online/offline: {word!r}")
        body = load_object(payload)
        claimed = claimed_device(body, "设备编号")
        ts = parse_ts(body.get("时间"))
        seq = parse_seq(body.get("流水号"))
        text = body.get("数据")
        if not isinstance(text, str):
            raise CodecError(RejectReason.BAD_PAYLOAD, "数据 must be the frame as a hex string")
        try:
            frame = bytes.fromhex(text)
        except ValueError as exc:
            raise _bad_frame(f"数据 is not hex: {exc}") from None
        decoded = decode_frame(frame)
        function, values = decoded.function, decoded.values
        if _KIND_OF[function] is not kind:
            raise _bad_frame(f"function {function.name.lower()} sent on the {kind.value} topic")
        if function is Function.ALARM:
            channels = [c for bit, c in enumerate(_CAUSE_CHANNELS) if decoded.cause >> bit & 1]
            # Readings go in the detail too: they are the alarm's evidence wherever
            # the event is stored, while ``values`` may be dropped for events downstream.
            return DecodedMessage(
                ts=ts,
                seq=seq,
                values=values,
                event="alarm",
                detail={"channels": channels, "values": dict(values)},
                device_id=claimed,
            )
        return DecodedMessage(ts=ts, seq=seq, values=values, device_id=claimed)


register(VendorHex())
