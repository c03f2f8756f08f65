"""The grid-event state machine: every legal move, every illegal one, and who may move it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerts.deadlines import due_at
from alerts.roles import SYSTEM_ACTOR, Actor, Assignee, Role
from alerts.workflow import (
    DEFAULT_CONFIG,
    TRANSITIONS,
    IllegalTransition,
    InvalidAssignee,
    MissingReason,
    NotPermitted,
    WorkflowConfig,
    WorkflowError,
    apply,
    auto_close_problem,
    on_condition_cleared,
    open_event,
)
from alerts.workflow_enums import Action, Severity, State
from alerts.workflow_state import WorkflowState, problems

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)

G1 = Actor("g1", Role.GRID_MEMBER)
G2 = Actor("g2", Role.GRID_MEMBER)
V1 = Actor("v1", Role.VILLAGE_LEAD)
T1 = Actor("t1", Role.TOWN_CENTRE)
C1 = Actor("c1", Role.COUNTY_CENTRE)
A1 = Actor("a1", Role.ADMIN)
VIEWER = Actor("viewer1", Role.VIEWER)
SYSTEM = SYSTEM_ACTOR
ACTORS = {
    "g1": G1,
    "g2": G2,
    "v1": V1,
    "t1": T1,
    "c1": C1,
    "a1": A1,
    "viewer": VIEWER,
    "system": SYSTEM,
}

M_G1 = Assignee("g1", Role.GRID_MEMBER)
M_G2 = Assignee("g2", Role.GRID_MEMBER)
M_V1 = Assignee("v1", Role.VILLAGE_LEAD)
M_T1 = Assignee("t1", Role.TOWN_CENTRE)
MEMBERS = (M_G1, M_G2, M_V1, M_T1)

OPEN_STATES = [s for s in State if not s.terminal]


def walk(
    target: State,
    *,
    category: str = "fire",
    type: str = "smoke_alarm",
    severity: Severity = Severity.RED,
) -> WorkflowState:
    """An event brought to ``target`` along the ordinary path, one minute a step."""
    ws, _ = open_event(severity, category, type, T0)
    path: dict[State, list[tuple[Action, Actor, dict[str, Any]]]] = {
        State.REPORTED: [],
        State.DISPATCHED: [(Action.DISPATCH, SYSTEM, {"assignee": M_G1})],
        State.ACCEPTED: [(Action.DISPATCH, SYSTEM, {"assignee": M_G1}), (Action.ACCEPT, G1, {})],
        State.RESOLVED: [
            (Action.DISPATCH, SYSTEM, {"assignee": M_G1}),
            (Action.ACCEPT, G1, {}),
            (Action.RESOLVE, G1, {"reason": "alarm was burnt toast; sensor cleaned"}),
        ],
        State.FALSE_ALARM: [(Action.MARK_FALSE_ALARM, V1, {"reason": "test of the sensor"})],
    }
    path[State.VERIFIED] = [*path[State.RESOLVED], (Action.VERIFY, V1, {})]
    path[State.CLOSED] = [*path[State.VERIFIED], (Action.CLOSE, V1, {})]
    now = T0
    for action, actor, kwargs in path[target]:
        now += MIN
        ws, _ = apply(ws, action, actor, now, **kwargs)
    assert ws.state is target
    return ws


def at(ws: WorkflowState) -> datetime:
    return ws.updated_at + MIN


# --- legal transitions -------------------------------------------------------------------

LEGAL = [
    (State.REPORTED, Action.DISPATCH, SYSTEM, {"assignee": M_G1}, State.DISPATCHED),
    (State.REPORTED, Action.DISPATCH, V1, {"assignee": M_G1}, State.DISPATCHED),
    (State.DISPATCHED, Action.ACCEPT, G1, {}, State.ACCEPTED),
    (State.DISPATCHED, Action.REASSIGN, V1, {"assignee": M_G2}, State.DISPATCHED),
    (State.ACCEPTED, Action.REASSIGN, V1, {"assignee": M_G2}, State.ACCEPTED),
    (State.ACCEPTED, Action.RESOLVE, G1, {"reason": "reset the breaker"}, State.RESOLVED),
    (State.RESOLVED, Action.VERIFY, V1, {}, State.VERIFIED),
    (State.RESOLVED, Action.SEND_BACK, V1, {"reason": "still smells burnt"}, State.ACCEPTED),
    (
        State.RESOLVED,
        Action.SEND_BACK,
        V1,
        {"reason": "needs an electrician", "assignee": M_G2},
        State.DISPATCHED,
    ),
    (State.VERIFIED, Action.CLOSE, V1, {}, State.CLOSED),
    (State.REPORTED, Action.MARK_FALSE_ALARM, V1, {"reason": "sensor test"}, State.FALSE_ALARM),
    (State.DISPATCHED, Action.MARK_FALSE_ALARM, G1, {"reason": "cooking"}, State.FALSE_ALARM),
    (State.ACCEPTED, Action.MARK_FALSE_ALARM, G1, {"reason": "cooking"}, State.FALSE_ALARM),
    *[(s, Action.ESCALATE, SYSTEM, {"reason": "late"}, s) for s in OPEN_STATES],
    *[(s, Action.URGE, C1, {"reason": "快办"}, s) for s in OPEN_STATES],
    *[(s, Action.CLEAR, SYSTEM, {"reason": "restore"}, s) for s in OPEN_STATES],
    *[(s, Action.COMMENT, G2, {"reason": "neighbour called"}, s) for s in State],
]


@pytest.mark.parametrize(
    ("start", "action", "actor", "kwargs", "end"),
    LEGAL,
    ids=[f"{s}-{a}-{who.id}" for s, a, who, _, _ in LEGAL],
)
def test_legal_transition(
    start: State, action: Action, actor: Actor, kwargs: dict[str, Any], end: State
) -> None:
    ws = walk(start)
    now = at(ws)
    new, entry = apply(ws, action, actor, now, **kwargs)
    assert new.state is end
    assert (entry.action, entry.from_state, entry.to_state) == (action, start, end)
    assert (entry.actor_id, entry.actor_role, entry.at) == (actor.id, actor.role, now)
    assert entry.reason == kwargs.get("reason")
    assert entry.assignee_before == ws.assignee
    assert entry.assignee_after == new.assignee
    assert entry.due == new.due
    assert new.updated_at == now
    assert problems(new) == []
    if end is not start:
        assert new.entered_at() == now
        assert new.due == due_at(end, ws.severity, now)  # None once terminal
    assert ws == walk(start)  # the input value is untouched


def test_every_action_has_a_legal_case_or_is_report() -> None:
    covered = {action for _, action, _, _, _ in LEGAL}
    assert set(Action) - covered == {Action.REPORT, Action.AUTO_CLOSE}  # auto_close below


@pytest.mark.parametrize("start", OPEN_STATES)
def test_auto_close_of_device_offline_from_any_open_state(start: State) -> None:
    ws = walk(start, category="device", type="device_offline", severity=Severity.BLUE)
    now = at(ws)
    new, entry = apply(ws, Action.AUTO_CLOSE, SYSTEM, now, reason="device back online")
    assert new.state is State.CLOSED and new.closed_at == now and new.due is None
    assert (entry.action, entry.actor_role, entry.reason) == (
        Action.AUTO_CLOSE,
        Role.SYSTEM,
        "device back online",
    )


# --- illegal transitions -----------------------------------------------------------------

ILLEGAL = [(s, a) for a in Action for s in State if s not in TRANSITIONS[a]]


@pytest.mark.parametrize(("start", "action"), ILLEGAL, ids=[f"{s}-{a}" for s, a in ILLEGAL])
def test_illegal_transition_raises_with_reason(start: State, action: Action) -> None:
    ws = walk(start)
    with pytest.raises(IllegalTransition) as info:
        apply(ws, action, A1, at(ws), reason="because", assignee=M_G2)
    err = info.value
    assert err.status == 409 and err.code == "illegal_transition"
    assert err.action is action and err.state is start
    assert action.value in str(err) or start.value in str(err)


@pytest.mark.parametrize("terminal", [State.CLOSED, State.FALSE_ALARM])
def test_terminal_states_take_only_comments(terminal: State) -> None:
    ws = walk(terminal)
    for action in Action:
        if action is Action.COMMENT:
            new, _ = apply(ws, action, G2, at(ws), reason="archived")
            assert new.state is terminal
            continue
        with pytest.raises(IllegalTransition, match=r"finished event|reported once"):
            apply(ws, action, A1, at(ws), reason="x", assignee=M_G2)


def test_report_is_not_an_action() -> None:
    with pytest.raises(IllegalTransition, match="reported once"):
        apply(walk(State.REPORTED), Action.REPORT, A1, T0 + MIN)


# --- permissions ---------------------------------------------------------------------------

# action, the state it is tried in, who may, who may not (g1 is the assignee when assigned).
PERMISSIONS = [
    (Action.DISPATCH, State.REPORTED, "v1 t1 c1 a1 system", "g1 g2 viewer"),
    (Action.ACCEPT, State.DISPATCHED, "g1 v1 t1 c1 a1", "g2 viewer system"),
    (Action.REASSIGN, State.DISPATCHED, "v1 t1 c1 a1", "g1 g2 viewer system"),
    (Action.RESOLVE, State.ACCEPTED, "g1 v1 t1 c1 a1", "g2 viewer system"),
    (Action.VERIFY, State.RESOLVED, "v1 t1 c1 a1", "g1 g2 viewer system"),
    (Action.SEND_BACK, State.RESOLVED, "v1 t1 c1 a1", "g1 g2 viewer system"),
    (Action.CLOSE, State.VERIFIED, "v1 t1 c1 a1", "g1 g2 viewer system"),
    (Action.MARK_FALSE_ALARM, State.REPORTED, "v1 t1 c1 a1", "g1 g2 viewer system"),
    (Action.MARK_FALSE_ALARM, State.ACCEPTED, "g1 v1 t1 c1 a1", "g2 viewer system"),
    (Action.ESCALATE, State.ACCEPTED, "g1 v1 t1 c1 a1 system", "g2 viewer"),
    (Action.ESCALATE, State.REPORTED, "v1 t1 c1 a1 system", "g1 g2 viewer"),
    (Action.URGE, State.ACCEPTED, "v1 t1 c1 a1", "g1 g2 viewer system"),
    (Action.URGE, State.RESOLVED, "t1 c1 a1", "g1 g2 v1 viewer system"),
    (Action.COMMENT, State.ACCEPTED, "g1 g2 v1 t1 c1 a1 system", "viewer"),
    (Action.CLEAR, State.ACCEPTED, "g1 g2 v1 t1 c1 a1 system", "viewer"),
]
PERMISSION_CASES = [
    (action, state, who, allowed)
    for action, state, yes, no in PERMISSIONS
    for names, allowed in ((yes, True), (no, False))
    for who in names.split()
]


def _kwargs(action: Action) -> dict[str, Any]:
    if action in (Action.DISPATCH, Action.REASSIGN):
        return {"assignee": M_G2 if action is Action.REASSIGN else M_G1}
    return {"reason": "on site"}


@pytest.mark.parametrize(
    ("action", "state", "who", "allowed"),
    PERMISSION_CASES,
    ids=[f"{a}-{s}-{w}-{'yes' if ok else 'no'}" for a, s, w, ok in PERMISSION_CASES],
)
def test_permission(action: Action, state: State, who: str, allowed: bool) -> None:
    ws = walk(state)
    kwargs = _kwargs(action)
    if allowed:
        _, entry = apply(ws, action, ACTORS[who], at(ws), **kwargs)
        assert entry.actor_id == ACTORS[who].id
    else:
        with pytest.raises(NotPermitted) as info:
            apply(ws, action, ACTORS[who], at(ws), **kwargs)
        assert info.value.status == 403 and str(info.value)


def test_auto_close_is_the_systems_alone() -> None:
    ws = walk(State.ACCEPTED, category="device", type="device_offline")
    for person in (G1, V1, T1, C1, A1):
        with pytest.raises(NotPermitted, match="only the system"):
            apply(ws, Action.AUTO_CLOSE, person, at(ws), reason="back online")


def test_viewer_is_told_it_only_reads() -> None:
    ws = walk(State.DISPATCHED)
    with pytest.raises(NotPermitted, match="viewer may read"):
        apply(ws, Action.ACCEPT, VIEWER, at(ws))


def test_escalation_moves_ownership_up_but_the_assignee_keeps_working() -> None:
    ws = walk(State.ACCEPTED)
    ws, _ = apply(ws, Action.ESCALATE, SYSTEM, at(ws), reason="late")  # owner: village lead
    apply(ws, Action.RESOLVE, V1, at(ws))
    ws, _ = apply(ws, Action.ESCALATE, SYSTEM, at(ws), reason="late again")  # town centre
    with pytest.raises(NotPermitted, match="town_centre or above"):
        apply(ws, Action.RESOLVE, V1, at(ws))
    apply(ws, Action.RESOLVE, T1, at(ws))
    resolved, _ = apply(ws, Action.RESOLVE, G1, at(ws))  # the assignee still may
    # Every step moved two rungs: verification (base: village lead) is the county's now.
    assert resolved.owner is Role.COUNTY_CENTRE
    for actor in (V1, T1):
        with pytest.raises(NotPermitted, match="county_centre or above"):
            apply(resolved, Action.VERIFY, actor, at(resolved))
    apply(resolved, Action.VERIFY, C1, at(resolved))


def test_admin_acts_above_the_county_centre() -> None:
    ws = walk(State.ACCEPTED)
    for _ in range(3):
        ws, _ = apply(ws, Action.ESCALATE, SYSTEM, at(ws), reason="late")
    assert ws.owner is Role.COUNTY_CENTRE
    with pytest.raises(NotPermitted, match="admin"):
        apply(ws, Action.URGE, C1, at(ws), reason="快办")
    apply(ws, Action.URGE, A1, at(ws), reason="快办")


# --- reasons -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "action", "actor"),
    [
        (State.RESOLVED, Action.SEND_BACK, V1),
        (State.ACCEPTED, Action.MARK_FALSE_ALARM, G1),
        (State.REPORTED, Action.MARK_FALSE_ALARM, V1),
        (State.ACCEPTED, Action.ESCALATE, G1),
        (State.ACCEPTED, Action.URGE, V1),
        (State.ACCEPTED, Action.COMMENT, G1),
        (State.ACCEPTED, Action.CLEAR, SYSTEM),
    ],
)
@pytest.mark.parametrize("reason", [None, "", "   \n"])
def test_reason_required(state: State, action: Action, actor: Actor, reason: str | None) -> None:
    ws = walk(state)
    with pytest.raises(MissingReason) as info:
        apply(ws, action, actor, at(ws), reason=reason)
    assert info.value.status == 422 and action.value in str(info.value)


def test_auto_close_needs_a_reason() -> None:
    ws = walk(State.REPORTED, category="device", type="device_offline")
    with pytest.raises(MissingReason):
        apply(ws, Action.AUTO_CLOSE, SYSTEM, at(ws))


def test_reason_is_stripped() -> None:
    ws = walk(State.ACCEPTED)
    _, entry = apply(ws, Action.COMMENT, G1, at(ws), reason="  called the owner \n")
    assert entry.reason == "called the owner"


# --- assignees -----------------------------------------------------------------------------


def test_dispatch_needs_an_assignee() -> None:
    ws = walk(State.REPORTED)
    with pytest.raises(InvalidAssignee, match="needs an assignee"):
        apply(ws, Action.DISPATCH, V1, at(ws))


def test_assignee_must_be_a_member_when_members_are_given() -> None:
    ws = walk(State.REPORTED)
    stranger = Assignee("g9", Role.GRID_MEMBER)
    with pytest.raises(InvalidAssignee, match="not a member"):
        apply(ws, Action.DISPATCH, V1, at(ws), assignee=stranger, members=MEMBERS)
    new, _ = apply(ws, Action.DISPATCH, V1, at(ws), assignee=M_G2, members=MEMBERS)
    assert new.assignee == M_G2


def test_work_is_not_assigned_upwards() -> None:
    ws = walk(State.REPORTED)
    with pytest.raises(NotPermitted, match="may not assign a town_centre"):
        apply(ws, Action.DISPATCH, V1, at(ws), assignee=M_T1)
    new, _ = apply(ws, Action.DISPATCH, SYSTEM, at(ws), assignee=M_T1)  # routing by the system
    assert new.assignee == M_T1
    new, _ = apply(ws, Action.DISPATCH, V1, at(ws), assignee=M_V1)  # to oneself's level
    assert new.assignee == M_V1


def test_reassign_keeps_state_and_deadline_and_needs_someone_else() -> None:
    ws = walk(State.ACCEPTED)
    with pytest.raises(InvalidAssignee, match="already assigned"):
        apply(ws, Action.REASSIGN, V1, at(ws), assignee=M_G1)
    new, entry = apply(ws, Action.REASSIGN, V1, at(ws), assignee=M_G2, reason="g1 on leave")
    assert new.state is State.ACCEPTED and new.due == ws.due and new.assignee == M_G2
    assert (entry.assignee_before, entry.assignee_after) == (M_G1, M_G2)
    # The new assignee now acts as assignee; the old one is a peer without the step.
    apply(new, Action.RESOLVE, G2, at(new))
    with pytest.raises(NotPermitted):
        apply(new, Action.RESOLVE, G1, at(new))


def test_actions_without_an_assignee_refuse_one() -> None:
    ws = walk(State.DISPATCHED)
    with pytest.raises(InvalidAssignee, match="does not take an assignee"):
        apply(ws, Action.ACCEPT, G1, at(ws), assignee=M_G1)
    with pytest.raises(InvalidAssignee):
        apply(ws, Action.ESCALATE, G1, at(ws), reason="too big for me", assignee=M_V1)


def test_assignee_and_actor_values_are_checked() -> None:
    with pytest.raises(ValueError, match="assignee's role"):
        Assignee("x", Role.VIEWER)
    with pytest.raises(ValueError, match="assignee's role"):
        Assignee("x", Role.ADMIN)
    with pytest.raises(ValueError, match="needs an id"):
        Actor("  ", Role.GRID_MEMBER)
    with pytest.raises(ValueError, match="only the system"):
        Actor("system", Role.GRID_MEMBER)
    with pytest.raises(ValueError, match="only the system"):
        Actor("bot", Role.SYSTEM)


# --- verification and rework ---------------------------------------------------------------


def test_send_back_counts_rework_and_returns_to_the_same_assignee() -> None:
    ws = walk(State.RESOLVED)
    ws, entry = apply(ws, Action.SEND_BACK, V1, at(ws), reason="photo missing")
    assert (ws.state, ws.assignee, ws.rework_count, ws.resolved_by) == (
        State.ACCEPTED,
        M_G1,
        1,
        None,
    )
    assert entry.rework_count == 1 and ws.accepted_at == entry.at
    ws, _ = apply(ws, Action.RESOLVE, G1, at(ws), reason="photo attached")
    ws, _ = apply(ws, Action.SEND_BACK, T1, at(ws), reason="wrong photo")
    assert ws.rework_count == 2
    ws, _ = apply(ws, Action.RESOLVE, G1, at(ws))
    ws, _ = apply(ws, Action.VERIFY, V1, at(ws))
    assert ws.rework_count == 2  # verification keeps the count for the rework rate


def test_send_back_to_someone_else_must_be_accepted_again() -> None:
    ws = walk(State.RESOLVED)
    ws, _ = apply(ws, Action.SEND_BACK, V1, at(ws), reason="needs g2's ladder", assignee=M_G2)
    assert (ws.state, ws.assignee, ws.rework_count) == (State.DISPATCHED, M_G2, 1)
    ws, _ = apply(ws, Action.ACCEPT, G2, at(ws))
    assert ws.state is State.ACCEPTED


def test_the_resolver_does_not_verify_their_own_work() -> None:
    ws = walk(State.ACCEPTED)
    ws, _ = apply(ws, Action.RESOLVE, V1, at(ws))  # the village lead, on behalf of g1
    assert ws.resolved_by == "v1"
    for action in (Action.VERIFY, Action.SEND_BACK):
        with pytest.raises(NotPermitted, match="resolved this event"):
            apply(ws, action, V1, at(ws), reason="x")
    apply(ws, Action.VERIFY, T1, at(ws))


# --- closing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "type"), [("fire", "smoke_alarm"), ("electrical", "cable_overtemp")]
)
def test_only_a_person_closes_fire_and_electrical(category: str, type: str) -> None:
    verified = walk(State.VERIFIED, category=category, type=type)
    with pytest.raises(NotPermitted, match="person"):
        apply(verified, Action.CLOSE, SYSTEM, at(verified))
    loose = WorkflowConfig(auto_close_types=frozenset({type}))  # even when misconfigured
    accepted = walk(State.ACCEPTED, category=category, type=type)
    with pytest.raises(NotPermitted, match="closed by a person"):
        apply(accepted, Action.AUTO_CLOSE, SYSTEM, at(accepted), reason="restore", config=loose)
    closed, entry = apply(verified, Action.CLOSE, V1, at(verified))
    assert closed.state is State.CLOSED and entry.actor_role is Role.VILLAGE_LEAD


def test_restore_of_a_fire_event_updates_it_but_leaves_it_open() -> None:
    ws = walk(State.ACCEPTED)
    now = at(ws)
    new, entry = on_condition_cleared(ws, now, reason="smoke detector restore")
    assert new.state is State.ACCEPTED and new.cleared_at == now and new.due == ws.due
    assert (entry.action, entry.actor_id) == (Action.CLEAR, "system")


def test_restore_of_device_offline_closes_it_with_a_history_entry() -> None:
    ws = walk(State.REPORTED, category="device", type="device_offline", severity=Severity.BLUE)
    now = at(ws)
    new, entry = on_condition_cleared(ws, now, reason="heartbeat received")
    assert new.state is State.CLOSED and new.closed_at == now
    assert (entry.action, entry.from_state, entry.to_state, entry.actor_role) == (
        Action.AUTO_CLOSE,
        State.REPORTED,
        State.CLOSED,
        Role.SYSTEM,
    )
    assert entry.reason == "heartbeat received"


def test_auto_close_only_for_configured_types_and_categories() -> None:
    water = walk(State.ACCEPTED, category="water", type="pressure_low")
    assert "not configured" in (auto_close_problem(water) or "")
    with pytest.raises(NotPermitted, match="not configured"):
        apply(water, Action.AUTO_CLOSE, SYSTEM, at(water), reason="pressure back")
    new, _ = on_condition_cleared(water, at(water), reason="pressure back")
    assert new.state is State.ACCEPTED
    by_category = WorkflowConfig(auto_close_categories=frozenset({"water"}))
    new, _ = on_condition_cleared(water, at(water), reason="pressure back", config=by_category)
    assert new.state is State.CLOSED


def test_config_refuses_a_category_both_auto_and_person_closed() -> None:
    with pytest.raises(ValueError, match="both auto-closable and person-closed"):
        WorkflowConfig(auto_close_categories=frozenset({"fire"}))
    with pytest.raises(ValueError, match=r"auto_close_type\b|extra"):
        WorkflowConfig.model_validate({"auto_close_type": ["x"]})


def test_config_fields_all_describe_themselves() -> None:
    for name, field in WorkflowConfig.model_fields.items():
        assert field.description, name
    assert DEFAULT_CONFIG.auto_close_types == {"device_offline", "camera_fault", "patrol_overdue"}
    assert DEFAULT_CONFIG.person_close_categories == {"fire", "electrical"}


# --- opening and errors --------------------------------------------------------------------


def test_open_event_records_the_report() -> None:
    ws, entry = open_event(Severity.ORANGE, "water", "pressure_drop", T0, actor=G1, reason="seen")
    assert ws.state is State.REPORTED and ws.level == 0 and ws.assignee is None
    assert ws.due == T0 + timedelta(minutes=30)
    assert (entry.action, entry.from_state, entry.to_state, entry.actor_id) == (
        Action.REPORT,
        None,
        State.REPORTED,
        "g1",
    )
    with pytest.raises(NotPermitted):
        open_event(Severity.RED, "fire", "smoke_alarm", T0, actor=VIEWER)


def test_naive_time_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        open_event(Severity.RED, "fire", "smoke_alarm", datetime(2026, 11, 22, 8, 0))
    ws = walk(State.REPORTED)
    with pytest.raises(ValueError, match="timezone-aware"):
        apply(ws, Action.COMMENT, G1, datetime(2026, 11, 22, 8, 5), reason="x")


def test_errors_form_one_hierarchy_with_http_statuses() -> None:
    statuses = {
        IllegalTransition: 409,
        NotPermitted: 403,
        MissingReason: 422,
        InvalidAssignee: 422,
    }
    for cls, status in statuses.items():
        assert issubclass(cls, WorkflowError) and cls.status == status and cls.code
