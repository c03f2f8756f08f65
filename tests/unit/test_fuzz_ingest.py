"""The whole device edge under hostile input: any topic, any bytes, any JSON shape, any
clock, through validation, de-duplication and the rate limit. Every message becomes an
accepted value or a rejection with a reason; nothing raises, nothing is lost in between."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.codecs import get_codec, registered_codecs
from devices.messages import RawMessage, Rejection, RejectReason
from devices.profiles import get_profile
from ingest.dedup import SeqDeduper
from ingest.mqtt_source import Delivery
from ingest.pipeline import classify
from ingest.rate_limit import DeviceRateLimiter
from ingest.topics import UplinkTopics
from ingest.validate import KnownDevice, Limits, Validator
from tests.unit.registry_data import jsonish

NOW = 1_795_420_800.0
TYPES = ["smoke_detector", "electrical_fire_monitor", "water_pressure_sensor"]
DEVICES = {
    f"{codec}-{t}": KnownDevice(f"{codec}-{t}", get_profile(t), get_codec(codec))
    for codec in registered_codecs()
    for t in TYPES
}
VALIDATOR = Validator(UplinkTopics("gridwatch/v1"), DEVICES, Limits(4096, 600.0, 86400.0, 128))

topics = st.one_of(
    st.builds(
        lambda d, k: f"gridwatch/v1/up/{d}/{k}",
        st.sampled_from([*DEVICES, "GHOST", ""]) | st.text(max_size=80),
        st.sampled_from(["telemetry", "event", "heartbeat", "status"]) | st.text(max_size=10),
    ),
    st.text(max_size=300),
)
canonical_like = st.fixed_dictionaries(
    {},
    optional={
        "ts": st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=30) | jsonish(),
        "seq": st.integers(-(2**63), 2**63 - 1) | st.floats() | jsonish(),
        "values": st.dictionaries(st.text(max_size=25), st.floats() | jsonish(), max_size=4)
        | jsonish(),
        "event": st.sampled_from(["alarm", "fault", "restore"]) | st.text(max_size=10),
        "detail": jsonish(),
        "device_id": st.text(max_size=20),
    },
)
payloads = st.one_of(
    st.binary(max_size=300),
    canonical_like.map(orjson.dumps),
    jsonish().map(orjson.dumps),
    st.sampled_from([b"online", b"offline", b"", b"\x00" * 10, b"{" * 1000]),
)
messages = st.builds(
    lambda topic, payload, qos, skew: RawMessage(topic, payload, qos, 1, NOW + skew),
    topics,
    payloads,
    st.sampled_from([0, 1]),
    st.floats(min_value=-1e6, max_value=1e6),
)


@settings(database=None, max_examples=500)
@given(raw=messages)
def test_any_message_is_accepted_or_rejected_with_a_reason(raw: RawMessage) -> None:
    result = VALIDATOR.check(raw)
    if isinstance(result, Rejection):
        assert isinstance(result.reason, RejectReason) and result.detail
        assert result.payload == raw.payload  # kept for a replay
        assert len(result.topic.encode()) <= max(128, len(raw.topic.encode()))
    else:
        assert result.device_id in DEVICES


@settings(database=None, max_examples=200)
@given(batch=st.lists(messages, max_size=40))
def test_a_batch_accounts_for_every_message(batch: list[RawMessage]) -> None:
    limiter = DeviceRateLimiter(1.0, 3)
    classified = classify(
        [Delivery(m, 1) for m in batch], VALIDATOR, SeqDeduper(16), limiter
    )
    dropped = limiter.dropped - sum(
        r.reason is RejectReason.RATE_LIMITED for r in classified.rejections
    )
    assert len(classified) + classified.duplicates + dropped == len(batch)
