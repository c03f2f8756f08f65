"""The per-device rate limit: a flood is cut, others and backlogs are not."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.messages import RawMessage, Reading, Rejection, RejectReason, StatusChange
from ingest.rate_limit import SAMPLE_EVERY_S, DeviceRateLimiter
from ingest.topics import UplinkTopics
from ingest.validate import Limits, Validator

T0 = 1_795_000_000.0


def reading(device: str, ts: float, arrival: float | None = None) -> tuple[Reading, RawMessage]:
    arrival = ts if arrival is None else arrival
    raw = RawMessage(f"gridwatch/v1/up/{device}/telemetry", b"{}", 1, 1, arrival)
    return Reading(device, ts, None, {"pressure_mpa": 0.3}, arrival), raw


def run(limiter: DeviceRateLimiter, messages: list[tuple[Reading, RawMessage]]) -> dict[str, int]:
    kept: dict[str, int] = {}
    for message, raw in messages:
        if limiter.admit(message, raw) is None:
            kept[message.device_id] = kept.get(message.device_id, 0) + 1
    return kept


def test_a_device_at_100_times_its_rate_is_cut_and_the_others_keep_everything() -> None:
    limiter = DeviceRateLimiter(rate_per_s=1.0, burst=10)
    messages = []
    for i in range(6000):  # 60 s: the flooder at 100/s, five others at 1/s, interleaved
        t = T0 + i / 100
        messages.append(reading("FLOOD", t))
        if i % 100 == 0:
            messages += [reading(f"OK-{k}", t) for k in range(5)]
    kept = run(limiter, messages)
    assert all(kept[f"OK-{k}"] == 60 for k in range(5))
    assert 10 + 59 <= kept["FLOOD"] <= 10 + 60  # its burst, then its rate
    assert limiter.dropped == 6000 - kept["FLOOD"]


def test_a_backlog_sent_at_once_with_its_own_timestamps_is_not_cut() -> None:
    """An hour of 5-second readings arriving within a second (after an outage)."""
    limiter = DeviceRateLimiter(rate_per_s=1.0, burst=10)
    arrival = T0 + 3600
    backlog = [reading("WP-1", T0 + 5 * i, arrival + i / 1000) for i in range(720)]
    assert run(limiter, backlog) == {"WP-1": 720}


def test_without_device_time_arrival_is_the_clock() -> None:
    limiter = DeviceRateLimiter(rate_per_s=1.0, burst=10)
    raw = RawMessage("gridwatch/v1/up/SD-1/status", b"online", 1, 1, T0)
    status = StatusChange("SD-1", "online", T0 - 3600, T0)
    verdicts = [limiter.admit(status, raw) for _ in range(12)]
    assert verdicts[:10] == [None] * 10 and all(v is not None for v in verdicts[10:])


def test_one_sample_a_minute_is_kept_the_rest_only_counted() -> None:
    limiter = DeviceRateLimiter(rate_per_s=1.0, burst=1)
    arrivals = [T0 + i for i in range(int(SAMPLE_EVERY_S) * 2 + 2)]  # one a second, 0…121 s
    verdicts = [limiter.admit(*reading("F", T0, at)) for at in arrivals]
    samples = [v for v in verdicts if isinstance(v, Rejection)]
    assert [s.reason for s in samples] == [RejectReason.RATE_LIMITED] * 3  # at 1 s, 61 s, 121 s
    assert samples[0].payload == b"{}" and samples[0].device_id == "F"
    assert limiter.pending["F"] == len(verdicts) - 1 - 3
    assert limiter.dropped == len(verdicts) - 1


@settings(database=None, max_examples=200)
@given(
    gaps=st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), max_size=300),
    rate=st.floats(min_value=0.01, max_value=50),
    burst=st.integers(min_value=1, max_value=50),
)
def test_never_more_than_burst_plus_rate_times_the_time_covered(
    gaps: list[float], rate: float, burst: int
) -> None:
    limiter = DeviceRateLimiter(rate, burst)
    t, messages = T0, []
    for gap in gaps:
        t += gap
        messages.append(reading("D", t))
    kept = run(limiter, messages).get("D", 0)
    assert kept <= burst + rate * (t - T0) + 1e-6
    assert kept + limiter.dropped == len(gaps)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        DeviceRateLimiter(0, 10)


def test_an_overlong_topic_is_a_bad_topic_kept_cut() -> None:
    validator = Validator(UplinkTopics("gridwatch/v1"), {}, Limits(65536, 600, 86400, 64))
    topic = "gridwatch/v1/up/" + "网" * 40 + "/telemetry"  # 40 characters, 120 bytes
    result = validator.check(RawMessage(topic, b"{}", 1, 1, T0))
    assert isinstance(result, Rejection) and result.reason is RejectReason.BAD_TOPIC
    assert len(result.topic.encode()) <= 64 and topic.startswith(result.topic)
    assert "bytes > 64" in result.detail
