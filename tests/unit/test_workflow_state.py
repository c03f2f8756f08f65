"""The persisted workflow value: msgspec JSON round trips, validation on load, consistency."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from alerts.roles import (
    GRID_LEVEL,
    LADDER,
    SYSTEM_ACTOR,
    TOKEN_ROLES,
    Actor,
    Assignee,
    Role,
    owner_of,
    pick_assignee,
    rank,
    role_at,
)
from alerts.workflow import apply, open_event
from alerts.workflow_enums import DUE_STEP, Action, Severity, State
from alerts.workflow_state import (
    HistoryEntry,
    WorkflowState,
    decode_history,
    decode_state,
    encode_history,
    encode_state,
    problems,
)

BEIJING = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 22, 16, 0, tzinfo=BEIJING)
MIN = timedelta(minutes=1)
G1 = Actor("g1", Role.GRID_MEMBER)
V1 = Actor("v1", Role.VILLAGE_LEAD)
M_G1 = Assignee("g1", Role.GRID_MEMBER)
M_G2 = Assignee("g2", Role.GRID_MEMBER)


def lifecycle() -> tuple[list[WorkflowState], list[HistoryEntry]]:
    """Every state of one event with rework, escalation and a clear, and its history."""
    ws, entry = open_event(Severity.ORANGE, "electrical", "cable_overtemp", T0)
    states, history = [ws], [entry]
    steps: list[tuple[Action, Actor, dict[str, Any]]] = [
        (Action.DISPATCH, SYSTEM_ACTOR, {"assignee": M_G1}),
        (Action.ESCALATE, SYSTEM_ACTOR, {"reason": "督办: accept is late"}),
        (Action.ACCEPT, G1, {}),
        (Action.CLEAR, SYSTEM_ACTOR, {"reason": "temperature back below 60 °C"}),
        (Action.RESOLVE, G1, {"reason": "loose terminal tightened"}),
        # Escalated once: verification and send-back are the town centre's now.
        (Action.SEND_BACK, Actor("t1", Role.TOWN_CENTRE), {"reason": "no photo", "assignee": M_G2}),
        (Action.ACCEPT, Actor("g2", Role.GRID_MEMBER), {}),
        (Action.RESOLVE, Actor("g2", Role.GRID_MEMBER), {"reason": "photo attached"}),
        (Action.VERIFY, Actor("t1", Role.TOWN_CENTRE), {}),
        (Action.CLOSE, Actor("t1", Role.TOWN_CENTRE), {}),
        (Action.COMMENT, V1, {"reason": "归档"}),
    ]
    for n, (action, actor, kwargs) in enumerate(steps, start=1):
        ws, entry = apply(ws, action, actor, T0 + n * MIN, **kwargs)
        states.append(ws)
        history.append(entry)
    return states, history


def test_every_state_round_trips_through_json() -> None:
    states, _ = lifecycle()
    assert states[-1].state is State.CLOSED and states[-1].rework_count == 1
    for ws in states:
        data = encode_state(ws)
        back = decode_state(data)
        assert back == ws
        assert encode_state(back) == data
        assert problems(back) == []


def test_history_round_trips_through_json() -> None:
    _, history = lifecycle()
    assert decode_history(encode_history(history)) == history
    assert all(e.actor_id and e.actor_role for e in history)


def test_json_is_readable() -> None:
    states, _ = lifecycle()
    doc = msgspec.json.decode(encode_state(states[2]))
    assert doc["state"] == "dispatched" and doc["severity"] == "orange"
    assert doc["assignee"] == {"id": "g1", "role": "grid_member"}
    assert doc["level"] == 1
    assert doc["due"].endswith("+08:00")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("level", 4),
        ("level", -1),
        ("rework_count", -1),
        ("state", "archived"),
        ("severity", "purple"),
        ("assignee", {"id": "x", "role": "viewer"}),
        ("assignee", {"id": "", "role": "grid_member"}),
        ("due", "tomorrow"),
    ],
)
def test_bad_stored_state_is_rejected(field: str, value: object) -> None:
    states, _ = lifecycle()
    doc = msgspec.json.decode(encode_state(states[3]))
    doc[field] = value
    with pytest.raises(msgspec.ValidationError):
        decode_state(msgspec.json.encode(doc))


def test_state_is_frozen() -> None:
    states, _ = lifecycle()
    with pytest.raises(AttributeError):
        setattr(states[0], "level", 3)  # noqa: B010 - the assignment is what is tested


def test_problems_finds_inconsistencies() -> None:
    states, _ = lifecycle()
    reported, dispatched, closed = states[0], states[1], states[-1]
    replace = msgspec.structs.replace
    assert problems(replace(reported, assignee=M_G1)) == ["reported but already assigned"]
    assert problems(replace(dispatched, assignee=None)) == ["dispatched without an assignee"]
    assert problems(replace(closed, due=T0)) == ["closed is terminal but has a deadline"]
    assert problems(replace(dispatched, due=None)) == ["dispatched has no deadline"]
    assert problems(replace(dispatched, dispatched_at=None)) == [
        "no time recorded for entering dispatched"
    ]


def test_entered_at_per_state() -> None:
    states, _ = lifecycle()
    last = states[-1]
    assert last.entered_at(State.REPORTED) == T0
    assert last.entered_at(State.ACCEPTED) == T0 + 7 * MIN  # the latest entry, after rework
    assert last.entered_at() == last.closed_at == T0 + 10 * MIN
    assert last.entered_at(State.FALSE_ALARM) is None


# --- roles ---------------------------------------------------------------------------------


def test_ladder_and_levels() -> None:
    assert LADDER == (
        Role.GRID_MEMBER,
        Role.VILLAGE_LEAD,
        Role.TOWN_CENTRE,
        Role.COUNTY_CENTRE,
    )
    assert [GRID_LEVEL[r] for r in LADDER] == ["grid", "village", "town", "county"]
    assert [rank(r) for r in LADDER] == [0, 1, 2, 3]
    assert rank(Role.ADMIN) == 4
    assert rank(Role.VIEWER) is None and rank(Role.SYSTEM) is None
    assert role_at(7) is Role.COUNTY_CENTRE and role_at(-1) is Role.GRID_MEMBER
    assert Role.SYSTEM not in TOKEN_ROLES
    assert {r.value for r in TOKEN_ROLES} == {
        "viewer",
        "grid_member",
        "village_lead",
        "town_centre",
        "county_centre",
        "admin",
    }


def test_each_step_has_an_owning_role() -> None:
    owners = {
        step: owner_of(step, state, 0, has_assignee=state is not State.REPORTED)
        for state, step in DUE_STEP.items()
    }
    assert owners == {
        Action.DISPATCH: Role.VILLAGE_LEAD,
        Action.ACCEPT: Role.GRID_MEMBER,
        Action.RESOLVE: Role.GRID_MEMBER,
        Action.VERIFY: Role.VILLAGE_LEAD,
        Action.CLOSE: Role.VILLAGE_LEAD,
    }
    assert owner_of(Action.VERIFY, State.RESOLVED, 5, has_assignee=True) is Role.COUNTY_CENTRE


def test_pick_assignee_from_members() -> None:
    members = [Assignee("v1", Role.VILLAGE_LEAD), M_G2, M_G1]
    assert pick_assignee(members) == M_G2
    assert pick_assignee(members, Role.VILLAGE_LEAD) == Assignee("v1", Role.VILLAGE_LEAD)
    assert pick_assignee(members, Role.TOWN_CENTRE) is None
