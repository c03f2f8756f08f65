"""Typed values that cross room boundaries (devices → ingest → storage → detectors).

They are frozen so that a batch handed from one stage to the next cannot be changed under
the receiver; times are epoch seconds (float) on the hot path because converting to
``datetime`` for every message costs more than it buys until the value reaches storage.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import msgspec


class Kind(StrEnum):
    """The uplink topic suffix: what a device message is."""

    TELEMETRY = "telemetry"
    EVENT = "event"
    HEARTBEAT = "heartbeat"
    STATUS = "status"


DEVICE_EVENTS = frozenset(
    {"alarm", "pre_alarm", "fault", "tamper", "low_battery", "self_test", "silenced", "restore"}
)


class RejectReason(StrEnum):
    """Why a message was not accepted; counted per device and kept with the raw bytes."""

    BAD_TOPIC = "bad_topic"
    NOT_JSON = "not_json"
    BAD_PAYLOAD = "bad_payload"
    UNKNOWN_DEVICE = "unknown_device"
    DEVICE_MISMATCH = "device_mismatch"
    OVERSIZE = "oversize"
    FUTURE_TIMESTAMP = "future_timestamp"
    TOO_OLD = "too_old"
    OUT_OF_RANGE = "out_of_range"
    UNKNOWN_METRIC = "unknown_metric"
    UNKNOWN_EVENT = "unknown_event"
    CODEC_ERROR = "codec_error"
    RATE_LIMITED = "rate_limited"


class RawMessage(msgspec.Struct, frozen=True):
    """One MQTT message as it came off the wire, before anything was trusted."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    received_at: float


class DecodedMessage(msgspec.Struct, frozen=True):
    """What a codec understood of a payload, not yet checked against the device's profile.

    ``ts`` is None when the device sent none; ``device_id`` is the id the payload claims
    (None when it claims none), compared with the topic's.
    """

    ts: float | None = None
    seq: int | None = None
    values: Mapping[str, float] = msgspec.field(default_factory=dict)
    event: str | None = None
    detail: Mapping[str, Any] = msgspec.field(default_factory=dict)
    status: str | None = None
    device_id: str | None = None


class Reading(msgspec.Struct, frozen=True):
    """Accepted telemetry (or a heartbeat carrying values) of one device at one time."""

    device_id: str
    ts: float
    seq: int | None
    values: Mapping[str, float]
    received_at: float
    ts_from_arrival: bool = False


class DeviceEvent(msgspec.Struct, frozen=True):
    """An alarm or state the device decided on itself (alarm, fault, tamper, …)."""

    device_id: str
    ts: float
    seq: int | None
    event: str
    detail: Mapping[str, Any]
    received_at: float
    ts_from_arrival: bool = False


class Heartbeat(msgspec.Struct, frozen=True):
    """The device is alive; may carry values such as battery or signal strength."""

    device_id: str
    ts: float
    seq: int | None
    values: Mapping[str, float]
    received_at: float
    ts_from_arrival: bool = False


class StatusChange(msgspec.Struct, frozen=True):
    """``online``/``offline`` from the device's retained status topic (its LWT)."""

    device_id: str
    status: str
    ts: float
    received_at: float


class Rejection(msgspec.Struct, frozen=True):
    """A message that was not accepted, with the raw bytes so it can be replayed later."""

    topic: str
    device_id: str | None
    payload: bytes
    reason: RejectReason
    detail: str
    received_at: float


Accepted = Reading | DeviceEvent | Heartbeat | StatusChange
