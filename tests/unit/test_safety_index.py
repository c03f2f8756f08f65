"""The safety index (平安指数) score: weights, normalisation, clamping and contributions;
and the report command's pure helpers (period, sparkline)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from alerts.figures import CHINA_TZ
from alerts.safety_index import (
    DEFAULT_WEIGHTS,
    Indicators,
    SafetyIndexWeights,
    score,
)
from gridwatch.cli import common
from gridwatch.cli.report_cmd import parse_moment, period, series_days, sparkline

NAMES = (
    "open_red",
    "open_orange",
    "open_yellow",
    "open_blue",
    "device_online_rate",
    "on_time_close_rate",
    "camera_health",
)


def points(
    indicators: Indicators, weights: SafetyIndexWeights = DEFAULT_WEIGHTS
) -> dict[str, float]:
    return {c.indicator: c.points for c in score(indicators, weights).contributions}


def test_nothing_wrong_and_no_data_is_100_with_every_indicator_named() -> None:
    result = score(Indicators())
    assert result.score == 100.0
    assert tuple(c.indicator for c in result.contributions) == NAMES
    assert all(c.points == 0.0 for c in result.contributions)
    rates = {
        c.indicator: c.value for c in result.contributions if not c.indicator.startswith("open")
    }
    assert rates == dict.fromkeys(("device_online_rate", "on_time_close_rate", "camera_health"))


@pytest.mark.parametrize(
    ("field", "off"),
    [("open_red", 15.0), ("open_orange", 6.0), ("open_yellow", 2.0), ("open_blue", 0.5)],
)
def test_default_points_per_open_event_by_colour(field: str, off: float) -> None:
    one = Indicators(**{field: 1}, devices=20, devices_online=20)
    assert points(one)[field] == -off
    assert score(one).score == 100.0 - off
    three = Indicators(**{field: 3})
    assert points(three)[field] == -3 * off


def test_open_events_count_per_100_devices_on_big_nodes_only() -> None:
    # A basic grid with 40 devices: events count as they are.
    assert points(Indicators(open_red=1, devices=40, devices_online=40))["open_red"] == -15.0
    # A town with 2,000 devices: 20 open reds weigh as one red per 100 devices.
    town = Indicators(open_red=20, devices=2000, devices_online=2000)
    assert points(town)["open_red"] == pytest.approx(-15.0)
    assert score(town).score == pytest.approx(85.0)
    # The unit is configurable.
    per_50 = SafetyIndexWeights(per_devices=50)
    assert points(town, per_50)["open_red"] == pytest.approx(-7.5)


def test_rates_take_off_their_weight_times_the_shortfall() -> None:
    values = Indicators(
        devices=4, devices_online=3, cameras=2, cameras_healthy=0, closed_on_time=1, on_time_base=2
    )
    assert points(values) == pytest.approx(
        {
            "open_red": 0.0,
            "open_orange": 0.0,
            "open_yellow": 0.0,
            "open_blue": 0.0,
            "device_online_rate": -5.0,  # 25 % offline × 20
            "on_time_close_rate": -10.0,  # 50 % late × 20
            "camera_health": -10.0,  # all faulty × 10
        }
    )
    result = score(values)
    assert result.score == pytest.approx(75.0)
    by_name = {c.indicator: c.value for c in result.contributions}
    assert by_name["device_online_rate"] == 0.75
    assert by_name["on_time_close_rate"] == 0.5
    assert by_name["camera_health"] == 0.0


def test_perfect_rates_take_nothing_off_and_print_as_plain_zero() -> None:
    values = Indicators(
        devices=5, devices_online=5, cameras=1, cameras_healthy=1, closed_on_time=3, on_time_base=3
    )
    result = score(values)
    assert result.score == 100.0
    assert all(str(c.points) == "0.0" for c in result.contributions)  # not "-0.0"


def test_custom_weights_change_only_what_they_name() -> None:
    values = Indicators(open_yellow=2, devices=10, devices_online=5)
    weights = SafetyIndexWeights(open_yellow=5, device_online=0)
    assert points(values, weights)["open_yellow"] == -10.0
    assert points(values, weights)["device_online_rate"] == 0.0
    assert score(values, weights).score == 90.0


def test_score_is_clamped_and_the_contributions_still_explain_it() -> None:
    values = Indicators(open_red=5, open_orange=4, devices=10, devices_online=0)
    result = score(values)
    assert result.score == 0.0
    assert result.unclamped == pytest.approx(100 - 75 - 24 - 20)
    assert result.unclamped == pytest.approx(100 + sum(c.points for c in result.contributions))
    worst = min(result.contributions, key=lambda c: c.points)
    assert (worst.indicator, worst.points) == ("open_red", -75.0)


counts = st.integers(min_value=0, max_value=10_000)


@st.composite
def indicators(draw: st.DrawFn) -> Indicators:
    devices, cameras, base = draw(counts), draw(counts), draw(counts)
    return Indicators(
        open_red=draw(counts),
        open_orange=draw(counts),
        open_yellow=draw(counts),
        open_blue=draw(counts),
        devices=devices,
        devices_online=draw(st.integers(0, devices)),
        cameras=cameras,
        cameras_healthy=draw(st.integers(0, cameras)),
        on_time_base=base,
        closed_on_time=draw(st.integers(0, base)),
    )


@given(indicators(), st.sampled_from(["open_red", "open_orange", "open_yellow", "open_blue"]))
def test_score_stays_in_range_and_another_open_event_never_raises_it(
    values: Indicators, colour: str
) -> None:
    result = score(values)
    assert 0.0 <= result.score <= 100.0
    assert all(c.points <= 0.0 for c in result.contributions)
    worse = replace(values, **{colour: getattr(values, colour) + 1})
    assert score(worse).score <= result.score


def test_weights_are_strict_and_documented() -> None:
    with pytest.raises(ValidationError, match="open_purple"):
        SafetyIndexWeights.model_validate({"open_purple": 3})
    with pytest.raises(ValidationError, match="open_red"):
        SafetyIndexWeights(open_red=-1)  # a penalty cannot add points
    with pytest.raises(ValidationError, match="per_devices"):
        SafetyIndexWeights(per_devices=0)
    for name, info in SafetyIndexWeights.model_fields.items():
        assert info.description, name
    weights = SafetyIndexWeights.model_validate({"online_within": "PT12H"})
    assert weights.online_within == timedelta(hours=12)
    with pytest.raises(ValidationError):
        weights.open_red = 1  # frozen


def test_indicator_json_carries_the_rates() -> None:
    doc = Indicators(devices=4, devices_online=1).to_json()
    assert doc["devices"] == 4
    assert doc["device_online_rate"] == 0.25
    assert doc["camera_health"] is None


# --- the report command's pure helpers ---------------------------------------------------


def test_sparkline_uses_a_fixed_scale_and_marks_gaps() -> None:
    assert sparkline([0, 50, 100, None, 140, -3]) == "▁▅█·█▁"
    assert sparkline([]) == ""


def test_dates_are_china_days_and_until_counts_its_whole_day() -> None:
    assert parse_moment("2026-11-01") == datetime(2026, 11, 1, tzinfo=CHINA_TZ)
    assert parse_moment("2026-11-30", end_of_day=True) == datetime(2026, 12, 1, tzinfo=CHINA_TZ)
    assert parse_moment("2026-11-01T08:30") == datetime(2026, 11, 1, 8, 30, tzinfo=CHINA_TZ)
    assert parse_moment("2026-11-01T00:30:00+00:00") == datetime(2026, 11, 1, 0, 30, tzinfo=UTC)
    with pytest.raises(common.UserError, match="neither a date"):
        parse_moment("yesterday")


def test_period_defaults_to_the_last_days_until_now() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=CHINA_TZ)
    assert period(None, None, 30, now) == (now - timedelta(days=30), now)
    start, end = period("2026-11-01", "2026-11-30", 7, now)
    assert (start, end) == (
        datetime(2026, 11, 1, tzinfo=CHINA_TZ),
        datetime(2026, 12, 1, tzinfo=CHINA_TZ),
    )
    assert len(series_days(start, end)) == 30
    assert series_days(start, end)[-1] == date(2026, 11, 30)
    with pytest.raises(common.UserError, match="after --since"):
        period("2026-11-05", "2026-11-01", 7, now)
