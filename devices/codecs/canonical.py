"""The contract's JSON payload: ``{"ts", "seq", "values" | "event"/"detail"}``.

Runs once per message on the ingest hot path, so it decodes with orjson and checks types by
hand rather than through a schema library: ~1 µs a message.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import orjson

from devices.codecs import CodecError, register
from devices.messages import DecodedMessage, Kind, RejectReason

_STATUS_WORDS = frozenset({"online", "offline"})


def parse_ts(raw: Any) -> float | None:
    """Epoch milliseconds (int/float) or ISO 8601 text → epoch seconds; None when absent."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise CodecError(RejectReason.BAD_PAYLOAD, "ts must be epoch ms or ISO 8601, got bool")
    if isinstance(raw, int | float):
        if not math.isfinite(raw):
            raise CodecError(RejectReason.BAD_PAYLOAD, "ts is not finite")
        return float(raw) / 1000.0
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise CodecError(RejectReason.BAD_PAYLOAD, f"ts {raw!r} is not ISO 8601") from None
        if parsed.tzinfo is None:
            raise CodecError(RejectReason.BAD_PAYLOAD, f"ts {raw!r} has no time zone")
        return parsed.timestamp()
    raise CodecError(RejectReason.BAD_PAYLOAD, f"ts must be epoch ms or ISO 8601, got {raw!r}")


def parse_seq(raw: Any) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0 or raw >= 2**63:
        raise CodecError(
            RejectReason.BAD_PAYLOAD, f"seq must be a non-negative integer, got {raw!r}"
        )
    return raw


def parse_values(raw: Any) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise CodecError(RejectReason.BAD_PAYLOAD, "values must be an object of numbers")
    values: dict[str, float] = {}
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CodecError(RejectReason.BAD_PAYLOAD, f"value {name!r} is not a number: {value!r}")
        number = float(value)
        if not math.isfinite(number):
            raise CodecError(RejectReason.BAD_PAYLOAD, f"value {name!r} is not finite")
        values[name] = number
    return values


def load_object(payload: bytes) -> dict[str, Any]:
    """The payload as a JSON object, or the CodecError that names why it is not one."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise CodecError(RejectReason.NOT_JSON, str(exc)) from None
    if not isinstance(body, dict):
        raise CodecError(RejectReason.BAD_PAYLOAD, "payload must be a JSON object")
    return body


def claimed_device(body: dict[str, Any], key: str) -> str | None:
    """The device id a payload claims under ``key`` (compared with the topic's by ingest)."""
    claimed = body.get(key)
    if claimed is not None and not isinstance(claimed, str):
        raise CodecError(RejectReason.BAD_PAYLOAD, f"{key} must be a string")
    return claimed


class CanonicalJson:
    name = "canonical"

    def decode(self, kind: Kind, payload: bytes) -> DecodedMessage:
        if kind is Kind.STATUS:
            word = payload.strip().decode("utf-8", "replace").lower()
            if word in _STATUS_WORDS:
                return DecodedMessage(status=word)
        body = load_object(payload)
        claimed = claimed_device(body, "device_id")
        ts = parse_ts(body.get("ts"))
        seq = parse_seq(body.get("seq"))
        if kind is Kind.TELEMETRY:
            if "values" not in body:
                raise CodecError(RejectReason.BAD_PAYLOAD, "telemetry without values")
            return DecodedMessage(
                ts=ts, seq=seq, values=parse_values(body["values"]), device_id=claimed
            )
        if kind is Kind.EVENT:
            event = body.get("event")
            if not isinstance(event, str) or not event:
                raise CodecError(RejectReason.BAD_PAYLOAD, "event message without event name")
            detail = body.get("detail") or {}
            if not isinstance(detail, dict):
                raise CodecError(RejectReason.BAD_PAYLOAD, "detail must be an object")
            return DecodedMessage(ts=ts, seq=seq, event=event, detail=detail, device_id=claimed)
        if kind is Kind.HEARTBEAT:
            values = parse_values(body["values"]) if "values" in body else {}
            return DecodedMessage(ts=ts, seq=seq, values=values, device_id=claimed)
        status = body.get("status")
        if not isinstance(status, str) or status not in _STATUS_WORDS:
            raise CodecError(
                RejectReason.BAD_PAYLOAD, f"status must be online/offline, got {status!r}"
            )
        return DecodedMessage(ts=ts, status=status, device_id=claimed)


register(CanonicalJson())
