"""From raw bytes to a typed, trusted message or a rejection with a reason.

The order of checks follows the cost of getting them wrong: a message that cannot be tied
to a known device is never decoded with some other device's codec, and every rejection
keeps the raw bytes so that it can be replayed after the registry is fixed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from devices.codecs import Codec, CodecError
from devices.messages import (
    Accepted,
    DeviceEvent,
    Heartbeat,
    Kind,
    RawMessage,
    Reading,
    Rejection,
    RejectReason,
    StatusChange,
)
from devices.profiles import DeviceProfile
from ingest.topics import UplinkTopics


@dataclass(frozen=True, slots=True)
class KnownDevice:
    """What ingest needs to know of a registered device: its resolved profile and codec."""

    device_id: str
    profile: DeviceProfile
    codec: Codec


@dataclass(frozen=True, slots=True)
class Limits:
    max_payload_bytes: int
    max_future_skew_s: float
    oldest_accepted_s: float  # seconds before now; older data has no partition to go to
    max_topic_bytes: int = 256  # longer topics are kept cut to this in the dead letters


class Validator:
    def __init__(
        self, topics: UplinkTopics, devices: Mapping[str, KnownDevice], limits: Limits
    ) -> None:
        self.topics = topics
        self.devices = devices
        self.limits = limits

    def check(self, raw: RawMessage) -> Accepted | Rejection:
        def reject(reason: RejectReason, detail: str, device_id: str | None = None) -> Rejection:
            return Rejection(raw.topic, device_id, raw.payload, reason, detail, raw.received_at)

        limit = self.limits.max_topic_bytes
        if len(raw.topic) * 4 > limit and len(encoded := raw.topic.encode()) > limit:
            return Rejection(
                encoded[:limit].decode(errors="ignore"), None, raw.payload,
                RejectReason.BAD_TOPIC, f"topic of {len(encoded)} bytes > {limit}",
                raw.received_at,
            )  # fmt: skip
        parsed = self.topics.parse(raw.topic)
        if parsed is None:
            return reject(RejectReason.BAD_TOPIC, f"not an uplink topic: {raw.topic[:200]!r}")
        device_id, kind = parsed
        if len(raw.payload) > self.limits.max_payload_bytes:
            return reject(
                RejectReason.OVERSIZE,
                f"{len(raw.payload)} bytes > {self.limits.max_payload_bytes}",
                device_id,
            )
        device = self.devices.get(device_id)
        if device is None:
            return reject(RejectReason.UNKNOWN_DEVICE, "device is not registered", device_id)
        try:
            decoded = device.codec.decode(kind, raw.payload)
        except CodecError as exc:
            return reject(exc.reason, exc.detail, device_id)
        if decoded.device_id is not None and decoded.device_id != device_id:
            return reject(
                RejectReason.DEVICE_MISMATCH,
                f"payload says {decoded.device_id!r}, topic says {device_id!r}",
                device_id,
            )
        if decoded.ts is None:
            ts, from_arrival = raw.received_at, True
        else:
            ts, from_arrival = decoded.ts, False
            ahead = ts - raw.received_at
            if ahead > self.limits.max_future_skew_s:
                return reject(
                    RejectReason.FUTURE_TIMESTAMP, f"{ahead:.0f} s ahead of arrival", device_id
                )
            if raw.received_at - ts > self.limits.oldest_accepted_s:
                return reject(RejectReason.TOO_OLD, "older than the retention period", device_id)

        profile = device.profile
        if kind is Kind.TELEMETRY or kind is Kind.HEARTBEAT:
            for name, value in decoded.values.items():
                spec = profile.metrics.get(name)
                if spec is None:
                    return reject(
                        RejectReason.UNKNOWN_METRIC,
                        f"{name!r} is not a metric of {profile.type_key}",
                        device_id,
                    )
                if not spec.minimum <= value <= spec.maximum:
                    return reject(
                        RejectReason.OUT_OF_RANGE,
                        f"{name}={value} outside {spec.minimum}..{spec.maximum} {spec.unit}",
                        device_id,
                    )
            cls = Reading if kind is Kind.TELEMETRY else Heartbeat
            return cls(device_id, ts, decoded.seq, decoded.values, raw.received_at, from_arrival)
        if kind is Kind.EVENT:
            event = decoded.event or ""
            if event not in profile.events:
                return reject(
                    RejectReason.UNKNOWN_EVENT,
                    f"{event!r} is not an event of {profile.type_key}",
                    device_id,
                )
            return DeviceEvent(
                device_id, ts, decoded.seq, event, decoded.detail, raw.received_at, from_arrival
            )
        return StatusChange(device_id, decoded.status or "offline", ts, raw.received_at)
