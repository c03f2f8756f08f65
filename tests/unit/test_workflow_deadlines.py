"""Time limits per step and severity, and escalation up the ladder as time is moved on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel, ValidationError

from alerts.deadlines import (
    DEFAULT_POLICY,
    DeadlinePolicy,
    SeverityDeadlines,
    check,
    due_at,
    overdue,
)
from alerts.roles import SYSTEM_ACTOR, Actor, Assignee, Role
from alerts.workflow import IllegalTransition, WorkflowConfig, apply, open_event
from alerts.workflow_enums import Action, Severity, State
from alerts.workflow_state import WorkflowState, problems

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
SEC = timedelta(seconds=1)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)

G1 = Actor("g1", Role.GRID_MEMBER)
V1 = Actor("v1", Role.VILLAGE_LEAD)
T1 = Actor("t1", Role.TOWN_CENTRE)
M_G1 = Assignee("g1", Role.GRID_MEMBER)


def reported(severity: Severity = Severity.RED) -> WorkflowState:
    ws, _ = open_event(severity, "fire", "smoke_alarm", T0)
    return ws


def accepted(severity: Severity = Severity.ORANGE, at: datetime = T0) -> WorkflowState:
    ws, _ = open_event(severity, "electrical", "residual_current_high", at)
    ws, _ = apply(ws, Action.DISPATCH, SYSTEM_ACTOR, at, assignee=M_G1)
    ws, _ = apply(ws, Action.ACCEPT, G1, at)
    return ws


# --- the table -----------------------------------------------------------------------------

EXPECTED = {
    # step: (red, orange, yellow, blue)
    "dispatch": (10 * MIN, 30 * MIN, 30 * MIN, 30 * MIN),
    "accept": (10 * MIN, 30 * MIN, 30 * MIN, 30 * MIN),
    "resolve": (1 * HOUR, 4 * HOUR, 4 * HOUR, 4 * HOUR),
    "verify": (2 * HOUR, 2 * HOUR, 2 * HOUR, 2 * HOUR),
    "close": (1 * HOUR, 1 * HOUR, 1 * HOUR, 1 * HOUR),
}


@pytest.mark.parametrize("step", list(EXPECTED))
def test_default_table(step: str) -> None:
    colours = (Severity.RED, Severity.ORANGE, Severity.YELLOW, Severity.BLUE)
    for severity, expected in zip(colours, EXPECTED[step], strict=True):
        assert DEFAULT_POLICY.duration(Action(step), severity) == expected


def test_defaults_close_non_red_events_within_eight_hours() -> None:
    for severity in (Severity.ORANGE, Severity.YELLOW, Severity.BLUE):
        total = sum((DEFAULT_POLICY.duration(Action(s), severity) for s in EXPECTED), MIN * 0)
        assert total <= 8 * HOUR


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (State.REPORTED, T0 + 10 * MIN),
        (State.DISPATCHED, T0 + 10 * MIN),
        (State.ACCEPTED, T0 + HOUR),
        (State.RESOLVED, T0 + 2 * HOUR),
        (State.VERIFIED, T0 + HOUR),
        (State.CLOSED, None),
        (State.FALSE_ALARM, None),
    ],
)
def test_due_at(state: State, expected: datetime | None) -> None:
    assert due_at(state, Severity.RED, T0) == expected


def test_due_at_rejects_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        due_at(State.REPORTED, Severity.RED, datetime(2026, 11, 22, 8, 0))


def test_duration_only_for_steps() -> None:
    with pytest.raises(ValueError, match="not a step"):
        DEFAULT_POLICY.duration(Action.COMMENT, Severity.RED)


# --- configuration -------------------------------------------------------------------------


def test_partial_override_keeps_the_other_defaults() -> None:
    policy = DeadlinePolicy.model_validate(
        {"dispatch": {"red": "PT5M"}, "verify": {"blue": 3600 * 4}}
    )
    assert policy.dispatch.red == 5 * MIN
    assert policy.dispatch.orange == 30 * MIN
    assert policy.verify.blue == 4 * HOUR and policy.verify.red == 2 * HOUR
    assert policy.resolve == DEFAULT_POLICY.resolve


def test_policy_from_workflow_config() -> None:
    config = WorkflowConfig.model_validate({"deadlines": {"accept": {"yellow": "00:45:00"}}})
    assert config.deadlines.accept.yellow == 45 * MIN


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"dispatch": {"purple": "PT5M"}}, "dispatch.purple"),
        ({"dispatsh": {"red": "PT5M"}}, "dispatsh"),
        ({"dispatch": {"red": "PT0S"}}, "dispatch.red"),
        ({"verify": {"red": -60}}, "verify.red"),
        ({"close": {"red": "soon"}}, "close.red"),
    ],
)
def test_bad_policy_names_the_key(data: dict[str, object], where: str) -> None:
    with pytest.raises(ValidationError) as info:
        DeadlinePolicy.model_validate(data)
    assert where in str(info.value)


@pytest.mark.parametrize("model", [DeadlinePolicy, SeverityDeadlines, WorkflowConfig])
def test_every_field_has_a_description(model: type[BaseModel]) -> None:
    for name, field in model.model_fields.items():
        assert field.description, f"{model.__name__}.{name}"


def test_policy_is_frozen() -> None:
    with pytest.raises(ValidationError):
        DEFAULT_POLICY.dispatch = DEFAULT_POLICY.verify


# --- escalation ----------------------------------------------------------------------------


def test_nothing_happens_before_or_at_the_deadline() -> None:
    ws = reported()
    assert check(ws, T0) == []
    assert check(ws, T0 + 10 * MIN) == []  # due by 08:10 is not late at 08:10
    assert not overdue(ws, T0 + 10 * MIN)


def test_passed_dispatch_deadline_escalates_once_with_a_record() -> None:
    ws = reported()
    now = T0 + 10 * MIN + SEC
    [esc] = check(ws, now)
    new = esc.state
    assert (new.level, new.state, new.owner) == (1, State.REPORTED, Role.TOWN_CENTRE)
    assert (esc.step, esc.passed, esc.from_role, esc.to_role) == (
        Action.DISPATCH,
        T0 + 10 * MIN,
        Role.VILLAGE_LEAD,
        Role.TOWN_CENTRE,
    )
    assert new.due == T0 + 20 * MIN  # a fresh 10 minutes for the town centre
    entry = esc.entry
    assert (entry.action, entry.actor_id, entry.actor_role) == (
        Action.ESCALATE,
        "system",
        Role.SYSTEM,
    )
    assert entry.at == T0 + 10 * MIN and entry.reason and entry.reason.startswith("督办")
    assert (entry.level_before, entry.level_after, entry.due) == (0, 1, new.due)
    assert problems(new) == []
    # Idempotent: the same passed deadline never escalates twice.
    assert check(new, now) == []
    assert check(new, T0 + 20 * MIN) == []


def test_again_when_it_passes_at_the_new_level_and_never_past_the_county() -> None:
    ws = reported()
    [esc] = check(ws, T0 + 11 * MIN)
    ws = esc.state
    [esc] = check(ws, T0 + 21 * MIN)
    ws = esc.state
    assert (ws.level, ws.owner, esc.from_role) == (2, Role.COUNTY_CENTRE, Role.TOWN_CENTRE)
    assert ws.due == T0 + 30 * MIN
    for later in (T0 + 31 * MIN, T0 + 10 * HOUR, T0 + timedelta(days=30)):
        assert check(ws, later) == []
    assert overdue(ws, T0 + 31 * MIN)  # still late, but no one above the county to press


def test_handler_steps_climb_the_whole_ladder() -> None:
    ws = accepted(Severity.ORANGE)  # resolve due in 4 h, owned by the grid member
    assert ws.owner is Role.GRID_MEMBER
    now = T0
    climbed = []
    for _ in range(5):
        now += 4 * HOUR + SEC
        for esc in check(ws, now):
            climbed.append((esc.from_role, esc.to_role))
            ws = esc.state
    assert climbed == [
        (Role.GRID_MEMBER, Role.VILLAGE_LEAD),
        (Role.VILLAGE_LEAD, Role.TOWN_CENTRE),
        (Role.TOWN_CENTRE, Role.COUNTY_CENTRE),
    ]
    assert ws.level == 3 and ws.state is State.ACCEPTED and ws.assignee == M_G1


def test_one_check_catches_up_after_an_outage() -> None:
    ws = accepted(Severity.RED)  # resolve due in 1 h
    escalations = check(ws, T0 + 2 * HOUR + 30 * MIN)
    assert [e.entry.at for e in escalations] == [T0 + HOUR, T0 + 2 * HOUR]
    assert [e.state.level for e in escalations] == [1, 2]
    assert escalations[-1].state.due == T0 + 3 * HOUR
    # The same as checking every minute: the cadence does not change the outcome.
    stepwise = ws
    for minute in range(0, 151):
        for esc in check(stepwise, T0 + minute * MIN):
            stepwise = esc.state
    assert stepwise == escalations[-1].state


def test_check_is_pure() -> None:
    ws = reported()
    now = T0 + 15 * MIN
    assert check(ws, now) == check(ws, now)
    assert ws == reported()


def test_escalation_is_dated_after_a_later_update() -> None:
    ws = reported()
    ws, _ = apply(ws, Action.COMMENT, V1, T0 + 12 * MIN, reason="looking for someone")
    [esc] = check(ws, T0 + 13 * MIN)
    assert esc.entry.at == T0 + 12 * MIN  # history stays in order
    assert esc.state.due == T0 + 22 * MIN


def test_a_new_step_gets_its_own_deadline_and_keeps_the_level() -> None:
    ws = reported()
    [esc] = check(ws, T0 + 11 * MIN)
    ws, _ = apply(esc.state, Action.DISPATCH, T1, T0 + 12 * MIN, assignee=M_G1)
    assert ws.due == T0 + 22 * MIN  # red: accept within 10 min of dispatch
    assert ws.level == 1 and ws.owner is Role.VILLAGE_LEAD  # accept's owner, one rung up
    assert check(ws, T0 + 22 * MIN) == []
    ws, _ = apply(ws, Action.ACCEPT, Actor("g1", Role.GRID_MEMBER), T0 + 20 * MIN)
    assert ws.due == T0 + 20 * MIN + HOUR


def test_verification_deadline() -> None:
    ws = accepted(Severity.YELLOW)
    ws, _ = apply(ws, Action.RESOLVE, G1, T0 + HOUR)
    assert ws.due == T0 + 3 * HOUR and ws.owner is Role.VILLAGE_LEAD
    assert check(ws, T0 + 3 * HOUR) == []
    [esc] = check(ws, T0 + 3 * HOUR + SEC)
    assert (esc.step, esc.to_role) == (Action.VERIFY, Role.TOWN_CENTRE)


def test_configured_policy_is_used() -> None:
    policy = DeadlinePolicy.model_validate({"dispatch": {"red": "PT2M"}})
    config = WorkflowConfig(deadlines=policy)
    ws, _ = open_event(Severity.RED, "fire", "smoke_alarm", T0, config=config)
    assert ws.due == T0 + 2 * MIN
    [esc] = check(ws, T0 + 3 * MIN, policy)
    assert esc.state.due == T0 + 4 * MIN


def test_terminal_events_never_escalate() -> None:
    ws = reported()
    ws, _ = apply(ws, Action.MARK_FALSE_ALARM, V1, T0 + MIN, reason="drill")
    assert ws.due is None
    assert check(ws, T0 + timedelta(days=1)) == []
    assert not overdue(ws, T0 + timedelta(days=1))


def test_person_reports_up_with_a_fresh_deadline() -> None:
    ws = accepted(Severity.ORANGE)
    now = T0 + 10 * MIN
    ws, entry = apply(ws, Action.ESCALATE, G1, now, reason="needs the power company")
    assert (ws.level, ws.owner, ws.due) == (1, Role.VILLAGE_LEAD, now + 4 * HOUR)
    assert (entry.actor_id, entry.level_before, entry.level_after) == ("g1", 0, 1)


def test_manual_escalation_stops_at_the_county() -> None:
    ws = accepted()
    for n in range(3):
        ws, _ = apply(ws, Action.ESCALATE, SYSTEM_ACTOR, T0 + n * MIN, reason="late")
    with pytest.raises(IllegalTransition, match="top of the ladder"):
        apply(ws, Action.ESCALATE, SYSTEM_ACTOR, T0 + HOUR, reason="late")


def test_check_rejects_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        check(reported(), datetime(2026, 11, 22, 9, 0))
