"""The patrol detector through the engine: a missed period raises patrol_overdue on a tick
(at its deadline, once), the next check-in clears it, a failed checklist raises fire_hazard,
and a restart does not declare patrols overdue before queued check-ins arrive."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
import pytest

from detectors import DeviceDetectors, DeviceState, Hit
from detectors.patrol import check_interval, hazard_of, parse_interval
from detectors.patrol_schedule import CHINA_TZ
from devices.device_import import DeviceFormat, ParsedDevice, iter_device_lines
from devices.messages import DeviceEvent
from devices.profiles import get_profile

TAG = "PT-1"
HOUR = 3600.0


def cst(*parts: int) -> float:
    return datetime(*parts, tzinfo=CHINA_TZ).timestamp()  # type: ignore[misc]


def engine(interval: str = "P1D", **patrol: Any) -> DeviceDetectors:
    overrides: dict[str, Any] = {"patrol_interval": interval}
    if patrol:
        overrides["detectors"] = {"patrol": patrol}
    return DeviceDetectors.for_profile(get_profile("patrol_tag").with_overrides(overrides))


class Tag:
    def __init__(self, eng: DeviceDetectors, registered: float) -> None:
        self.eng = eng
        self.state: DeviceState = eng.initial_state(TAG, registered)
        self.tick(registered)  # the service's first tick starts the duty

    def _take(self, out: Any) -> list[Hit]:
        self.state = out.state
        return list(out.hits)

    def tick(self, now: float) -> list[Hit]:
        return self._take(self.eng.on_tick(self.state, now))

    def checkin(self, at: float, received: float | None = None, **detail: Any) -> list[Hit]:
        rec = at if received is None else received
        event = DeviceEvent(TAG, at, None, "checkin", {"worker_id": "m1", **detail}, rec)
        return self._take(self.eng.on_event(self.state, event, rec))

    @property
    def wake(self) -> float | None:
        return self.eng.next_wake(self.state)


def kinds(hits: list[Hit]) -> list[tuple[str, str]]:
    return [(h.type, h.phase) for h in hits]


def test_a_missed_day_raises_at_its_deadline_once_and_the_next_checkin_clears_it() -> None:
    tag = Tag(engine(), registered=cst(2026, 11, 21, 15))
    # registered mid-afternoon: due from the next day, by 02:24 the day after (grace 10 %)
    due = cst(2026, 11, 23, 2, 24)
    assert tag.wake == due
    assert tag.tick(due - 1) == []
    hits = tag.tick(due)
    assert kinds(hits) == [("patrol_overdue", "raised")]
    assert hits[0].ts == due and hits[0].category == "patrol"
    assert hits[0].evidence["period_start"].startswith("2026-11-22T00:00:00+08:00")
    assert tag.tick(due + 3 * 86400) == []  # still overdue: raised once
    assert tag.wake is None
    cleared = tag.checkin(cst(2026, 11, 26, 9))
    assert kinds(cleared) == [("patrol_overdue", "cleared")]
    assert cleared[0].condition_key == hits[0].condition_key
    # the scan did 26 Nov: 27 Nov is next, due by 28 Nov 02:24
    assert tag.wake == cst(2026, 11, 28, 2, 24)


def test_two_ticks_find_the_same_miss_as_the_same_hit() -> None:
    one, two = (Tag(engine(), registered=cst(2026, 11, 21, 15)) for _ in range(2))
    a = one.tick(cst(2026, 11, 23, 2, 24, 5))
    b = two.tick(cst(2026, 11, 23, 9))
    assert a == b  # time of the hit is the deadline, not the tick


def test_a_checkin_within_grace_does_yesterday_and_nothing_is_raised() -> None:
    tag = Tag(engine(), registered=cst(2026, 11, 21, 15))
    assert tag.checkin(cst(2026, 11, 23, 1, 30)) == []  # for 22 Nov, in grace
    assert tag.tick(cst(2026, 11, 23, 2, 30)) == []
    # 23 Nov itself is still to do: due by 24 Nov 02:24
    assert tag.wake == cst(2026, 11, 24, 2, 24)
    assert kinds(tag.tick(cst(2026, 11, 24, 2, 24))) == [("patrol_overdue", "raised")]


def test_a_stale_checkin_does_not_clear_a_newer_miss() -> None:
    tag = Tag(engine(), registered=cst(2026, 11, 21, 15))
    tag.checkin(cst(2026, 11, 22, 10))
    assert kinds(tag.tick(cst(2026, 11, 24, 2, 24))) == [("patrol_overdue", "raised")]
    # a phone that was offline uploads 22 Nov's scan again, late: the miss of 23 Nov stands
    assert tag.checkin(cst(2026, 11, 22, 11), received=cst(2026, 11, 24, 8)) == []
    assert kinds(tag.checkin(cst(2026, 11, 24, 8))) == [("patrol_overdue", "cleared")]


def test_weekly_interval_and_explicit_grace() -> None:
    tag = Tag(engine("P7D", grace="PT12H"), registered=cst(2026, 11, 18, 9))  # a Wednesday
    # due from Monday 23 Nov, by Monday 30 Nov 12:00
    assert tag.wake == cst(2026, 11, 30, 12)
    assert tag.checkin(cst(2026, 11, 27, 16)) == []
    assert tag.wake == cst(2026, 12, 7, 12)


def test_a_failed_checklist_raises_fire_hazard_a_passing_one_clears_it() -> None:
    tag = Tag(engine(), registered=cst(2026, 11, 21, 15))
    hits = tag.checkin(
        cst(2026, 11, 22, 10),
        checklist={"exits_clear": True, "extinguisher_ok": False},
        note="灭火器过期",
    )
    assert kinds(hits) == [("fire_hazard", "raised")]
    hazard = hits[0]
    assert hazard.category == "fire"
    assert hazard.evidence["failed"] == ["extinguisher_ok"]
    assert hazard.evidence["checklist"] == {"exits_clear": True, "extinguisher_ok": False}
    assert hazard.evidence["note"] == "灭火器过期" and hazard.evidence["worker_id"] == "m1"
    assert tag.checkin(cst(2026, 11, 22, 11)) == []  # a bare scan says nothing of the hazard
    assert tag.checkin(cst(2026, 11, 22, 12), checklist={"extinguisher_ok": False}) == []
    cleared = tag.checkin(cst(2026, 11, 23, 10), checklist={"extinguisher_ok": True})
    assert kinds(cleared) == [("fire_hazard", "cleared")]


def test_after_a_restart_nothing_is_overdue_until_queued_checkins_had_their_chance() -> None:
    eng = engine(settle_s=60)
    tag = Tag(eng, registered=cst(2026, 11, 21, 15))
    saved = eng.encode_state(tag.state)
    restart = cst(2026, 11, 23, 8)  # the service was down over the deadline (02:24)
    state, dropped = eng.decode_state(saved)
    assert dropped == []
    tag.state = eng.resume(state, restart)
    assert tag.tick(restart) == []
    assert tag.wake == restart + 60
    assert tag.checkin(cst(2026, 11, 22, 20), received=restart + 5) == []  # it was done
    assert tag.tick(restart + 61) == []


def test_the_state_round_trips() -> None:
    eng = engine()
    tag = Tag(eng, registered=cst(2026, 11, 21, 15))
    tag.checkin(cst(2026, 11, 22, 10), checklist={"x": False})
    again, _ = eng.decode_state(eng.encode_state(tag.state))
    assert again == tag.state
    assert msgspec.json.decode(eng.encode_state(tag.state))["detectors"]["patrol"]["hazard"]


def test_hazard_reading() -> None:
    assert hazard_of({}) is None
    assert hazard_of({"checklist": {}}) is None
    assert hazard_of({"checklist": {"a": True}}) is False
    assert hazard_of({"checklist": {"a": True, "b": False}}) is True
    assert hazard_of({"hazard": True}) is True
    assert hazard_of({"hazard": False}) is False


@pytest.mark.parametrize(
    ("value", "ok"),
    [("P1D", True), ("P1W", True), ("PT12H", True), (3600, True), ("PT0S", False),
     ("daily", False), (True, False), (-5, False)],
)  # fmt: skip
def test_patrol_interval_values(value: object, ok: bool) -> None:
    assert (parse_interval(value) is not None) is ok
    assert (check_interval(value) is None) is ok  # type: ignore[arg-type]


def test_a_patrol_tag_row_needs_its_interval() -> None:
    lines = [
        "device_id,type,lat,lon,site,profile",
        'PT-OK,patrol_tag,22.9,113.3,market-1,"{""patrol_interval"": ""P1D""}"',
        "PT-NONE,patrol_tag,22.9,113.3,market-1,",
        'PT-BAD,patrol_tag,22.9,113.3,market-1,"{""patrol_interval"": ""often""}"',
    ]
    rows = list(iter_device_lines(lines, fmt=DeviceFormat.CSV, source="tags.csv"))
    kept = [r.device.device_id for r in rows if isinstance(r, ParsedDevice)]
    errors = {r.key: r.reason for r in rows if not isinstance(r, ParsedDevice)}
    assert kept == ["PT-OK"]
    assert "needs profile.patrol_interval" in errors["PT-NONE"]
    assert "positive duration" in errors["PT-BAD"]
