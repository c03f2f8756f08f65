"""Patrol periods, deadlines and which period a check-in does: intervals, grace and the
edges of the clock (midnight China time, exact boundaries, late and out-of-order scans)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors.patrol_schedule import ANCHOR, CHINA_TZ, Schedule, evaluate

DAY = 86400.0
HOUR = 3600.0


def cst(*parts: int) -> float:
    """Epoch seconds of a China-time wall clock."""
    return datetime(*parts, tzinfo=CHINA_TZ).timestamp()  # type: ignore[misc]


DAILY = Schedule(DAY, 2 * HOUR)
WEEKLY = Schedule(7 * DAY, 12 * HOUR)


def test_daily_periods_are_calendar_days_in_china_time_not_utc() -> None:
    # 23:30 and 00:30 China time are 15:30 and 16:30 UTC of one UTC day, but two days here
    evening, after_midnight = cst(2026, 11, 21, 23, 30), cst(2026, 11, 22, 0, 30)
    assert DAILY.period(after_midnight) == DAILY.period(evening) + 1
    k = DAILY.period(evening)
    assert DAILY.start(k) == cst(2026, 11, 21) and DAILY.end(k) == cst(2026, 11, 22)
    assert DAILY.deadline(k) == cst(2026, 11, 22, 2)


def test_weekly_periods_run_monday_to_sunday() -> None:
    wednesday = cst(2026, 11, 25, 10)  # 2026-11-25 is a Wednesday
    k = WEEKLY.period(wednesday)
    assert datetime.fromtimestamp(WEEKLY.start(k), CHINA_TZ) == datetime(
        2026, 11, 23, tzinfo=CHINA_TZ
    )  # the Monday before
    assert WEEKLY.deadline(k) == cst(2026, 11, 30, 12)  # next Monday noon (12 h grace)


def test_boundaries_are_exact() -> None:
    midnight = cst(2026, 11, 22)
    k = DAILY.period(midnight)
    assert DAILY.start(k) == midnight  # the first instant of a day belongs to it
    assert DAILY.period(midnight - 1e-6) == k - 1
    # a period is decided exactly at its deadline, not a moment before
    deadline = DAILY.deadline(k - 1)
    assert DAILY.last_decided(deadline) == k - 1
    assert DAILY.last_decided(deadline - 1e-3) == k - 2


def test_duty_starts_with_the_next_full_period() -> None:
    registered = cst(2026, 11, 21, 23, 0)
    first = DAILY.first_due(registered)
    assert DAILY.start(first) == cst(2026, 11, 22)  # the evening of registration is free
    assert DAILY.first_due(cst(2026, 11, 22)) == first  # at a period start: that period


def test_a_scan_in_grace_does_yesterday_only_if_yesterday_is_undone() -> None:
    today = DAILY.period(cst(2026, 11, 22, 12))
    one_am = cst(2026, 11, 22, 1)
    assert DAILY.assign(one_am, next_open=today - 1) == today - 1  # late, within grace
    assert DAILY.assign(one_am, next_open=today) == today  # yesterday done: it is today's
    three_am = cst(2026, 11, 22, 3)  # grace over: yesterday was missed for good
    assert DAILY.assign(three_am, next_open=today - 1) == today
    # a scan for a period already done does nothing new
    assert DAILY.assign(cst(2026, 11, 22, 9), next_open=today + 1) == today


def test_one_scan_never_does_two_days() -> None:
    first = DAILY.period(cst(2026, 11, 21, 12))
    # scanning at 01:00 every second day: each scan does one day, the days between are missed
    scans = [(cst(2026, 11, d, 1), "w") for d in (22, 24, 26)]
    out = evaluate(DAILY, scans, first, first + 4)
    assert [o.done for o in out] == [True, False, True, False, True]


def test_evaluate_counts_missed_and_done_periods_with_their_workers() -> None:
    first = WEEKLY.period(cst(2026, 11, 2, 9))
    scans = [
        (cst(2026, 11, 4, 9), "m1"),  # week 0
        (cst(2026, 11, 5, 9), "m2"),  # week 0 again: an extra patrol, no period
        (cst(2026, 11, 23, 6), "m1"),  # week 1 missed; Monday 06:00 still does week 2 (grace)
        (cst(2026, 11, 25, 9), "m2"),  # week 3
    ]
    out = evaluate(WEEKLY, reversed(scans), first, first + 3)  # any order in
    assert [(o.done, o.worker) for o in out] == [
        (True, "m1"),
        (False, None),
        (True, "m1"),
        (True, "m2"),
    ]
    assert out[2].done_at == cst(2026, 11, 23, 6) and out[2].done_at > out[2].end


def test_scans_before_the_first_period_do_not_count() -> None:
    first = DAILY.period(cst(2026, 11, 22, 12))
    out = evaluate(DAILY, [(cst(2026, 11, 21, 9), "w")], first, first)
    assert not out[0].done


def test_grace_longer_than_the_interval_still_gives_one_period_per_scan() -> None:
    s = Schedule(HOUR, 3 * HOUR)
    k = s.period(ANCHOR + 10 * HOUR)
    # three periods overdue-but-in-grace: three scans close them in order, not all at once
    scans = [(ANCHOR + 10 * HOUR + m * 60, "w") for m in (1, 2, 3)]
    out = evaluate(s, scans, k - 2, k)
    assert [o.done for o in out] == [True, True, True]
    assert [o.done_at for o in out] == [t for t, _ in scans]


@pytest.mark.parametrize("interval", [0.0, -1.0, float("nan")])
def test_a_schedule_needs_a_positive_interval(interval: float) -> None:
    with pytest.raises(ValueError):
        Schedule(interval)


@given(
    t=st.floats(min_value=ANCHOR - 1e8, max_value=ANCHOR + 1e9, allow_nan=False),
    interval=st.sampled_from([1.0, 2.0, 7.5, HOUR, 12 * HOUR, DAY, 7 * DAY]),
)
def test_every_time_lies_in_exactly_its_period(t: float, interval: float) -> None:
    s = Schedule(interval, interval / 10)
    k = s.period(t)
    assert s.start(k) <= t < s.end(k)
    assert s.period(s.start(k)) == k and s.period(s.end(k)) == k + 1
    assert s.deadline(s.last_decided(t)) <= t < s.deadline(s.last_decided(t) + 1)


@given(
    offsets=st.lists(st.floats(min_value=0, max_value=30 * DAY), max_size=40),
    grace_h=st.sampled_from([0, 1, 2, 23]),
)
def test_each_period_is_done_by_a_scan_inside_its_window(
    offsets: list[float], grace_h: int
) -> None:
    s = Schedule(DAY, grace_h * HOUR)
    base = cst(2026, 11, 1)
    first = s.period(base)
    out = evaluate(s, [(base + o, None) for o in offsets], first, first + 29)
    done = [o for o in out if o.done]
    assert len(done) <= len(offsets)  # one scan, at most one period
    for o in done:
        assert o.done_at is not None and o.start <= o.done_at < o.deadline
    used = Counter(o.done_at for o in done)
    for o in out:
        if not o.done:  # every scan inside a missed period's window did another period
            inside = Counter(base + x for x in offsets if o.start <= base + x < o.deadline)
            assert inside <= used


def test_china_time_has_no_daylight_saving_so_every_day_is_24_hours() -> None:
    spring = DAILY.period(cst(2026, 3, 29, 12))
    assert DAILY.end(spring) - DAILY.start(spring) == DAY
    assert DAILY.start(spring) == cst(2026, 3, 29)
    assert timedelta(seconds=DAILY.grace_s) == timedelta(hours=2)
