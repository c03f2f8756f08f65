"""Hits become grid events: joining, severity, cross-category links, clears, windows, replays.

A small in-memory ``Store`` plays the persistence layer exactly as ``alerts.correlation``
asks (lookup keys, apply changes in order, versions one up) and checks that contract as it
goes. Time is moved by the tests.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

import msgspec
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import event as label_example
from hypothesis import strategies as st

from alerts.correlation import (
    CorrelationConfig,
    DeviceContext,
    EventChange,
    as_assignees,
    correlate,
    lookup_keys,
)
from alerts.event import GridEvent, Location
from alerts.roles import Actor, Assignee, Role
from alerts.severity import rank
from alerts.workflow import apply
from alerts.workflow_enums import Action, Severity, State
from alerts.workflow_state import HistoryEntry, problems
from detectors.base import CLEARED, RAISED, Hit, Label, Phase
from devices.registry import Device, Grid, GridLevel, Member, MemberRole

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
GRID = "440981001005-03"
ANCESTORS = ("440981", "440981001", "440981001005")
G1 = Assignee("g1", Role.GRID_MEMBER)
V1 = Assignee("v1", Role.VILLAGE_LEAD)

SMOKE = Label("smoke_alarm", "fire", "red")
CABLE = Label("cable_overtemp", "electrical", "orange")
RESIDUAL = Label("residual_current_high", "electrical", "orange")
OFFLINE = Label("device_offline", "device", "yellow")
BATTERY = Label("low_battery", "device", "blue")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ts(minutes: float) -> float:
    return at(minutes).timestamp()


def smoke(device: str, minutes: float, phase: Phase = RAISED) -> Hit:
    return SMOKE.hit(device, "device_events", "alarm", phase, ts(minutes), evidence={"n": 1})


def cable(device: str, minutes: float, phase: Phase = RAISED, rule: str = "alarm") -> Hit:
    return CABLE.hit(device, "cable_temp", rule, phase, ts(minutes), "cable_temp_c_1", 78.5)


def residual(device: str, minutes: float, phase: Phase = RAISED) -> Hit:
    return RESIDUAL.hit(device, "residual_current", "alarm", phase, ts(minutes), "rc", 350.0)


def offline(device: str, minutes: float, phase: Phase = RAISED) -> Hit:
    return OFFLINE.hit(device, "liveness", "offline", phase, ts(minutes))


def ctx(device: str, site: str = "A栋") -> DeviceContext:
    return DeviceContext(
        device_id=device,
        site=site,
        grid_code=GRID,
        ancestors=ANCESTORS,
        location=Location(lat=22.505, lon=113.305, address="幸福路1号"),
        members=(V1, G1),
    )


SITES = {"s1": "A栋", "s2": "A栋", "e1": "A栋", "s3": "B栋", "e2": "", "s4": ""}


class Store:
    """The grid_events table and its history, as the persistence layer keeps them."""

    def __init__(self, config: CorrelationConfig | None = None) -> None:
        self.config = config or CorrelationConfig()
        self.events: dict[str, GridEvent] = {}
        self.history: dict[str, list[HistoryEntry]] = {}
        self.entropy = 0

    def feed(self, hit: Hit, now: datetime) -> list[EventChange]:
        device = ctx(hit.device_id, SITES.get(hit.device_id, "A栋"))
        keys = lookup_keys(hit, device, self.config)
        holders = {e.correlation_key: e for e in self.events.values() if e.correlation_key}
        loaded = {k: holders[k] for k in keys if k in holders}
        self.entropy += 1
        changes = correlate(hit, device, loaded, now, self.config, entropy=self.entropy)
        self.persist(changes)
        return changes

    def persist(self, changes: list[EventChange]) -> None:
        assert len({c.event.id for c in changes}) == len(changes), "one change per event"
        for change in changes:
            event = change.event
            if change.kind == "opened":
                assert event.id not in self.events and event.version == 1
                self.history[event.id] = []
            else:
                assert self.events[event.id].version == event.version - 1
            self.events[event.id] = event
            self.history[event.id].extend(change.history)
            held = [e.correlation_key for e in self.events.values() if e.correlation_key]
            assert len(held) == len(set(held)), "the unique index on correlation_key"

    def act(self, event_id: str, action: Action, actor: Actor, now: datetime, reason: str) -> None:
        event = self.events[event_id]
        ws, entry = apply(event.workflow, action, actor, now, reason=reason)
        self.events[event_id] = msgspec.structs.replace(
            event, workflow=ws, state=ws.state, version=event.version + 1
        )
        self.history[event_id].append(entry)

    def open(self) -> list[GridEvent]:
        return [e for e in self.events.values() if e.is_open]


def only(changes: list[EventChange], kind: str) -> EventChange:
    found = [c for c in changes if c.kind == kind and not c.linked]
    assert len(found) == 1, changes
    return found[0]


# --- one category at one site ---------------------------------------------------------------


def test_one_smoke_detector_opens_an_orange_reported_event() -> None:
    store = Store()
    changes = store.feed(smoke("s1", 0), at(0))
    change = only(changes, "opened")
    event = change.event
    assert change.cloudevent == "opened" and len(changes) == 1
    assert event.severity is Severity.ORANGE and event.state is State.REPORTED
    assert event.correlation_key == "fire:site:A栋"
    assert (event.grid_code, event.ancestors, event.site) == (GRID, ANCESTORS, "A栋")
    assert event.device_ids == ("s1",) and event.alarm_count == 1
    assert event.first_seen == event.last_seen == ts(0)
    assert event.active_conditions == ("s1/device_events/alarm",)
    assert event.evidence[0].detail == {"n": 1}
    assert event.assignee is None and change.suggested_assignee == G1
    assert [h.action for h in change.history] == [Action.REPORT]
    assert event.workflow.due == at(30)  # orange: dispatch within 30 min
    assert problems(event.workflow) == []


def test_two_smoke_detectors_at_one_site_make_one_red_event() -> None:
    store = Store()
    store.feed(smoke("s1", 0), at(0))
    changes = store.feed(smoke("s2", 2), at(2))
    change = only(changes, "updated")
    event = change.event
    assert len(store.events) == 1
    assert event.device_ids == ("s1", "s2") and event.alarm_count == 2
    assert event.severity is Severity.RED and event.workflow.severity is Severity.RED
    assert change.cloudevent == "escalated" and change.severity_before is Severity.ORANGE
    assert change.reasons == ("two_fire_devices_at_site",)
    assert change.history[0].action is Action.COMMENT
    assert event.workflow.due == at(10)  # red: dispatch within 10 min of the report
    assert (event.first_seen, event.last_seen, event.version) == (ts(0), ts(2), 2)


def test_hits_at_two_sites_make_two_events() -> None:
    store = Store()
    store.feed(smoke("s1", 0), at(0))
    store.feed(smoke("s3", 1), at(1))
    assert sorted(e.correlation_key or "" for e in store.events.values()) == [
        "fire:site:A栋",
        "fire:site:B栋",
    ]
    assert all(e.severity is Severity.ORANGE for e in store.events.values())


def test_devices_without_site_correlate_per_device() -> None:
    store = Store()
    store.feed(smoke("s4", 0), at(0))
    store.feed(cable("e2", 1), at(1))
    assert {e.correlation_key for e in store.events.values()} == {
        "fire:device:s4",
        "electrical:device:e2",
    }
    assert all(e.types == (e.type,) for e in store.events.values())  # no site: no links


def test_device_events_are_per_device_and_type() -> None:
    store = Store()
    store.feed(offline("s1", 0), at(0))
    store.feed(BATTERY.hit("s1", "battery", "low", RAISED, ts(1)), at(1))
    store.feed(offline("s2", 1), at(1))
    assert len(store.events) == 3
    assert "device:device_type:device_offline:s1" in {
        e.correlation_key for e in store.events.values()
    }


def test_a_raise_of_an_active_condition_counts_as_an_alarm_only() -> None:
    store = Store()
    store.feed(smoke("s1", 0), at(0))
    changes = store.feed(smoke("s1", 1), at(1))  # e.g. after a flapping filter let it through
    event = only(changes, "updated").event
    assert event.alarm_count == 2 and event.active_conditions == ("s1/device_events/alarm",)
    assert event.device_ids == ("s1",) and event.severity is Severity.ORANGE


def test_pre_alarm_yellow_then_alarm_raises_to_orange() -> None:
    store = Store()
    opened = only(store.feed(cable("e1", 0, rule="pre_alarm"), at(0)), "opened")
    assert opened.event.severity is Severity.YELLOW
    change = only(store.feed(cable("e1", 1), at(1)), "updated")
    assert change.event.severity is Severity.ORANGE and change.cloudevent == "escalated"


# --- cross-category: smoke and cable over-temperature at one site -----------------------------


def test_cable_overtemp_at_a_site_with_a_fire_event_escalates_it() -> None:
    store = Store()
    fire = only(store.feed(smoke("s1", 0), at(0)), "opened").event
    changes = store.feed(cable("e1", 1), at(1))
    own = only(changes, "opened")
    assert own.event.category == "electrical" and own.event.severity is Severity.ORANGE
    link = next(c for c in changes if c.linked)
    assert link.event.id == fire.id and link.event.severity is Severity.RED
    assert link.cloudevent == "escalated" and link.reasons == ("smoke_with_cable_overtemp",)
    assert link.event.types == ("smoke_alarm", "cable_overtemp")
    assert link.event.evidence[-1].linked and link.event.evidence[-1].device_id == "e1"
    # recorded, but not one of the fire event's devices, alarms or conditions
    assert link.event.device_ids == ("s1",) and link.event.alarm_count == 1
    assert link.event.active_conditions == fire.active_conditions
    assert link.event.last_seen == fire.last_seen


def test_smoke_at_a_site_with_an_electrical_event_opens_red() -> None:
    store = Store()
    store.feed(cable("e1", 0), at(0))
    change = only(store.feed(smoke("s1", 1), at(1)), "opened")
    event = change.event
    assert event.severity is Severity.RED and change.reasons == ("smoke_with_cable_overtemp",)
    assert event.types == ("smoke_alarm", "cable_overtemp")
    assert [e.linked for e in event.evidence] == [True, False]
    assert event.workflow.due == at(11)
    assert change.history[0].reason == "smoke_alarm from s1; red: smoke_with_cable_overtemp"


def test_residual_current_does_not_escalate_a_fire_event() -> None:
    store = Store()
    store.feed(smoke("s1", 0), at(0))
    changes = store.feed(residual("e1", 1), at(1))
    link = next(c for c in changes if c.linked)
    assert link.event.severity is Severity.ORANGE and link.cloudevent == "updated"
    assert "residual_current_high" in link.event.types


# --- idempotency --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hits",
    [
        [smoke("s1", 0)],
        [smoke("s1", 0), cable("e1", 1)],
        [offline("s1", 0), offline("s1", 5, CLEARED)],
        [residual("e1", 0), residual("e1", 1, CLEARED)],
    ],
)
def test_the_same_hit_twice_changes_nothing(hits: list[Hit]) -> None:
    store = Store()
    for hit in hits:
        store.feed(hit, at(2))
    before = dict(store.events)
    for hit in hits:
        assert store.feed(hit, at(3)) == []
    assert store.events == before


def test_a_replayed_hit_of_a_closed_event_opens_nothing() -> None:
    store = Store()
    event = only(store.feed(smoke("s1", 0), at(0)), "opened").event
    store.act(event.id, Action.MARK_FALSE_ALARM, Actor("v1", Role.VILLAGE_LEAD), at(5), reason="x")
    assert store.feed(smoke("s1", 0), at(60)) == []
    # a hit from before the end of the closed incident is recorded on it, not opened anew
    late = only(store.feed(smoke("s2", -1), at(60)), "updated")
    assert late.event.id == event.id and late.event.state is State.FALSE_ALARM
    assert late.event.device_ids == ("s1", "s2") and late.event.first_seen == ts(-1)
    assert late.history[0].action is Action.COMMENT and late.cloudevent == "updated"
    # a new alarm after it releases the closed event's key and opens a new one
    changes = store.feed(smoke("s1", 61), at(61))
    assert [c.kind for c in changes] == ["released", "opened"]
    assert changes[0].cloudevent is None and changes[0].history == ()
    assert changes[0].event.state is State.FALSE_ALARM


# --- windows ------------------------------------------------------------------------------------


def test_window_passed_releases_and_opens_a_new_event() -> None:
    store = Store()
    first = only(store.feed(residual("e1", 0), at(0)), "opened").event
    store.feed(residual("e1", 1, CLEARED), at(1))
    assert only(store.feed(residual("e1", 20), at(20)), "updated").event.id == first.id
    store.feed(residual("e1", 21, CLEARED), at(21))
    changes = store.feed(residual("e1", 52), at(52))  # 31 min after the last hit
    assert [c.kind for c in changes] == ["released", "opened"]
    released, opened = changes[0].event, changes[1].event
    assert released.id == first.id and released.correlation_key is None
    assert released.state is State.REPORTED  # still open: a person closes it
    assert changes[0].cloudevent == "updated"
    assert opened.id in (changes[0].history[0].reason or "")
    assert opened.correlation_key == "electrical:site:A栋" and opened.id > first.id


def test_a_raised_condition_holds_the_event_past_the_window() -> None:
    store = Store()
    store.feed(smoke("s1", 0), at(0))
    assert only(store.feed(smoke("s2", 45), at(45)), "updated").event.alarm_count == 2
    literal = Store(CorrelationConfig(hold_while_active=False))
    literal.feed(smoke("s1", 0), at(0))
    assert [c.kind for c in literal.feed(smoke("s2", 45), at(45))] == ["released", "opened"]


# --- clears -------------------------------------------------------------------------------------


def test_offline_then_restore_closes_automatically_with_history() -> None:
    store = Store()
    event = only(store.feed(offline("s1", 0), at(0)), "opened").event
    assert event.severity is Severity.BLUE
    change = only(store.feed(offline("s1", 30, CLEARED), at(30)), "cleared")
    assert change.event.state is State.CLOSED and change.cloudevent == "closed"
    assert change.event.active_conditions == ()
    (entry,) = change.history
    assert entry.action is Action.AUTO_CLOSE and entry.actor_id == "system"
    assert entry.from_state is State.REPORTED and entry.at == at(30)
    assert [h.action for h in store.history[event.id]] == [Action.REPORT, Action.AUTO_CLOSE]
    # offline again: a new event
    changes = store.feed(offline("s1", 40), at(40))
    assert [c.kind for c in changes] == ["released", "opened"]


def test_residual_current_cleared_leaves_the_event_to_a_person() -> None:
    store = Store()
    store.feed(residual("e1", 0), at(0))
    change = only(store.feed(residual("e1", 3, CLEARED), at(3)), "cleared")
    event = change.event
    assert event.state is State.REPORTED and event.is_open and change.cloudevent == "updated"
    assert [h.action for h in change.history] == [Action.CLEAR]
    assert event.workflow.cleared_at == at(3) and event.active_conditions == ()
    assert event.evidence[-1].phase == "cleared" and event.last_seen == ts(3)


def test_a_clear_while_other_conditions_remain_only_updates() -> None:
    store = Store()
    store.feed(smoke("s1", 0), at(0))
    store.feed(smoke("s2", 1), at(1))
    change = only(store.feed(smoke("s1", 2, CLEARED), at(2)), "cleared")
    assert change.history == () and change.event.active_conditions == ("s2/device_events/alarm",)


@pytest.mark.parametrize("hit", [smoke("s1", 0, CLEARED), offline("s1", 0, CLEARED)])
def test_a_clear_without_an_event_changes_nothing(hit: Hit) -> None:
    assert Store().feed(hit, at(0)) == []


def test_a_clear_for_a_closed_event_changes_nothing() -> None:
    store = Store()
    event = only(store.feed(smoke("s1", 0), at(0)), "opened").event
    store.act(event.id, Action.MARK_FALSE_ALARM, Actor("v1", Role.VILLAGE_LEAD), at(5), reason="x")
    assert store.feed(smoke("s1", 6, CLEARED), at(6)) == []


# --- bounds and contracts -----------------------------------------------------------------------


def test_evidence_keeps_the_latest_items() -> None:
    store = Store(CorrelationConfig(evidence_limit=5))
    for i in range(12):
        store.feed(smoke("s1", i), at(i))
    (event,) = store.events.values()
    assert event.alarm_count == 12 and len(event.evidence) == 5
    assert [e.ts for e in event.evidence] == [ts(i) for i in range(7, 12)]


def test_lookup_keys_name_the_linked_sites() -> None:
    assert lookup_keys(cable("e1", 0), ctx("e1")) == ("electrical:site:A栋", "fire:site:A栋")
    assert lookup_keys(smoke("s1", 0), ctx("s1")) == ("fire:site:A栋", "electrical:site:A栋")
    assert lookup_keys(offline("s1", 0), ctx("s1")) == ("device:device_type:device_offline:s1",)
    assert lookup_keys(smoke("s4", 0), ctx("s4", "")) == ("fire:device:s4",)


def test_bad_calls_are_refused() -> None:
    with pytest.raises(ValueError, match="context"):
        correlate(smoke("s1", 0), ctx("s2"), {}, at(0), entropy=1)
    with pytest.raises(ValueError, match="timezone"):
        correlate(smoke("s1", 0), ctx("s1"), {}, datetime(2026, 11, 22), entropy=1)
    event = only(Store().feed(smoke("s1", 0), at(0)), "opened").event
    with pytest.raises(ValueError, match="does not hold"):
        correlate(smoke("s1", 1), ctx("s1"), {"fire:site:B栋": event}, at(1), entropy=1)


def test_device_context_from_the_registry() -> None:
    grid = Grid(
        code=GRID,
        name="三网格",
        level=GridLevel.GRID,
        parent=ANCESTORS[-1],
        members=(
            Member("c9", "市局", MemberRole.CITY_DEPARTMENT, "020"),
            Member("g1", "张三", MemberRole.GRID_MEMBER, "0138"),
        ),
        ancestors=ANCESTORS,
    )
    device = Device("s1", "smoke_detector", lat=22.5, lon=113.3, address="1号", site=" A栋 ")
    context = DeviceContext.from_registry(device, grid)
    assert context.members == (G1,) and context.site == "A栋"
    assert (context.grid_code, context.ancestors) == (GRID, ANCESTORS)
    assert context.location == Location(lat=22.5, lon=113.3, address="1号")
    assert as_assignees([Member("v1", "李四", MemberRole.VILLAGE_LEAD, "")]) == (V1,)


# --- properties ---------------------------------------------------------------------------------

DEVICES = {"s1": smoke, "s2": smoke, "s3": smoke, "s4": smoke, "e1": cable, "e2": residual}

Step = tuple[Literal["hit", "replay", "close"], str, bool, float]
steps = st.lists(
    st.tuples(
        st.sampled_from(["hit", "hit", "hit", "replay", "close"]),
        st.sampled_from([*DEVICES, "off:s1", "off:e1"]),
        st.booleans(),
        st.sampled_from([0.0, 0.0, 0.5, 1.0, 10.0, 31.0, 120.0]),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps, st.booleans())
def test_any_hit_sequence_keeps_keys_unique_and_severity_rising(
    plan: list[Step], hold_while_active: bool
) -> None:
    store = Store(CorrelationConfig(hold_while_active=hold_while_active, evidence_limit=6))
    fed: list[Hit] = []
    minutes = 0.0
    for what, device, raised, dt in plan:
        minutes += dt
        now = at(minutes)
        before = {e.id: e.severity for e in store.open()}
        if what == "close":
            open_ids = sorted(e.id for e in store.open())
            if open_ids:
                store.act(
                    open_ids[0],
                    Action.MARK_FALSE_ALARM,
                    Actor("v1", Role.VILLAGE_LEAD),
                    now,
                    reason="checked",
                )
            continue
        if what == "replay":
            if not fed:
                continue
            hit = fed[int(dt * 7) % len(fed)]
            changes = store.feed(hit, now)
            assert all(c.kind != "opened" for c in changes), "a replay opened an event"
        else:
            phase: Phase = RAISED if raised else CLEARED
            if device.startswith("off:"):
                hit = offline(device[4:], minutes, phase)
            else:
                hit = DEVICES[device](device, minutes, phase)
            fed.append(hit)
            changes = store.feed(hit, now)
        for change in changes:
            label_example(
                f"{change.kind}{' linked' if change.linked else ''} → {change.cloudevent}"
            )
        note(f"{what} {hit.condition_key} {hit.phase} at {minutes} min")
        for ev in store.events.values():
            assert ev.severity is ev.workflow.severity and problems(ev.workflow) == []
            assert len(ev.evidence) <= store.config.evidence_limit
            if ev.id in before and ev.is_open:
                assert rank(ev.severity) >= rank(before[ev.id]), "severity went down"
        open_keys = [e.correlation_key for e in store.open() if e.correlation_key]
        assert len(open_keys) == len(set(open_keys))


def test_an_event_takes_the_name_of_its_most_severe_hit() -> None:
    """A baseline anomaly (blue) followed by a residual-current alarm (orange) at one site is
    one residual-current event, orange."""
    from datetime import UTC, datetime

    from alerts.correlation import DeviceContext, correlate, lookup_keys
    from detectors.base import Label

    device = DeviceContext(device_id="EF-7", site="shop-7", grid_code="g")
    anomaly = Label("anomaly", "electrical", "blue").hit(
        "EF-7", "baseline", "deviation", "raised", 100.0
    )
    alarm = Label("residual_current_high", "electrical", "orange").hit(
        "EF-7", "residual_current", "alarm", "raised", 102.0
    )
    now = datetime.fromtimestamp(200.0, UTC)
    (opened,) = correlate(anomaly, device, {}, now, entropy=1)
    key = lookup_keys(alarm, device)[0]
    (joined,) = correlate(alarm, device, {key: opened.event}, now, entropy=2)
    event = joined.event
    assert (event.type, event.severity.value, event.workflow.type) == (
        "residual_current_high",
        "orange",
        "residual_current_high",
    )
    assert event.alarm_count == 2 and event.id == opened.event.id
