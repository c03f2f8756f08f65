"""``alerts.choices`` offers exactly what the workflow accepts: for events in every open and
finished state, every actor, every person's action and every candidate assignee, the
action is offered (with that assignee) if and only if ``alerts.workflow.apply`` takes it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from alerts.choices import PERSON_ACTIONS, Choice, choices
from alerts.roles import Actor, Assignee, Role
from alerts.workflow import WorkflowError, apply, open_event
from alerts.workflow_enums import Action, Severity, State
from alerts.workflow_state import WorkflowState

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)

M_G1 = Assignee("g1", Role.GRID_MEMBER)
M_G2 = Assignee("g2", Role.GRID_MEMBER)
M_V1 = Assignee("v1", Role.VILLAGE_LEAD)
M_T1 = Assignee("t1", Role.TOWN_CENTRE)
MEMBERS = (M_G1, M_G2, M_V1, M_T1)
ACTORS = (
    Actor("g1", Role.GRID_MEMBER),
    Actor("g2", Role.GRID_MEMBER),
    Actor("v1", Role.VILLAGE_LEAD),
    Actor("v2", Role.VILLAGE_LEAD),
    Actor("t1", Role.TOWN_CENTRE),
    Actor("c1", Role.COUNTY_CENTRE),
    Actor("a1", Role.ADMIN),
    Actor("viewer", Role.VIEWER),
)
V1, A1 = ACTORS[2], ACTORS[6]

# Paths through the loop: (action, actor, assignee) steps from a new red fire event.
PATHS: dict[str, list[tuple[Action, Actor, Assignee | None]]] = {
    "reported": [],
    "dispatched": [(Action.DISPATCH, V1, M_G1)],
    "accepted": [(Action.DISPATCH, V1, M_G1), (Action.ACCEPT, ACTORS[0], None)],
    "resolved by g1": [
        (Action.DISPATCH, V1, M_G1),
        (Action.ACCEPT, ACTORS[0], None),
        (Action.RESOLVE, ACTORS[0], None),
    ],
    "resolved by v1": [
        (Action.DISPATCH, V1, M_G1),
        (Action.ACCEPT, ACTORS[0], None),
        (Action.RESOLVE, V1, None),
    ],
    "verified": [
        (Action.DISPATCH, V1, M_G1),
        (Action.ACCEPT, ACTORS[0], None),
        (Action.RESOLVE, ACTORS[0], None),
        (Action.VERIFY, V1, None),
    ],
    "closed": [
        (Action.DISPATCH, V1, M_G1),
        (Action.ACCEPT, ACTORS[0], None),
        (Action.RESOLVE, ACTORS[0], None),
        (Action.VERIFY, V1, None),
        (Action.CLOSE, V1, None),
    ],
    "escalated twice": [(Action.ESCALATE, A1, None), (Action.ESCALATE, A1, None)],
    "false alarm": [(Action.MARK_FALSE_ALARM, V1, None)],
}


def state_after(path: str) -> WorkflowState:
    ws, _ = open_event(Severity.RED, "fire", "smoke_alarm", T0)
    at = T0
    for action, actor, assignee in PATHS[path]:
        at += MIN
        ws, _ = apply(ws, action, actor, at, reason="why", assignee=assignee, members=MEMBERS)
    return ws


def accepted(ws: WorkflowState, action: Action, actor: Actor, who: Assignee | None) -> bool:
    try:
        apply(ws, action, actor, T0 + 10 * MIN, reason="x", assignee=who, members=MEMBERS)
    except WorkflowError:
        return False
    return True


def cases() -> Iterator[tuple[str, Actor]]:
    for path in PATHS:
        for actor in ACTORS:
            yield path, actor


@pytest.mark.parametrize(("path", "actor"), list(cases()), ids=lambda v: getattr(v, "id", v))
def test_offered_exactly_when_the_workflow_accepts(path: str, actor: Actor) -> None:
    ws = state_after(path)
    offered = {c.action: c for c in choices(ws, actor, T0 + 10 * MIN, MEMBERS)}
    for action in PERSON_ACTIONS:
        choice = offered.get(action)
        bare = accepted(ws, action, actor, None)
        for member in MEMBERS:
            takes = accepted(ws, action, actor, member)
            assert takes == (choice is not None and member in choice.assignees), (action, member)
        if choice is None:
            assert not bare, action
        else:
            assert bare == (choice.assignee != "required"), action
            assert choice.assignees or choice.assignee != "required"


def test_what_a_dispatcher_and_a_resolver_are_offered() -> None:
    reported = {c.action: c for c in choices(state_after("reported"), V1, T0, MEMBERS)}
    dispatch = reported[Action.DISPATCH]
    assert dispatch == Choice(
        action=Action.DISPATCH, reason="optional", assignee="required", assignees=(M_G1, M_G2, M_V1)
    )  # not the town centre above the lead: sending work up is escalation
    assert reported[Action.MARK_FALSE_ALARM].reason == "required"
    assert Action.ACCEPT not in reported

    resolved = state_after("resolved by g1")
    resolver = [c.action for c in choices(resolved, ACTORS[0], T0, MEMBERS)]
    assert Action.VERIFY not in resolver and Action.SEND_BACK not in resolver
    lead = [c.action for c in choices(resolved, V1, T0, MEMBERS)]
    assert lead[:2] == [Action.VERIFY, Action.SEND_BACK]


def test_a_viewer_and_a_finished_event() -> None:
    assert choices(state_after("dispatched"), ACTORS[7], T0, MEMBERS) == ()
    closed = choices(state_after("closed"), A1, T0, MEMBERS)
    assert [c.action for c in closed] == [Action.COMMENT]
    assert state_after("closed").state is State.CLOSED


def test_an_unplaced_event_offers_no_one_to_dispatch_to() -> None:
    """An event placed in no grid has no members to name, so dispatch is not offered; the
    actions that need no one still are."""
    offered = [c.action for c in choices(state_after("reported"), A1, T0, None)]
    assert Action.DISPATCH not in offered
    assert Action.MARK_FALSE_ALARM in offered and Action.COMMENT in offered
