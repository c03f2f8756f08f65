import random

from hypothesis import given
from hypothesis import strategies as st

from devices.messages import Kind
from ingest.backoff import Backoff
from ingest.dedup import SeqDeduper
from ingest.topics import UplinkTopics


def test_topic_grammar() -> None:
    t = UplinkTopics("gridwatch/v1")
    assert t.parse("gridwatch/v1/up/SD-1/telemetry") == ("SD-1", Kind.TELEMETRY)
    assert t.parse("gridwatch/v1/up/SD-1/status") == ("SD-1", Kind.STATUS)
    assert t.parse("gridwatch/v1/up/SD-1/bogus") is None
    assert t.parse("gridwatch/v1/up//telemetry") is None
    assert t.parse("gridwatch/v1/up/SD-1") is None
    assert t.parse("other/v1/up/SD-1/telemetry") is None
    assert t.subscription() == "gridwatch/v1/up/+/+"
    assert t.subscription("gw") == "$share/gw/gridwatch/v1/up/+/+"
    assert t.parse(t.build("EF-9", Kind.EVENT)) == ("EF-9", Kind.EVENT)


def test_dedup_window() -> None:
    d = SeqDeduper(window=3)
    assert not d.is_repeat("a", 1)
    assert d.is_repeat("a", 1)
    assert not d.is_repeat("b", 1)
    assert not d.is_repeat("a", None) and not d.is_repeat("a", None)
    for seq in (2, 3, 4):
        assert not d.is_repeat("a", seq)
    assert not d.is_repeat("a", 1)  # fell out of the window


@given(st.lists(st.integers(min_value=0, max_value=50), max_size=200))
def test_dedup_never_repeats_within_window(seqs: list[int]) -> None:
    d = SeqDeduper(window=1000)
    kept = [s for s in seqs if not d.is_repeat("dev", s)]
    assert kept == list(dict.fromkeys(seqs))


def test_backoff_grows_with_jitter_and_caps() -> None:
    b = Backoff(0.5, 8.0, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(10)]
    assert all(0.5 <= x <= 8.0 for x in delays)
    assert max(delays[5:]) > 2.0
    b.reset()
    assert b.next_delay() == 0.5
