"""The pure parts of patrol deadlines with one owner: which tags a tick decides, what the
owner does with check-ins another worker stored (takes them in before declaring a period
overdue; keeps only their patrol_overdue hits), and when it holds the deadline lock."""

from __future__ import annotations

from typing import Any

import pytest

from detectors import DeviceDetectors, DeviceState
from detectors.patrol import PatrolState
from devices.messages import DeviceEvent
from devices.profiles import get_profile
from ingest.patrol_owner import DeadlineOwner, decide, known_checkin, on_duty, select

TAG = "PT-1"
T0 = 1_900_000_000.0


def engine() -> DeviceDetectors:
    profile = get_profile("patrol_tag").with_overrides(
        {"patrol_interval": "PT1H", "detectors": {"patrol": {"grace": "PT6M", "settle_s": 0}}}
    )
    return DeviceDetectors.for_profile(profile)


def started(eng: DeviceDetectors) -> DeviceState:
    """A tag whose duty began at T0 (its first tick)."""
    return eng.on_tick(eng.initial_state(TAG, T0), T0).state


def checkin(ts: float, **detail: Any) -> DeviceEvent:
    return DeviceEvent(TAG, ts, None, "checkin", {"worker_id": "m1", **detail}, ts)


def patrol(state: DeviceState) -> PatrolState:
    return state.detectors["patrol"]


@pytest.fixture
def eng() -> DeviceDetectors:
    return engine()


def test_known_checkin_and_duty(eng: DeviceDetectors) -> None:
    fresh = eng.initial_state(TAG, T0)
    assert known_checkin(fresh) is None and not on_duty(fresh)
    state = started(eng)
    assert on_duty(state) and known_checkin(state) is None
    state = eng.on_event(state, checkin(T0 + 60), T0 + 60).state
    assert known_checkin(state) == T0 + 60


def test_select_takes_due_tags_and_rechecks_overdue_ones(eng: DeviceDetectors) -> None:
    s = eng.by_key["patrol"].schedule
    never = eng.initial_state("never", T0)  # wakes at once: the first tick starts the duty
    waiting = started(eng)
    deadline = s.deadline(s.first_due(T0))
    overdue, hits = decide(eng, waiting, [], deadline)
    assert [h.type for h in hits] == ["patrol_overdue"]
    states = {"never": never, "waiting": waiting, "overdue": overdue}
    engines = dict.fromkeys(states, eng)
    chosen = select(engines, states, T0 + 1, recheck=False)
    assert (chosen.due, chosen.waiting) == (["never"], [])
    chosen = select(engines, states, deadline, recheck=True)
    assert (chosen.due, chosen.waiting) == (["never", "waiting"], ["overdue"])
    assert chosen.to_read(states) == ["waiting", "overdue"]  # "never" has nothing to miss


def test_a_checkin_stored_elsewhere_does_the_period(eng: DeviceDetectors) -> None:
    s = eng.by_key["patrol"].schedule
    k = s.first_due(T0)
    state = started(eng)
    done, hits = decide(eng, state, [checkin(s.start(k) + 30)], s.deadline(k) + 1)
    assert hits == [] and patrol(done).done_until == s.end(k)
    missed, hits = decide(eng, state, [], s.deadline(k) + 1)
    assert [(h.type, h.phase, h.ts) for h in hits] == [("patrol_overdue", "raised", s.deadline(k))]
    assert patrol(missed).overdue_at == s.deadline(k)
    # a check-in stored just after the deadline, before the owner's tick, is taken in first,
    # as one worker judges a batch before its next tick: it does the next period
    late, hits = decide(eng, state, [checkin(s.deadline(k) + 0.5)], s.deadline(k) + 1)
    assert hits == [] and patrol(late).done_until == s.end(k + 1)


def test_replayed_checkins_raise_no_hazard_but_clear_the_overdue(eng: DeviceDetectors) -> None:
    s = eng.by_key["patrol"].schedule
    k = s.first_due(T0)
    overdue, _ = decide(eng, started(eng), [], s.deadline(k))
    # out of order on purpose: they are taken in time order
    found = [
        checkin(s.deadline(k) + 120, checklist={"exits_clear": True}),
        checkin(s.deadline(k) + 60, checklist={"exits_clear": False}),
    ]
    state, hits = decide(eng, overdue, found, s.deadline(k) + 200)
    assert [(h.type, h.phase) for h in hits] == [("patrol_overdue", "cleared")]
    assert patrol(state).hazard is False and known_checkin(state) == s.deadline(k) + 120
    state, hits = decide(eng, overdue, found[1:], s.deadline(k) + 200)
    assert patrol(state).hazard is True and [h.type for h in hits] == ["patrol_overdue"]


def test_without_a_tick_nothing_is_declared(eng: DeviceDetectors) -> None:
    s = eng.by_key["patrol"].schedule
    state = started(eng)
    same, hits = decide(eng, state, [], s.deadline(s.first_due(T0)) + 1, tick=False)
    assert same == state and hits == []


class FakeConn:
    def __init__(self, granted: bool) -> None:
        self.granted = granted
        self.closed = False
        self.queries = 0

    async def execute(self, _query: str, _params: tuple[int]) -> FakeConn:
        self.queries += 1
        return self

    async def fetchone(self) -> tuple[bool]:
        return (self.granted,)


async def test_the_lock_is_held_on_one_connection_and_tried_on_a_new_one() -> None:
    owner = DeadlineOwner()
    first = FakeConn(granted=True)
    assert await owner.claim(first) == (True, True)  # type: ignore[arg-type]
    assert await owner.claim(first) == (True, False)  # type: ignore[arg-type]
    assert first.queries == 1 and owner.owned
    first.closed = True  # the lock went with the session
    assert not owner.owned
    second = FakeConn(granted=False)  # another worker has taken it meanwhile
    assert await owner.claim(second) == (False, False)  # type: ignore[arg-type]
    assert await owner.claim(second) == (False, False)  # type: ignore[arg-type]
    assert second.queries == 2 and not owner.owned
    second.granted = True
    assert await owner.claim(second) == (True, True)  # type: ignore[arg-type]
